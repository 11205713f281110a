import Testing
import VersoClient
import VersoCore
import VersoTesting

/// A client that reaches the server through a proxy at `port`: uncompressed, so the proxy can
/// read the messages, and quick to reconnect.
private func configuration(proxyPort port: Int) -> VersoClientConfiguration {
    VersoClientConfiguration(
        url: "ws://127.0.0.1:\(port)/v1/ws",
        compression: false,
        requestTimeout: .seconds(30),
        initialBackoff: .milliseconds(50),
        maxBackoff: .milliseconds(200)
    )
}

/// The text of an `ack` reply, as the proxy looks for it.
private let ackReply = #""type":"ack""#

@Suite("Swift client: a write whose connection drops is sent again with its idempotency key (Protocol.md 3.7)")
struct ClientResendTests {
    @Test(
        "a put applied before its connection dropped, its ack lost, is resent after reconnecting and resolves once, as an ack marked replayed"
    )
    func appliedPutResent() async throws {
        try await TestServer.with { server in
            try await CuttingProxy.with(to: server.port) { proxy, port in
                try await VersoClient.with(configuration(proxyPort: port)) { client in
                    proxy.arm(.reply(containing: ackReply))
                    let outcome = try await client.put("d/1", base: 0, data: ["n": .integer(1)])
                    #expect(outcome == .ack(version: 1, seq: 1, replayed: true))
                    #expect(proxy.cuts == 1, "the first ack was lost")
                    #expect(proxy.connections == 2, "the client reconnected once")
                    #expect(
                        try await client.get("d/1") == .found(Record(key: "d/1", version: 1, data: ["n": .integer(1)]))
                    )
                }
            }
        }
    }

    @Test(
        "a merge patch and a txn applied before the drop are resent and replayed with their merged keys; each applied once"
    )
    func appliedMergeAndTxnResent() async throws {
        try await TestServer.with { server in
            try await CuttingProxy.with(to: server.port) { proxy, port in
                try await VersoClient.with(configuration(proxyPort: port)) { client in
                    _ = try await client.put("d/2", base: 0, data: ["x": .integer(1), "y": .integer(1)])
                    _ = try await client.patch("d/2", base: 1, patch: ["x": .integer(2)])
                    proxy.arm(.reply(containing: ackReply))
                    let patched = try await client.patch("d/2", base: 1, patch: ["y": .integer(2)], merge: true)
                    #expect(patched == .ack(version: 3, seq: 3, merged: true, replayed: true))

                    proxy.arm(.reply(containing: ackReply))
                    let txn = try await client.txn([
                        TxnOperation(key: "d/3", base: 0, action: .put([:])),
                        TxnOperation(key: "d/2", base: 2, action: .patch(["z": .integer(1)]), merge: true),
                    ])
                    #expect(
                        txn == .ack(TxnAck(seq: 4, merged: ["d/2"], replayed: true), versions: ["d/3": 1, "d/2": 4])
                    )
                    #expect(proxy.cuts == 2)
                    #expect(try await client.get("d/2").version == 4)
                    #expect(try await client.get("d/3").version == 1)
                }
            }
        }
    }

    @Test("a write lost before it reached the server is sent again after reconnecting and applied once")
    func lostWriteResent() async throws {
        try await TestServer.with { server in
            try await CuttingProxy.with(to: server.port) { proxy, port in
                try await VersoClient.with(configuration(proxyPort: port)) { client in
                    _ = try await client.put("d/4", base: 0, data: [:])
                    proxy.arm(.request(containing: #""type":"delete""#))
                    let outcome = try await client.delete("d/4", base: 1)
                    #expect(outcome == .ack(version: 2, seq: 2, replayed: false))
                    #expect(proxy.cuts == 1)
                    #expect(try await client.get("d/4") == .deleted(version: 2))
                }
            }
        }
    }

    @Test("a client that does not reconnect fails a write whose connection dropped with disconnected, as before")
    func noReconnectFails() async throws {
        try await TestServer.with { server in
            try await CuttingProxy.with(to: server.port) { proxy, port in
                var once = configuration(proxyPort: port)
                once.reconnect = false
                try await VersoClient.with(once) { client async throws in
                    proxy.arm(.reply(containing: ackReply))
                    await #expect { _ = try await client.put("d/5", base: 0, data: [:]) } throws: {
                        ($0 as? VersoClientError)?.kind == .disconnected
                    }
                }
            }
            // It had been applied.
            try await VersoClient.with(VersoClientConfiguration(url: server.url)) { client async throws in
                #expect(try await client.get("d/5").version == 1)
            }
        }
    }

    @Test("the same write sent again with the caller's own idempotency key gets its first ack, marked replayed")
    func callersKey() async throws {
        try await TestServer.with { server in
            try await VersoClient.with(VersoClientConfiguration(url: server.url)) { client in
                let first = try await client.put("d/6", base: 0, data: ["n": .integer(1)], idempotencyKey: "mine-1")
                #expect(first == .ack(version: 1, seq: 1))
                _ = try await client.patch("d/6", base: 1, patch: ["n": .integer(2)])
                let again = try await client.put("d/6", base: 0, data: ["n": .integer(1)], idempotencyKey: "mine-1")
                #expect(again == .ack(version: 1, seq: 1, replayed: true), "not a conflict against its own write")
                await #expect {
                    _ = try await client.put("d/6", base: 0, data: ["n": .integer(9)], idempotencyKey: "mine-1")
                } throws: {
                    ($0 as? VersoClientError)?.code == .badRequest
                }
            }
        }
    }
}
