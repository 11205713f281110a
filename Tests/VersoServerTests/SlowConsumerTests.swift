import Foundation
import Testing
import VersoClient
import VersoCore
import VersoEngine
import VersoServer
import VersoTesting
import VersoWire

@Suite("Slow consumers")
struct SlowConsumerTests {
    @Test(
        "a client that stops reading is disconnected with 1008 once its queue passes the limit, nothing it sends after is applied, and the others go on"
    )
    func slowConsumerIsCut() async throws {
        try await TestServer.with(configure: {
            $0.maxQueuedBytesPerConnection = 256 << 10
            // Time enough, on a busy machine, to read the close frame before the socket is dropped.
            $0.closeGracePeriod = .seconds(60)
        }) { server in
            try await RawWebSocketClient.with(port: server.port, count: 1) { clients in
                let slow = clients[0]
                try await slow.send(#"{"type":"subscribe","prefix":"slow/"}"#)
                // Wait for the subscription to exist; the client does not read until it is cut.
                try await waitUntil { server.server.engine.subscriptionCount == 1 }

                let value = String(repeating: "x", count: 60_000)
                try await TestClient.with(url: server.url) { writer in
                    var version: Int64 = 0
                    var round = 0
                    while server.server.slowConnectionsClosed == 0, round < 2_000 {
                        version = try await put(writer, "slow/a", base: version, #"{"v":"\#(value)"}"#)
                        round += 1
                    }
                    #expect(
                        server.server.slowConnectionsClosed == 1,
                        "the slow subscriber was disconnected after \(round) writes"
                    )
                    // A write the cut client sends after the close began is not applied.
                    let late = uniqueKey("slow-late")
                    try await slow.send(#"{"type":"put","key":"\#(late)","base":0,"data":{}}"#)
                    // What reached the socket before the close still arrives, then the close frame.
                    slow.startReading()
                    #expect(try await slow.closeCode() == 1008)
                    await slow.close()
                    let lateReply = try await writer.request(#"{"type":"get","key":"\#(late)"}"#)
                    #expect(
                        lateReply["code"]?.str == "not_found",
                        "a put sent after the 1008 close was applied: \(lateReply.encodedString)"
                    )
                    try await waitUntil { server.server.engine.subscriptionCount == 0 }
                    // The server and the writer are unaffected.
                    #expect(try await put(writer, "slow/b", base: 0) == 1)
                }
            }
        }
    }
}
