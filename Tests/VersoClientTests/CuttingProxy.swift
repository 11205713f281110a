import NIOCore
import NIOPosix
import Synchronization

/// A TCP proxy in front of a server that can cut a connection at a chosen message: the way a
/// network drops it, with the message lost on the way. It relays every connection's bytes both
/// ways until it is told to cut, then drops the first matching chunk of bytes and closes both
/// sides (or, for `mute`, only drops it: a server that never answers); the connections that
/// follow are relayed whole.
///
/// It reads unmasked server frames and masked client frames of uncompressed WebSocket text (a
/// client that does not offer permessage-deflate), so a cut names the text a message holds.
final class CuttingProxy: Sendable {
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

    /// What a relay does with a chunk of bytes.
    fileprivate enum Action {
        case relay
        case drop
        case cut
        /// Relay the first `count` bytes, then cut.
        case cutAfter(count: Int)
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
    fileprivate func action(for bytes: ByteBuffer, toServer: Bool) -> Action {
        state.withLock { state in
            let needle: String
            var action: Action
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

    fileprivate func accepted() {
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

    /// Relays what one side reads to the other, unless the proxy cuts it.
    private final class Relay: ChannelInboundHandler {
        typealias InboundIn = ByteBuffer

        let proxy: CuttingProxy
        let partner: any Channel
        let toServer: Bool

        init(proxy: CuttingProxy, partner: any Channel, toServer: Bool) {
            self.proxy = proxy
            self.partner = partner
            self.toServer = toServer
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            let bytes = unwrapInboundIn(data)
            switch proxy.action(for: bytes, toServer: toServer) {
            case .relay:
                partner.writeAndFlush(bytes, promise: nil)
            case .drop:
                break
            case .cut:
                context.close(promise: nil)
                partner.close(promise: nil)
            case .cutAfter(let count):
                // Flushed at once into an idle loopback socket, before the close below.
                partner.writeAndFlush(bytes.getSlice(at: bytes.readerIndex, length: count)!, promise: nil)
                context.close(promise: nil)
                partner.close(promise: nil)
            }
        }

        func channelInactive(context: ChannelHandlerContext) {
            partner.close(promise: nil)
        }

        func errorCaught(context: ChannelHandlerContext, error: any Error) {
            context.close(promise: nil)
        }
    }

    /// Runs `body` with the port of a proxy on 127.0.0.1 in front of `port`, then stops it.
    static func with<T: Sendable>(
        to port: Int,
        _ body: (CuttingProxy, Int) async throws -> T
    ) async throws -> T {
        let proxy = CuttingProxy()
        let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .childChannelOption(.autoRead, value: false)
            .childChannelInitializer { inbound in
                proxy.accepted()
                return ClientBootstrap(group: inbound.eventLoop)
                    .connect(host: "127.0.0.1", port: port)
                    .flatMapThrowing { outbound in
                        // Both channels are on `inbound`'s event loop.
                        try inbound.pipeline.syncOperations.addHandler(
                            Relay(proxy: proxy, partner: outbound, toServer: true)
                        )
                        try outbound.pipeline.syncOperations.addHandler(
                            Relay(proxy: proxy, partner: inbound, toServer: false)
                        )
                    }
                    .flatMap { inbound.setOption(.autoRead, value: true) }
            }
            .bind(host: "127.0.0.1", port: 0)
            .get()
        do {
            let result = try await body(proxy, channel.localAddress?.port ?? 0)
            try await channel.close()
            return result
        } catch {
            try? await channel.close()
            throw error
        }
    }
}
