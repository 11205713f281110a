import Foundation
import NIOCore
import NIOPosix
import Testing
import VersoClient
import VersoCore
import VersoTesting

/// A masked client text frame, written by hand so the test controls the socket completely.
private func maskedTextFrame(_ text: String) -> ByteBuffer {
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

@Suite("Slow consumers")
struct SlowConsumerTests {
    @Test("a client that stops reading is disconnected once its queue passes the limit, and the others go on")
    func slowConsumerIsCut() async throws {
        try await TestServer.with(configure: { $0.maxQueuedBytesPerConnection = 256 << 10 }) { server in
            let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .channelOption(.socketOption(.so_rcvbuf), value: 16 << 10)
                .connect(host: "127.0.0.1", port: server.port) { channel in
                    channel.eventLoop.makeCompletedFuture { try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: channel) }
                }
            try await channel.executeThenClose { inbound, outbound in
                try await outbound.write(ByteBuffer(string: RawHTTP.handshake(port: server.port, extensions: nil)))
                var iterator = inbound.makeAsyncIterator()
                var head = ""
                while !head.contains("\r\n\r\n"), let chunk = try await iterator.next() { head += String(buffer: chunk) }
                #expect(head.hasPrefix("HTTP/1.1 101"))
                try await outbound.write(maskedTextFrame(#"{"type":"subscribe","prefix":"slow/"}"#))
                // Wait for the subscription to exist, then never read again.
                let deadline = ContinuousClock.now + .seconds(10)
                while server.server.engine.subscriptionCount == 0, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(5)) }
                #expect(server.server.engine.subscriptionCount == 1)

                let value = String(repeating: "x", count: 60_000)
                try await TestClient.with(url: server.url) { writer in
                    var version: Int64 = 0
                    var round = 0
                    while server.server.engine.subscriptionCount > 0, round < 2_000 {
                        version = try await put(writer, "slow/a", base: version, #"{"v":"\#(value)"}"#)
                        round += 1
                    }
                    #expect(server.server.engine.subscriptionCount == 0, "the slow subscriber was disconnected after \(round) writes")
                    // The server and the writer are unaffected.
                    #expect(try await put(writer, "slow/b", base: 0) == 1)
                }
            }
        }
    }
}
