import Testing
import VersoClient
import VersoCore
import VersoTesting

/// A client of the test server at `url`.
private func configuration(_ url: String) -> VersoClientConfiguration {
    VersoClientConfiguration(url: url, requestTimeout: .seconds(30))
}

@Suite("Swift client: batch (Protocol.md 3.8, \"batch: many writes, a result each\")")
struct ClientBatchTests {
    @Test(
        "each op is decided on its own, in order, against the state the ops before it left; one reply carries a result per op, in order, each an ack, conflict or error"
    )
    func resultsInOrder() async throws {
        try await TestServer.with { server in
            try await VersoClient.with(configuration(server.url)) { client in
                #expect(try await client.put("b", base: 0, data: ["y": .integer(1)]) == .ack(version: 1, seq: 1))
                let outcome = try await client.batch([
                    TxnOperation(key: "a", base: 0, action: .put(["x": .integer(1)])),
                    TxnOperation(key: "b", base: 2, action: .put(["y": .integer(2)])),
                    TxnOperation(key: "c", base: 0, action: .delete),
                    TxnOperation(key: "a", base: 1, action: .patch(["z": .integer(3)])),
                    TxnOperation(key: "b", base: 1, action: .check),
                ])
                #expect(!outcome.replayed)
                try #require(outcome.results.count == 5)
                #expect(outcome.results[0] == .ack(key: "a", version: 1, seq: 2))
                guard case .conflict(var conflict) = outcome.results[1] else {
                    Issue.record("expected a conflict for b, got \(outcome.results[1])")
                    return
                }
                #expect(conflict.at != nil, "a conflict says when the current version was written")
                conflict.at = nil
                #expect(
                    conflict == RecordConflict(key: "b", base: 2, version: 1, data: ["y": .integer(1)], deleted: false)
                )
                guard case .error(let key, let code, let message) = outcome.results[2] else {
                    Issue.record("expected an error for c, got \(outcome.results[2])")
                    return
                }
                #expect(key == "c" && code == .notFound && !message.isEmpty)
                #expect(outcome.results[3] == .ack(key: "a", version: 2, seq: 3), "decided after the put before it")
                #expect(outcome.results[4] == .ack(key: "b", version: 1, seq: 3), "a check that holds")
                #expect(
                    try await client.get("a")
                        == .found(Record(key: "a", version: 2, data: ["x": .integer(1), "z": .integer(3)]))
                )
                #expect(try await client.get("b").version == 1, "the conflicting op changed nothing")
            }
        }
    }

    @Test(
        "a merge op on a stale base is merged (its ack says merged) unless it clashes (a conflict with reason and clashes); a merge op that is a forced write is refused before sending"
    )
    func merge() async throws {
        try await TestServer.with { server in
            try await VersoClient.with(configuration(server.url)) { client in
                _ = try await client.put("m", base: 0, data: ["a": .integer(1), "b": .integer(1)])
                _ = try await client.patch("m", base: 1, patch: ["a": .integer(2)])
                let outcome = try await client.batch([
                    TxnOperation(key: "m", base: 1, action: .patch(["b": .integer(2)]), merge: true),
                    TxnOperation(key: "m", base: 1, action: .patch(["a": .integer(3)]), merge: true),
                ])
                #expect(outcome.results.first == .ack(key: "m", version: 3, seq: 3, merged: true))
                guard case .conflict(let conflict)? = outcome.results.last else {
                    Issue.record("expected a conflict, got \(outcome.results)")
                    return
                }
                #expect(conflict.reason == .clash)
                #expect(conflict.clashes == [FieldPath(["a"])])
                #expect(conflict.version == 3)

                await #expect {
                    _ = try await client.batch([TxnOperation(key: "m", base: nil, action: .put([:]), merge: true)])
                } throws: {
                    ($0 as? VersoClientError)?.kind == .invalidArgument
                }
            }
        }
    }

    @Test(
        "a batch sent again with the same idempotency key changes nothing and gets its first results again, conflicts and errors included, marked replayed (Protocol.md 3.7)"
    )
    func replayed() async throws {
        try await TestServer.with { server in
            try await VersoClient.with(configuration(server.url)) { client in
                let operations = [
                    TxnOperation(key: "r/1", base: 0, action: .put([:])),
                    TxnOperation(key: "r/1", base: 0, action: .put([:])),
                    TxnOperation(key: "r/2", base: 0, action: .delete),
                ]
                let first = try await client.batch(operations, idempotencyKey: "batch-1")
                let again = try await client.batch(operations, idempotencyKey: "batch-1")
                #expect(!first.replayed && again.replayed)
                #expect(again.results == first.results)
                #expect(try await client.get("r/1").version == 1)
            }
        }
    }

    @Test(
        "a batch applied before its connection dropped, its reply lost, is resent after reconnecting with its idempotency key and resolves once, marked replayed"
    )
    func resentAfterDrop() async throws {
        try await TestServer.with { server in
            try await CuttingProxy.with(to: server.port) { proxy, port in
                let proxied = VersoClientConfiguration(
                    url: "ws://127.0.0.1:\(port)/v1/ws",
                    compression: false,
                    requestTimeout: .seconds(30),
                    initialBackoff: .milliseconds(50),
                    maxBackoff: .milliseconds(200)
                )
                try await VersoClient.with(proxied) { client in
                    proxy.arm(.reply(containing: #""type":"results""#))
                    let outcome = try await client.batch([
                        TxnOperation(key: "d/1", base: 0, action: .put(["n": .integer(1)])),
                        TxnOperation(key: "d/2", base: 0, action: .put(["n": .integer(2)])),
                    ])
                    #expect(
                        outcome
                            == BatchOutcome(
                                results: [.ack(key: "d/1", version: 1, seq: 1), .ack(key: "d/2", version: 1, seq: 2)],
                                replayed: true
                            )
                    )
                    #expect(proxy.cuts == 1 && proxy.connections == 2)
                    #expect(try await client.get("d/2").version == 1)
                }
            }
        }
    }
}
