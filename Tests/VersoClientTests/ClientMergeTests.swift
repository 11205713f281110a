import Foundation
import Testing
import VersoCore
import VersoServer
import VersoTesting

@testable import VersoClient

/// A client of the test server at `url`.
private func configuration(_ url: String) -> VersoClientConfiguration {
    VersoClientConfiguration(url: url, requestTimeout: .seconds(30))
}

@Suite("Swift client: field-level merge (Protocol.md 3.3, \"Field-level merge\")")
struct ClientMergeTests {
    @Test(
        "a put or patch with merge on a stale base is merged into the current record unless a value it changes was changed since its base, and its ack says merged"
    )
    func mergedAck() async throws {
        try await TestServer.with { server in
            try await VersoClient.with(configuration(server.url)) { client in
                let record: JSONObject = ["title": .string("a"), "body": .string("a"), "n": .integer(1)]
                #expect(try await client.put("m/1", base: 0, data: record) == .ack(version: 1, seq: 1))
                #expect(
                    try await client.patch("m/1", base: 1, patch: ["title": .string("b")]) == .ack(version: 2, seq: 2)
                )
                let patched = try await client.patch("m/1", base: 1, patch: ["body": .string("b")], merge: true)
                #expect(patched == .ack(version: 3, seq: 3, merged: true))
                var put = record
                put["n"] = .integer(2)
                let merged = try await client.put("m/1", base: 1, data: put, merge: true)
                #expect(merged == .ack(version: 4, seq: 4, merged: true))
                #expect(
                    try await client.get("m/1")
                        == .found(
                            Record(
                                key: "m/1",
                                version: 4,
                                data: ["title": .string("b"), "body": .string("b"), "n": .integer(2)]
                            )
                        )
                )
                // On the current base a merge write is a plain write.
                let current = try await client.patch("m/1", base: 4, patch: ["n": .integer(3)], merge: true)
                #expect(current == .ack(version: 5, seq: 5, merged: false))
            }
        }
    }

    @Test(
        "a clash is a conflict with reason clash, the clashing paths and every path changed since base; a conflict of a write without merge has no reason or clashes, and the same changed paths"
    )
    func clash() async throws {
        try await TestServer.with { server in
            try await VersoClient.with(configuration(server.url)) { client in
                let start: JSONObject = ["title": .string("a"), "meta": .object(["x": .integer(1), "y": .integer(1)])]
                _ = try await client.put("m/2", base: 0, data: start)
                _ = try await client.patch("m/2", base: 1, patch: ["meta": .object(["x": .integer(2)])])
                let outcome = try await client.patch(
                    "m/2",
                    base: 1,
                    patch: ["meta": .object(["x": .integer(3)]), "title": .string("c")],
                    merge: true
                )
                guard case .conflict(let conflict) = outcome else {
                    Issue.record("expected a conflict, got \(outcome)")
                    return
                }
                #expect(conflict.reason == .clash)
                #expect(conflict.clashes == [FieldPath(["meta", "x"])])
                #expect(conflict.changed == [FieldPath(["meta", "x"])])
                #expect(conflict.version == 2)
                #expect(
                    conflict.data == ["title": .string("a"), "meta": .object(["x": .integer(2), "y": .integer(1)])]
                )

                let plain = try await client.patch("m/2", base: 1, patch: ["title": .string("c")])
                guard case .conflict(let plainConflict) = plain else {
                    Issue.record("expected a conflict, got \(plain)")
                    return
                }
                #expect(plainConflict.reason == nil)
                #expect(plainConflict.clashes.isEmpty)
                #expect(plainConflict.changed == [FieldPath(["meta", "x"])], "what moved, merge or not")
            }
        }
    }

    @Test("a merge on a record deleted since its base says deleted; on one created since, recreated")
    func otherReasons() async throws {
        try await TestServer.with { server in
            try await VersoClient.with(configuration(server.url)) { client in
                _ = try await client.put("m/3", base: 0, data: ["a": .integer(1)])
                _ = try await client.delete("m/3", base: 1)
                guard case .conflict(let deleted) = try await client.patch("m/3", base: 1, patch: [:], merge: true)
                else {
                    Issue.record("expected a conflict")
                    return
                }
                #expect(deleted.reason == .deleted)
                #expect(deleted.deleted && deleted.data == nil)
                #expect(deleted.clashes.isEmpty && deleted.changed == nil)

                _ = try await client.put("m/4", base: 0, data: ["a": .integer(1)])
                guard
                    case .conflict(let recreated) = try await client.put(
                        "m/4",
                        base: 0,
                        data: ["b": .integer(1)],
                        merge: true
                    )
                else {
                    Issue.record("expected a conflict")
                    return
                }
                #expect(recreated.reason == .recreated)
            }
        }
    }

    @Test(
        "a txn's ack lists the keys whose merge ops were merged; a txn conflict gives each merge op's reason and clashes"
    )
    func txn() async throws {
        try await TestServer.with { server in
            try await VersoClient.with(configuration(server.url)) { client in
                _ = try await client.put("t/b", base: 0, data: ["x": .integer(1), "y": .integer(1)])
                _ = try await client.patch("t/b", base: 1, patch: ["x": .integer(2)])
                let outcome = try await client.txn([
                    TxnOperation(key: "t/a", base: 0, action: .put([:])),
                    TxnOperation(key: "t/b", base: 1, action: .patch(["y": .integer(2)]), merge: true),
                ])
                #expect(outcome == .ack(TxnAck(seq: 3, merged: ["t/b"]), versions: ["t/a": 1, "t/b": 3]))
                let clash = try await client.txn([
                    TxnOperation(key: "t/a", base: 1, action: .check),
                    TxnOperation(key: "t/b", base: 1, action: .patch(["x": .integer(5)]), merge: true),
                ])
                guard case .conflict(let conflicts) = clash else {
                    Issue.record("expected a conflict, got \(clash)")
                    return
                }
                #expect(conflicts.map(\.key) == ["t/b"])
                #expect(conflicts.first?.reason == .clash)
                #expect(conflicts.first?.clashes == [FieldPath(["x"])])
            }
        }
    }

    @Test(
        "merge with a forced write, or on a delete or check, is refused before anything is sent, as is an idempotency key that is not 1–128 bytes"
    )
    func refusedBeforeSending() async throws {
        try await TestServer.with(configure: { $0.allowForce = true }) { server in
            try await VersoClient.with(configuration(server.url)) { client async throws in
                for attempt in [
                    { _ = try await client.put("r/1", base: nil, data: [:], merge: true) },
                    { _ = try await client.patch("r/1", base: nil, patch: [:], merge: true) },
                    { _ = try await client.txn([TxnOperation(key: "r/1", base: 0, action: .delete, merge: true)]) },
                    { _ = try await client.txn([TxnOperation(key: "r/1", base: 0, action: .check, merge: true)]) },
                    { _ = try await client.put("r/1", base: 0, data: [:], idempotencyKey: "") },
                    {
                        let long = String(repeating: "k", count: RequestLimits.maxIdempotencyKeyBytes + 1)
                        _ = try await client.put("r/1", base: 0, data: [:], idempotencyKey: long)
                    },
                ] as [() async throws -> Void] {
                    await #expect { try await attempt() } throws: {
                        ($0 as? VersoClientError)?.kind == .invalidArgument
                    }
                }
                #expect(try await client.get("r/1") == .missing, "nothing was sent")
            }
        }
    }

    @Test("a conflict on a key the token may write but not read says hidden, with no data")
    func hiddenConflict() async throws {
        let folder = TestServer.makeDataDirectory()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let file = (folder as NSString).appendingPathComponent("tokens.json")
        let tokens = #"""
            {"tokens":[
              {"token":"root-0123456789","user":"root","rules":[{"prefix":"","allow":["read","write"]}]},
              {"token":"drop-0123456789","user":"drop","rules":[{"prefix":"inbox/","allow":["write"]}]}
            ]}
            """#
        try Data(tokens.utf8).write(to: URL(fileURLWithPath: file))
        try FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: file)
        try await TestServer.with(configure: { $0.authentication = .tokens(file: file) }) { server in
            var root = configuration(server.url)
            root.token = "root-0123456789"
            try await VersoClient.with(root) { client in
                _ = try await client.put("inbox/1", base: 0, data: ["secret": .string("s")])
            }
            var writer = configuration(server.url)
            writer.token = "drop-0123456789"
            try await VersoClient.with(writer) { client in
                guard case .conflict(let conflict) = try await client.put("inbox/1", base: 0, data: [:]) else {
                    Issue.record("a stale put was not a conflict")
                    return
                }
                #expect(conflict.hidden)
                #expect(conflict.data == nil && !conflict.deleted && conflict.version == 1)
            }
        }
    }
}
