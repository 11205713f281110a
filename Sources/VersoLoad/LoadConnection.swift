import NIOCore
import NIOWebSocket
import VersoCore
import VersoDeflate
import VersoEventLoop
import VersoWebSocket

/// Why a load run or one of its connections failed.
public struct LoadError: Error, Sendable, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// One open WebSocket for a load worker: send a text message, await the next one.
/// Used by one task only (the connection's worker), so it needs no locking.
public struct LoadWire {
    /// Messages from this size up are compressed when permessage-deflate was agreed.
    static let compressionThreshold = 256

    let channel: any Channel
    let inbox: WireInbox
    /// permessage-deflate was agreed: messages from `compressionThreshold` bytes up are sent
    /// compressed, each on its own, as the server compresses (VersoDeflate).
    private let compresses: Bool
    /// Masking keys (RFC 6455 5.3). They keep intermediaries from reading the frames as
    /// something else, which a load run between two known programs does not need to be
    /// unpredictable for: a per-connection xorshift, not a system call per frame.
    private var masks: XorShift

    init(_ connection: LeanWebSocket.Connection) throws {
        channel = connection.channel
        inbox = connection.inbox
        compresses = connection.deflate != nil
        masks = XorShift(seed: UInt64.random(in: 1...UInt64.max))
    }

    /// Sends one text message: one masked frame, written straight to the channel, its text
    /// copied once, into the frame (or compressed into it).
    public mutating func send(_ text: String) async throws {
        if compresses && text.utf8.count >= Self.compressionThreshold {
            let payload = try PerMessageDeflate.compress(text.utf8, windowBits: 15, allocator: channel.allocator)
            write(payload.readableBytesView, compressed: true)
        } else {
            write(text.utf8, compressed: false)
        }
    }

    /// Writes one masked text frame carrying `payload`; no wait for the write: a failed one
    /// closes the channel, and `next` reports that.
    private mutating func write(_ payload: some Collection<UInt8>, compressed: Bool) {
        let count = payload.count
        var frame = channel.allocator.buffer(capacity: WireFrameEncoding.headerBytes(for: count, masked: true) + count)
        WireFrameEncoding.appendFrame(
            rsv1: compressed,
            opcode: .text,
            maskKey: .random(using: &masks),
            payload: payload,
            to: &frame
        )
        channel.writeAndFlush(frame, promise: nil)
    }

    /// Subscribes to one key and waits for the `subscribed` reply; `scenario` names the caller in errors.
    public mutating func subscribe(to key: String, scenario: String) async throws {
        try await send(Request.subscribe(.keys([BytewiseString(key)]), since: nil, epoch: nil).encoded())
        let reply = try await next()
        guard ReplyScan.type(reply) == "subscribed" else {
            throw LoadError("\(scenario): subscribe failed: \(reply.prefix(200))")
        }
    }

    /// The next text message; throws if the connection ends first.
    public mutating func next() async throws -> String {
        try await inbox.next()
    }

    /// Sends a close frame (unless a side already did) and waits, a second at most, for the
    /// server to answer it, then closes the socket.
    func close() async {
        if !inbox.isFinished, inbox.startClosing() {
            var frame = channel.allocator.buffer(capacity: 8)
            WireFrameEncoding.appendFrame(
                opcode: .connectionClose,
                maskKey: .random(),
                payload: WireFrameEncoding.closePayload(.normalClosure),
                to: &frame
            )
            channel.writeAndFlush(frame, promise: nil)
            let channel = channel
            let deadline = channel.eventLoop.scheduleTask(in: .seconds(1)) { channel.close(promise: nil) }
            try? await channel.closeFuture.get()
            deadline.cancel()
        } else {
            try? await channel.close()
        }
    }

}

/// Marsaglia's xorshift64: cheap numbers that need not be unpredictable.
struct XorShift: RandomNumberGenerator {
    private var state: UInt64

    /// `seed` must not be 0.
    init(seed: UInt64) { state = seed }

    mutating func next() -> UInt64 {
        state ^= state << 13
        state ^= state >> 7
        state ^= state << 17
        return state
    }
}

/// Opens load connections on the lean client in `LeanWebSocket`.
public enum LoadConnection {
    /// Connection attempts in flight at once, over the whole process. Thousands of connects at
    /// once overflow the server's listen backlog, and the dropped SYNs fail or stall those
    /// connections; a few hundred at a time open 10,000 quickly.
    public static let handshakes = AsyncLimiter(limit: 128)

    /// The largest message accepted from the server, after inflating.
    static let maxMessageSize = 1 << 24

    /// Connects to `url` (offering permessage-deflate when `compression`, sending `token` as
    /// `Authorization: Bearer`), runs `body` with the open connection, then closes it. Throws
    /// if it could not connect or `body` threw.
    public static func run<T: Sendable>(
        url: String,
        compression: Bool,
        token: String? = nil,
        _ body: @escaping @Sendable (inout LoadWire) async throws -> T
    ) async throws -> T {
        await handshakes.acquire()
        let connection: LeanWebSocket.Connection
        do {
            connection = try await LeanWebSocket.connect(
                url: url,
                compression: compression,
                token: token,
                maxMessageSize: maxMessageSize
            )
        } catch {
            handshakes.release()
            throw error
        }
        handshakes.release()
        var wire: LoadWire
        do {
            wire = try LoadWire(connection)
        } catch {
            try? await connection.channel.close()
            throw error
        }
        do {
            // The worker runs on its connection's event loop (see `EventLoopTaskExecutor`).
            let result = try await withTaskExecutorPreference(EventLoopTaskExecutor(connection.channel.eventLoop)) {
                try await body(&wire)
            }
            await wire.close()
            return result
        } catch {
            await wire.close()
            throw error
        }
    }
}
