import Foundation
import Testing
import VersoClient
import VersoCore
import VersoEngine
import VersoServer
import VersoTesting
import VersoWire

/// The server's total limit on bytes queued for clients (Protocol.md 1.1 and 1.2,
/// `--max-queued-bytes`).
@Suite("Memory limit")
struct MemoryLimitTests {
    @Test(
        "1.2: past the server's total queue limit, the connection holding the most unread is closed with 1008 first, and a client that reads is unaffected"
    )
    func largestUnreadQueueIsClosedFirst() async throws {
        // No connection comes near its own limit: only the total can close one.
        try await TestServer.with(configure: {
            $0.maxQueuedBytes = 2 << 20
            $0.maxQueuedBytesPerConnection = 1 << 30
            // Time enough, on a busy machine, to read the close frame before the socket is dropped.
            $0.closeGracePeriod = .seconds(60)
        }) { server in
            try await RawWebSocketClient.with(port: server.port, count: 3) { stalled in
                // The first stalled client follows the prefix three times over: it holds the most.
                for _ in 0..<3 { try await stalled[0].send(#"{"type":"subscribe","prefix":"mem/"}"#) }
                try await stalled[1].send(#"{"type":"subscribe","prefix":"mem/"}"#)
                try await stalled[2].send(#"{"type":"subscribe","prefix":"mem/"}"#)
                try await TestClient.with(url: server.url, compression: false) { reader in
                    let subscribed = try await reader.request(#"{"type":"subscribe","rid":1,"prefix":"mem/"}"#)
                    #expect(subscribed.type == "subscribed")
                    try await waitUntil { server.server.engine.subscriptionCount == 6 }

                    let value = String(repeating: "x", count: 60_000)
                    var rounds = 0
                    try await TestClient.with(url: server.url) { writer in
                        var version: Int64 = 0
                        while server.server.slowConnectionsClosed == 0, rounds < 300 {
                            version = try await put(writer, "mem/a", base: version, #"{"v":"\#(value)"}"#)
                            rounds += 1
                        }
                    }
                    #expect(server.server.slowConnectionsClosed == 1, "one connection closed after \(rounds) writes")
                    stalled[0].startReading()
                    #expect(try await stalled[0].closeCode() == 1008)
                    // The client that reads got every update, in order, and is still served.
                    for version in 1...Int64(rounds) {
                        let update = try await reader.next()
                        #expect(update.type == "update" && update["version"]?.int == version)
                    }
                    #expect(try await barrier(reader).isEmpty)
                    #expect(server.server.slowConnectionsClosed == 1)
                }
            }
        }
    }
}
