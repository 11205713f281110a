import NIOCore
import NIOPosix
import Synchronization
import Testing
import VersoClient
import VersoTesting
import VersoWire

/// A masked client text frame, written by hand so the test controls the socket completely.
func maskedTextFrame(_ text: String) -> ByteBuffer {
    let payload = Array(text.utf8)
    var buffer = ByteBuffer()
    buffer.writeInteger(UInt8(0x81))
    if payload.count < 126 {
        buffer.writeInteger(UInt8(0x80 | payload.count))
    } else {
        buffer.writeInteger(UInt8(0x80 | 126))
        buffer.writeInteger(UInt16(payload.count))
    }
    let mask: [UInt8] = [0x12, 0x34, 0x56, 0x78]
    buffer.writeBytes(mask)
    buffer.writeBytes(payload.enumerated().map { $0.element ^ mask[$0.offset % 4] })
    return buffer
}

/// A WebSocket client on a bare TCP socket (no compression) that reads only when told to: after
/// the handshake it leaves what the server sends in the kernel, behind a small receive buffer,
/// like a client that stopped reading; `startReading` then takes it all in.
final class RawWebSocketClient: Sendable {
    fileprivate struct Received {
        var bytes: [UInt8] = []
        var reading = true
        var ended = false
    }

    /// What arrived, shared by the channel handler and the test.
    private final class Inbox: Sendable {
        let state = Mutex(Received())
    }

    /// Collects what arrives, and asks for more only while the test wants it read.
    private final class Collector: ChannelInboundHandler, Sendable {
        typealias InboundIn = ByteBuffer
        let inbox: Inbox

        init(_ inbox: Inbox) { self.inbox = inbox }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            let buffer = unwrapInboundIn(data)
            inbox.state.withLock { $0.bytes += buffer.readableBytesView }
        }

        func channelReadComplete(context: ChannelHandlerContext) {
            if inbox.state.withLock({ $0.reading }) { context.read() }
        }

        func channelInactive(context: ChannelHandlerContext) {
            inbox.state.withLock { $0.ended = true }
        }
    }

    private let channel: any Channel
    private let inbox: Inbox

    private init(channel: any Channel, inbox: Inbox) {
        self.channel = channel
        self.inbox = inbox
    }

    /// Connects to the server on `port`, completes the WebSocket handshake, then stops reading.
    static func connect(port: Int) async throws -> RawWebSocketClient {
        let inbox = Inbox()
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .channelOption(.socketOption(.so_rcvbuf), value: 16 << 10)
            .channelOption(.autoRead, value: false)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(Collector(inbox))
                }
            }
            .connect(host: "127.0.0.1", port: port)
            .get()
        let client = RawWebSocketClient(channel: channel, inbox: inbox)
        try await channel.writeAndFlush(ByteBuffer(string: RawHTTP.handshake(port: port, extensions: nil)))
        channel.read()
        try await client.waitForInbox("the handshake's answer") { $0.headEnd != nil }
        let head = client.inbox.state.withLock { state -> String in
            state.reading = false
            return String(decoding: state.bytes.prefix(state.headEnd ?? 0), as: UTF8.self)
        }
        guard head.hasPrefix("HTTP/1.1 101") else { throw TestFailure("the handshake failed: \(head)") }
        return client
    }

    /// Runs `body` with `count` clients connected to the server on `port`, then closes them.
    static func with<T>(port: Int, count: Int, _ body: ([RawWebSocketClient]) async throws -> T) async throws -> T {
        var clients: [RawWebSocketClient] = []
        do {
            for _ in 0..<count { clients.append(try await connect(port: port)) }
            let result = try await body(clients)
            for client in clients { await client.close() }
            return result
        } catch {
            for client in clients { await client.close() }
            throw error
        }
    }

    /// Sends one text message.
    func send(_ text: String) async throws {
        try await channel.writeAndFlush(maskedTextFrame(text))
    }

    /// Reads everything the server sent and sends from now on.
    func startReading() {
        inbox.state.withLock { $0.reading = true }
        channel.read()
    }

    /// The code of the close frame the server sent, once it has arrived; nil if the connection
    /// ended without one. Call after `startReading`. The close comes after everything queued
    /// for the client (megabytes, in the slow-consumer tests), which a busy machine running the
    /// whole suite in parallel has taken over 10 s to read: hence the long default.
    func closeCode(timeout: Duration = .seconds(30)) async throws -> UInt16? {
        try await waitForInbox("a close frame or the end of the connection", timeout: timeout) {
            $0.ended || $0.closeCode != nil
        }
        return inbox.state.withLock { $0.closeCode }
    }

    /// Closes the socket.
    func close() async {
        try? await channel.close()
    }

    private func waitForInbox(
        _ what: String,
        timeout: Duration = .seconds(10),
        _ condition: @escaping @Sendable (Received) -> Bool
    ) async throws {
        let deadline = ContinuousClock.now + timeout
        while !inbox.state.withLock({ condition($0) }) {
            guard ContinuousClock.now < deadline else { throw TestFailure("\(what) did not come within \(timeout)") }
            try await Task.sleep(for: .milliseconds(5))
        }
    }
}

extension RawWebSocketClient.Received {
    /// Where the HTTP head ends, once it has arrived.
    fileprivate var headEnd: Int? {
        let marker: [UInt8] = Array("\r\n\r\n".utf8)
        guard bytes.count >= marker.count else { return nil }
        for index in 0...(bytes.count - marker.count) where bytes[index..<(index + marker.count)].elementsEqual(marker)
        {
            return index + marker.count
        }
        return nil
    }

    /// The code of the first close frame after the head (server frames are not masked).
    fileprivate var closeCode: UInt16? {
        guard var offset = headEnd else { return nil }
        while offset + 2 <= bytes.count {
            let opcode = bytes[offset] & 0x0F
            var length = Int(bytes[offset + 1] & 0x7F)
            var start = offset + 2
            if length == 126 {
                guard start + 2 <= bytes.count else { return nil }
                length = Int(bytes[start]) << 8 | Int(bytes[start + 1])
                start += 2
            } else if length == 127 {
                guard start + 8 <= bytes.count else { return nil }
                length = bytes[start..<(start + 8)].reduce(0) { $0 << 8 | Int($1) }
                start += 8
            }
            guard start + length <= bytes.count else { return nil }
            if opcode == 0x8 {
                return length >= 2 ? UInt16(bytes[start]) << 8 | UInt16(bytes[start + 1]) : 1005
            }
            offset = start + length
        }
        return nil
    }
}
