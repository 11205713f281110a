import NIOCore
import Synchronization
import VersoTesting

/// A TCP proxy in front of a server that can cut a connection at a chosen message: the way a
/// network drops it, with the message lost on the way. It relays every connection's bytes both
/// ways until it is told to cut, then drops the first matching chunk of bytes and closes both
/// sides (or, for `mute`, only drops it: a server that never answers); the connections that
/// follow are relayed whole.
///
/// It reads unmasked server frames and masked client frames of uncompressed WebSocket text (a
/// client that does not offer permessage-deflate), so a cut names the text a message holds.
final class CuttingProxy: RelayInspector {
    /// Where the next cut happens.
    enum Cut: Sendable {
        /// At the first message from the server whose text contains this.
        case reply(containing: String)
        /// At the first message from the client whose text contains this, which never reaches
        /// the server.
        case request(containing: String)
        /// At the first message from the client whose text contains this, which never reaches
        /// the server; the connection stays open.
        case mute(requestContaining: String)
        /// Right after the first message from the server whose text contains this: it reaches
        /// the client, and whatever came with it after it does not.
        case after(replyContaining: String)
    }

    private struct State {
        /// The cuts still to come, in order.
        var armed: [Cut] = []
        var cuts = 0
        var connections = 0
    }

    private let state = Mutex(State())

    /// Cuts the connection at the next message that matches `cut`; with more than one, each
    /// after the one before has been used.
    func arm(_ cuts: Cut...) {
        state.withLock { $0.armed = cuts }
    }

    /// How many connections were cut (or muted) so far.
    var cuts: Int { state.withLock { $0.cuts } }

    /// How many connections were accepted so far.
    var connections: Int { state.withLock { $0.connections } }

    /// What to do with `bytes`, going `toServer` or not: when they hold the next armed message,
    /// that cut is used up.
    func action(for bytes: ByteBuffer, toServer: Bool) -> RelayAction {
        state.withLock { state in
            let needle: String
            var action: RelayAction
            switch state.armed.first {
            case .reply(let text)? where !toServer: (needle, action) = (text, .cut)
            case .request(let text)? where toServer: (needle, action) = (text, .cut)
            case .mute(let text)? where toServer: (needle, action) = (text, .drop)
            case .after(let text)? where !toServer: (needle, action) = (text, .cut)
            default: return .relay
            }
            guard let frame = Self.frames(in: bytes).first(where: { $0.text.contains(needle) }) else { return .relay }
            if case .after? = state.armed.first { action = .cutAfter(count: frame.end) }
            state.armed.removeFirst()
            state.cuts += 1
            return action
        }
    }

    func accepted() {
        state.withLock { $0.connections += 1 }
    }

    /// The text of every whole text frame in `bytes` (unmasked when the frame is masked), and
    /// where in `bytes` it ends.
    static func frames(in bytes: ByteBuffer) -> [(text: String, end: Int)] {
        let data = Array(bytes.readableBytesView)
        var texts: [(text: String, end: Int)] = []
        var index = 0
        while index + 2 <= data.count {
            let opcode = data[index] & 0x0F
            let masked = data[index + 1] & 0x80 != 0
            var length = Int(data[index + 1] & 0x7F)
            index += 2
            if length == 126 {
                guard index + 2 <= data.count else { break }
                length = Int(data[index]) << 8 | Int(data[index + 1])
                index += 2
            } else if length == 127 {
                guard index + 8 <= data.count else { break }
                length = data[index..<index + 8].reduce(0) { $0 << 8 | Int($1) }
                index += 8
            }
            var mask: [UInt8] = [0, 0, 0, 0]
            if masked {
                guard index + 4 <= data.count else { break }
                mask = Array(data[index..<index + 4])
                index += 4
            }
            guard index + length <= data.count else { break }
            if opcode == 0x1 {
                let payload = data[index..<index + length].enumerated().map { $1 ^ mask[$0 % 4] }
                texts.append((String(decoding: payload, as: UTF8.self), index + length))
            }
            index += length
        }
        return texts
    }

    /// Runs `body` with the port of a proxy on 127.0.0.1 in front of `port`, then stops it.
    static func with<T: Sendable>(
        to port: Int,
        _ body: (CuttingProxy, Int) async throws -> T
    ) async throws -> T {
        let proxy = CuttingProxy()
        return try await RelayProxy.with(to: port, inspector: proxy) { port in try await body(proxy, port) }
    }
}
