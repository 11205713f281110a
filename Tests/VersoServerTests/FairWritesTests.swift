import Foundation
import Logging
import Testing
import VersoClient
import VersoCore
import VersoEngine
@testable import VersoSQLite
import VersoServer
import VersoTesting
import VersoWire

/// A record of about `members` × 53 bytes with many small members, the costly shape to merge
/// and encode.
private func largeRecord(members: Int) -> String {
    "{"
        + (0..<members).map { #""f\#(String(format: "%06d", $0))":"\#(String(repeating: "x", count: 40))""# }.joined(
            separator: ","
        ) + "}"
}

@Suite("Fair writes: one connection's pipelined writes cannot make every other connection wait")
struct FairWritesTests {
    @Test(
        "pipelined writes on one connection are decided in the order sent, and a write from another connection is not queued behind all of them"
    )
    func pipelineDoesNotHoldBackOthers() async throws {
        let directory = TestServer.makeDataDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try await TestServer.with(dataDirectory: directory) { server in
            try await TestClient.with(url: server.url, compression: false) { hog in
                try await TestClient.with(url: server.url, compression: false) { other in
                    let key = uniqueKey("large")
                    // About 320 KB: each patch rewrites more than a transaction's work limit.
                    try await put(hog, key, base: 0, largeRecord(members: 6000))
                    // The writer waits for this lock with a third connection's put, so all the
                    // patches and the other connection's put are waiting when it goes on, however
                    // fast the machine (held well within SQLite's 5 s busy timeout).
                    let lock = try WriteLock(databaseIn: directory)
                    let engine = server.server.engine
                    try await TestClient.with(url: server.url, compression: false) { blocker in
                        try await blocker.send(#"{"type":"put","key":"\#(uniqueKey("blocker"))","base":0,"data":{}}"#)
                        try await waitUntil { engine.committingWriteCount == 1 }
                        let count = 32
                        for index in 0..<count {
                            try await hog.send(
                                #"{"type":"patch","rid":\#(index),"key":"\#(key)","base":\#(index + 1),"patch":{"f000001":\#(index)}}"#
                            )
                        }
                        try await waitUntil { engine.queuedWriteCount == count }
                        try await other.send(
                            #"{"type":"put","rid":"other","key":"\#(uniqueKey("other"))","base":0,"data":{}}"#
                        )
                        try await waitUntil { engine.queuedWriteCount == count + 1 }
                        try lock.release()
                        #expect(try await blocker.next().type == "ack")
                    }
                    let count = 32
                    let first = try await hog.next()
                    #expect(first.type == "ack" && first["rid"]?.int == 0 && first["version"]?.int == 2)
                    let otherAck = try await other.next()
                    #expect(otherAck.type == "ack" && otherAck["rid"]?.str == "other")
                    var seqs = [first["seq"]?.int ?? -1]
                    for index in 1..<count {
                        let reply = try await hog.next()
                        // Replies in request order, each patch on the version the one before made.
                        #expect(
                            reply.type == "ack" && reply["rid"]?.int == Int64(index)
                                && reply["version"]?.int == Int64(index + 2),
                            "\(reply.encodedString.prefix(200))"
                        )
                        seqs.append(reply["seq"]?.int ?? -1)
                    }
                    #expect(seqs == seqs.sorted())
                    // The other connection's write was decided before the last of the pipeline.
                    let otherSeq = otherAck["seq"]?.int ?? .max
                    #expect(
                        otherSeq < seqs.last!,
                        "the other connection's write got seq \(otherSeq), after all \(count) pipelined writes (last seq \(seqs.last!))"
                    )
                    // Read your writes: the get sees the last patch.
                    let snapshot = try await hog.request(#"{"type":"get","key":"\#(key)"}"#)
                    #expect(snapshot["version"]?.int == Int64(count + 1))
                    #expect(snapshot["data"]?["f000001"] == .number(String(count - 1)))
                    #expect(snapshot["data"]?["f000002"] == .string(String(repeating: "x", count: 40)))
                }
            }
        }
    }

