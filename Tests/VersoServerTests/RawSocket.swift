import Foundation
import NIOCore
import NIOPosix
import Synchronization
import Testing
import VersoClient
import VersoWire

/// A client on a plain TCP socket that writes whatever bytes a test gives it (hand-made
/// WebSocket frames, half requests, garbage) and records every byte the server sends and
/// whether the server closed the connection.
final class RawSocket: Sendable {
    private struct Received {
        var bytes: [UInt8] = []
        /// The server shut its sending side (or the connection ended).
        var finished = false
        /// The connection ended: closed or reset.
        var closed = false
    }

    /// Appends what arrives to the socket's record.
    private final class Recorder: ChannelInboundHandler, Sendable {
        typealias InboundIn = ByteBuffer
        let received = Mutex(Received())

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            let buffer = unwrapInboundIn(data)
            received.withLock { $0.bytes += buffer.readableBytesView }
        }

        func channelInactive(context: ChannelHandlerContext) {
            received.withLock {
                $0.finished = true
                $0.closed = true
            }
            context.fireChannelInactive()
        }

        func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
            if let event = event as? ChannelEvent, event == .inputClosed {
                received.withLock { $0.finished = true }
            }
            context.fireUserInboundEventTriggered(event)
        }

        func errorCaught(context: ChannelHandlerContext, error: any Error) {
            received.withLock {
                $0.finished = true
                $0.closed = true
            }
            // A reset after the server closed: the connection is gone all the same.
            context.close(promise: nil)
        }
    }

    private let channel: any Channel
    private let recorder: Recorder
    /// Where the server's frames start: just past the 101 response, once upgraded.
    private let frameStart = Mutex(0)

    private init(channel: any Channel, recorder: Recorder) {
        self.channel = channel
        self.recorder = recorder
    }

    static func connect(port: Int) async throws -> RawSocket {
        let recorder = Recorder()
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            // The server's FIN alone does not end the connection: `waitForRelease` can then tell
            // a server that shut its side but still reads from one that let the socket go.
            .channelOption(.allowRemoteHalfClosure, value: true)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(recorder) }
            }
            .connect(host: "127.0.0.1", port: port)
            .get()
        return RawSocket(channel: channel, recorder: recorder)
    }

    /// Connects, runs `body`, and closes the socket.
    static func with<T>(port: Int, _ body: (RawSocket) async throws -> T) async throws -> T {
        let socket = try await connect(port: port)
        do {
            let result = try await body(socket)
            await socket.close()
            return result
        } catch {
            await socket.close()
            throw error
        }
    }

    func close() async {
        try? await channel.close()
    }

    func write(_ bytes: [UInt8]) async throws {
        try await channel.writeAndFlush(ByteBuffer(bytes: bytes))
    }

    func write(_ text: String) async throws {
        try await write(Array(text.utf8))
    }

    /// Everything the server sent so far.
    var received: [UInt8] { recorder.received.withLock { $0.bytes } }
    /// Whether the server closed the connection, or at least its sending side.
    var isClosed: Bool { recorder.received.withLock { $0.finished } }
    /// What the server sent so far, as text.
    var text: String { String(decoding: received, as: UTF8.self) }

    /// Polls until `condition` holds or `timeout` passes; returns whether it held.
    @discardableResult
    func wait(timeout: Duration = .seconds(5), until condition: (RawSocket) -> Bool) async throws -> Bool {
        let deadline = ContinuousClock.now + timeout
        while !condition(self) {
            guard ContinuousClock.now < deadline else { return false }
            try await Task.sleep(for: .milliseconds(5))
        }
        return true
    }

    /// Waits until the server lets the socket go, not merely shuts its sending side: writes a
    /// ping frame every 50 ms, which a socket the server closed answers with a reset. Returns
    /// whether that happened within `timeout`.
    func waitForRelease(timeout: Duration) async throws -> Bool {
        let deadline = ContinuousClock.now + timeout
        while !recorder.received.withLock({ $0.closed }) {
            guard ContinuousClock.now < deadline else { return false }
            try? await write(Self.frame(opcode: 0x9, []))
            try await Task.sleep(for: .milliseconds(50))
        }
        return true
    }

    /// Sends a WebSocket handshake for `/v1/ws` and waits for the `101`.
    func upgrade(port: Int, extensions: String? = nil) async throws {
        let status = try await handshake(Array(RawHTTP.handshake(port: port, extensions: extensions).utf8))
        #expect(status == 101, "handshake answered \(text)")
    }

    /// Sends `bytes` (a handshake, and whatever a client sends at once behind it) and waits for
    /// the response head; returns its status. After a `101`, `frames` are what came after it.
    @discardableResult
    func handshake(_ bytes: [UInt8]) async throws -> Int? {
        try await write(bytes)
        try await wait { $0.text.contains("\r\n\r\n") || $0.isClosed }
        let head = try #require(text.range(of: "\r\n\r\n"), "no response to the handshake: \(text)")
        frameStart.withLock { $0 = text[..<head.upperBound].utf8.count }
        return text.split(separator: " ", maxSplits: 2).dropFirst().first.flatMap { Int($0) }
    }

    /// The frames the server sent since the upgrade: (opcode, payload), unmasked as a server's are.
    var frames: [(opcode: UInt8, payload: [UInt8])] {
        let bytes = Array(received.dropFirst(frameStart.withLock { $0 }))
        var frames: [(opcode: UInt8, payload: [UInt8])] = []
        var index = 0
        while index + 2 <= bytes.count {
            let opcode = bytes[index] & 0x0F
            var length = Int(bytes[index + 1] & 0x7F)
            var headerLength = 2
            if length == 126 {
                guard index + 4 <= bytes.count else { break }
                length = Int(bytes[index + 2]) << 8 | Int(bytes[index + 3])
                headerLength = 4
            } else if length == 127 {
                guard index + 10 <= bytes.count else { break }
                length = bytes[(index + 2)..<(index + 10)].reduce(0) { $0 << 8 | Int($1) }
                headerLength = 10
            }
            guard index + headerLength + length <= bytes.count else { break }
            frames.append((opcode, Array(bytes[(index + headerLength)..<(index + headerLength + length)])))
            index += headerLength + length
        }
        return frames
    }

    /// The code of the server's close frame, once it came.
    var closeCode: UInt16? {
        guard let close = frames.first(where: { $0.opcode == 0x8 }), close.payload.count >= 2 else { return nil }
        return UInt16(close.payload[0]) << 8 | UInt16(close.payload[1])
    }

    /// One client frame, written by hand: `opcode` and `payload`, with the given reserved bits
    /// (0b100 is RSV1), masked unless `masked` is false.
    static func frame(
        opcode: UInt8,
        _ payload: [UInt8],
        fin: Bool = true,
        reservedBits: UInt8 = 0,
        masked: Bool = true
    ) -> [UInt8] {
        var bytes: [UInt8] = [(fin ? 0x80 : 0) | (reservedBits << 4) | opcode]
        let maskBit: UInt8 = masked ? 0x80 : 0
        if payload.count < 126 {
            bytes.append(maskBit | UInt8(payload.count))
        } else if payload.count <= 0xFFFF {
            bytes.append(maskBit | 126)
            bytes += [UInt8(payload.count >> 8), UInt8(payload.count & 0xFF)]
        } else {
            bytes.append(maskBit | 127)
            bytes += (0..<8).reversed().map { UInt8((payload.count >> ($0 * 8)) & 0xFF) }
        }
        guard masked else { return bytes + payload }
        let mask: [UInt8] = [0x37, 0xFA, 0x21, 0x3D]
        return bytes + mask + payload.enumerated().map { $0.element ^ mask[$0.offset % 4] }
    }

    /// A masked text frame holding `text`.
    static func text(_ text: String) -> [UInt8] {
        frame(opcode: 0x1, Array(text.utf8))
    }
}