    @Test(
        "a connection with 128 writes waiting has no further request taken until some are answered; then every reply comes in request order"
    )
    func inFlightLimit() async throws {
        let directory = TestServer.makeDataDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try await TestServer.with(dataDirectory: directory) { server in
            let engine = server.server.engine
            try await TestClient.with(url: server.url, compression: false) { client in
                // The writer waits for this lock with the blocker's put (well within SQLite's
                // 5 s busy timeout), so the client's writes can only queue.
                let lock = try WriteLock(databaseIn: directory)
                let keys = (0..<200).map { _ in uniqueKey("inflight") }
                try await TestClient.with(url: server.url, compression: false) { blocker in
                    try await blocker.send(#"{"type":"put","key":"\#(uniqueKey("blocker"))","base":0,"data":{}}"#)
                    try await waitUntil { engine.committingWriteCount == 1 }
                    for (index, key) in keys.enumerated() {
                        try await client.send(
                            #"{"type":"put","rid":\#(index),"key":"\#(key)","base":0,"data":{"n":\#(index)}}"#
                        )
                    }
                    try await client.send(#"{"type":"get","rid":"last","key":"\#(keys[199])"}"#)
                    try await waitUntil { engine.queuedWriteCount == 128 }
                    try await Task.sleep(for: .milliseconds(300))
                    #expect(engine.queuedWriteCount == 128, "writes past the limit were taken")
                    try lock.release()
                    #expect(try await blocker.next().type == "ack")
                }
                for index in 0..<200 {
                    let reply = try await client.next()
                    #expect(reply.type == "ack" && reply["rid"]?.int == Int64(index), "\(reply.encodedString)")
                }
                let last = try await client.next()
                #expect(
                    last.type == "snapshot" && last["rid"]?.str == "last" && last["data"]?["n"]?.int == 199,
                    "\(last.encodedString)"
                )
            }
        }
    }

    @Test("a conflict on a large record carries the record exactly as stored, before and after a patch")
    func conflictCarriesStoredData() async throws {
        try await TestServer.with { server in
            try await TestClient.with(url: server.url) { client in
                let key = uniqueKey("large")
                try await put(client, key, base: 0, largeRecord(members: 1000))
                for base in [Int64(1), 2] {
                    if base == 2 {
                        let ack = try await client.request(
                            #"{"type":"patch","key":"\#(key)","base":1,"patch":{"f000003":null,"new":[1,2]}}"#
                        )
                        #expect(ack.type == "ack" && ack["version"]?.int == 2)
                    }
                    let snapshot = try await client.request(#"{"type":"get","key":"\#(key)"}"#)
                    let conflict = try await client.request(#"{"type":"put","key":"\#(key)","base":0,"data":{}}"#)
                    #expect(conflict.type == "conflict")
                    #expect(conflict["version"]?.int == base)
                    #expect(conflict["deleted"] == .bool(false))
                    #expect(conflict["data"] == snapshot["data"])
                    #expect((conflict["data"]?["f000003"] == nil) == (base == 2))
                }
            }
        }
    }

    @Test("a commit that fails leaves the writer agreeing with the database: nothing it tried counts")
    func failedCommitRollsBackTheCache() async throws {
        let directory = TestServer.makeDataDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let configuration = SQLiteStoreConfiguration(directory: directory)
        let store = SQLiteStore(configuration: configuration, logger: Logger(label: "verso.test"))
        _ = try await store.open()
        let original = try JSONParser.parse(largeRecord(members: 1000))
        guard case .object(let data) = original else { Issue.record("not an object"); return }
        func patch(_ base: Int64, _ member: BytewiseString) -> WriteCommand {
            WriteCommand(
                operations: [
                    WriteOperation(
                        key: "large",
                        action: .patch([member: .string("changed")]),
                        precondition: .base(base)
                    )
                ],
                isTxn: false
            )
        }
        let created = try await store.commit([
            WriteCommand(
                operations: [WriteOperation(key: "large", action: .put(data), precondition: .base(0))],
                isTxn: false
            )
        ])
        guard case .applied(seq: 1, _, _) = created.first else { Issue.record("\(created)"); return }
        // A trigger fails the batch's last write, so the whole batch rolls back, after the
        // patch before it was applied (and its result cached).
        let side = try SQLiteConnection(path: configuration.databasePath, readOnly: false)
        try side.execute(
            "CREATE TRIGGER fail_boom BEFORE INSERT ON changes WHEN NEW.key = 'boom' BEGIN SELECT RAISE(ABORT, 'injected failure'); END"
        )
        let boom = WriteCommand(
            operations: [WriteOperation(key: "boom", action: .put([:]), precondition: .base(0))],
            isTxn: false
        )
        await #expect(throws: (any Error).self) { try await store.commit([patch(1, "f000001"), boom]) }
        try side.execute("DROP TRIGGER fail_boom")
        let stored = try await store.record("large")
        #expect(stored?.version == 1)
        #expect(stored?.data == original.encodedBytes)
        // The patch that failed is not the version 2 the next patch builds on.
        let stale = try await store.commit([patch(2, "f000002")])
        guard case .conflict(let details) = stale.first else { Issue.record("\(stale)"); return }
        #expect(details.first?.version == 1 && details.first?.data == original.encodedBytes)
        let outcomes = try await store.commit([patch(1, "f000002")])
        guard case .applied(_, let changes, _) = outcomes.first, let written = changes.first?.data else {
            Issue.record("\(outcomes)"); return
        }
        var expected = data
        expected["f000002"] = .string("changed")
        #expect(written == JSONValue.object(expected).encodedBytes)
        #expect(try await store.record("large")?.data == written)
        await store.close()
    }

    @Test("a commit decides the guaranteed commands, then more only while its work stays under the limit")
    func commitBudget() async throws {
        let directory = TestServer.makeDataDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let store = SQLiteStore(
            configuration: SQLiteStoreConfiguration(directory: directory),
            logger: Logger(label: "verso.test")
        )
        _ = try await store.open()
        guard case .object(let data) = try JSONParser.parse(largeRecord(members: 1000)) else {
            Issue.record("not an object"); return
        }
        func write(_ key: String, _ action: WriteAction, base: Int64) -> WriteCommand {
            WriteCommand(
                operations: [WriteOperation(key: key, action: action, precondition: .base(base))],
                isTxn: false
            )
        }
        _ = try await store.commit([write("large", .put(data), base: 0)])
        let patches = (1...4).map { write("large", .patch(["n": .number(String($0))]), base: Int64($0)) }
        // Each patch merges into and writes about 53 KB (about 106 KB of work): the second
        // starts under a 150 KB limit, the third over it.
        let budget = CommitBudget(guaranteed: 1, workLimit: 150_000)
        let first = try await store.commit(patches, budget: budget)
        #expect(first.outcomes.count == 2 && first.work.count == 2)
        // The guaranteed ones are decided whatever they cost.
        let second = try await store.commit(Array(patches[2...]), budget: CommitBudget(guaranteed: 2, workLimit: 1))
        #expect(second.outcomes.count == 2)
        #expect(try await store.record("large")?.version == 5)
        // Small writes cost little: a thousand fit under the default limit.
        let small = (0..<1000).map { write("small/\($0)", .put([:]), base: 0) }
        #expect(
            try await store.commit(
                small,
                budget: CommitBudget(guaranteed: 1, workLimit: EngineConfiguration().batchWorkLimit)
            ).outcomes.count == 1000
        )
        await store.close()
    }
}
