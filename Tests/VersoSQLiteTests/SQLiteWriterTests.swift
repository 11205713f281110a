import Foundation
import Logging
import Testing
import VersoCore
import VersoEngine
@testable import VersoSQLite

/// The writer decides puts, deletes and checks on a key it knows from its version alone
/// (`KnownVersions`): these tests would fail if what it knows ran ahead of the database.
@Suite("SQLite writer: writes decided from the known version agree with the database")
struct SQLiteWriterTests {
    func put(_ key: String, base: Int64, _ value: String) -> WriteCommand {
        WriteCommand(
            operations: [WriteOperation(key: key, action: .put(["v": .string(value)]), precondition: .base(base))],
            isTxn: false
        )
    }

    func patch(_ key: String, base: Int64) -> WriteCommand {
        WriteCommand(
            operations: [WriteOperation(key: key, action: .patch(["p": .bool(true)]), precondition: .base(base))],
            isTxn: false
        )
    }

    func withStore(_ body: (SQLiteStore, String) async throws -> Void) async throws {
        let directory = makeTemporaryFolder()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let configuration = SQLiteStoreConfiguration(directory: directory)
        let store = SQLiteStore(configuration: configuration, logger: Logger(label: "test"))
        _ = try await store.open()
        try await body(store, configuration.databasePath)
        await store.close()
    }

    /// The engine's writer task runs on the store's writer executor and commits there with no
    /// hop; anyone else's commit hops to the writer's queue. Both must commit, in turn.
    @Test("commits from the writer's executor run there directly, others hop to it, and they take turns")
    func commitsOnAndOffTheWriterExecutor() async throws {
        try await withStore { store, _ in
            let executor = try #require(store.writerExecutor)
            let onWriter = try await withTaskExecutorPreference(executor) {
                #expect(store.isOnWriterQueue)
                return try await store.commit([put("k", base: 0, "one")])
            }
            #expect(!store.isOnWriterQueue)
            let elsewhere = try await store.commit([put("k", base: 1, "two")])
            let onWriterAgain = try await withTaskExecutorPreference(executor) {
                try await store.commit([put("k", base: 2, "three")])
            }
            for (index, outcome) in [onWriter, elsewhere, onWriterAgain].enumerated() {
                guard case .applied(let seq, _, let versions) = outcome.first else {
                    Issue.record("commit \(index) not applied: \(outcome)"); continue
                }
                #expect(seq == Int64(index + 1))
                #expect(versions.first?.version == Int64(index + 1))
            }
        }
    }

    @Test(
        "a conflict after a write decided by the version carries the current data and version, and the paths changed since its base"
    )
    func conflictCarriesData() async throws {
        try await withStore { store, _ in
            _ = try await store.commit([put("k", base: 0, "one")])
            _ = try await store.commit([put("k", base: 1, "two")])
            let outcomes = try await store.commit([
                put("k", base: 1, "late"),
                WriteCommand(
                    operations: [WriteOperation(key: "k", action: .delete, precondition: .base(2))],
                    isTxn: false
                ),
            ])
            var detail = ConflictDetail(
                key: "k",
                base: 1,
                version: 2,
                data: Array(#"{"v":"two"}"#.utf8),
                deleted: false
            )
            detail.changed = [FieldPath(["v"])]
            #expect(untimed(outcomes[0]) == .conflict([detail]))
            guard case .applied(_, let changes, _) = outcomes[1] else {
                Issue.record("delete not applied: \(outcomes[1])"); return
            }
            #expect(changes.map(\.version) == [3])
            let again = try await store.commit([
                WriteCommand(
                    operations: [WriteOperation(key: "k", action: .delete, precondition: .base(3))],
                    isTxn: false
                ), put("k", base: 3, "back"),
            ])
            #expect(again[0] == .notFound(key: "k", current: RecordState(version: 3, data: nil)))
            guard case .applied(_, let revived, _) = again[1] else {
                Issue.record("put on the tombstone not applied: \(again[1])"); return
            }
            #expect(
                revived.map(untimed) == [
                    Change(seq: revived[0].seq, key: "k", version: 4, data: Array(#"{"v":"back"}"#.utf8))
                ]
            )
            #expect(try await store.record("k") == StoredRecord(version: 4, data: Array(#"{"v":"back"}"#.utf8)))
        }
    }

    @Test("after a batch rolls back, the writer knows the versions the database holds, not the ones the batch wrote")
    func rollbackForgetsVersions() async throws {
        try await withStore { store, path in
            _ = try await store.commit([put("k", base: 0, "one"), put("broken", base: 0, "x")])
            // Stored data a patch cannot merge into: the batch below fails after its put of k.
            let outside = try SQLiteConnection(path: path, readOnly: false)
            try outside.execute(#"UPDATE records SET data = '[1]' WHERE key = 'broken'"#)
            await #expect(throws: (any Error).self) {
                try await store.commit([put("k", base: 1, "lost"), patch("broken", base: 1)])
            }
            // k is still at version 1: base 2 (the rolled-back write's) conflicts, base 1 wins.
            let outcomes = try await store.commit([put("k", base: 2, "stale")])
            #expect(
                outcomes.map(untimed) == [
                    .conflict([
                        ConflictDetail(key: "k", base: 2, version: 1, data: Array(#"{"v":"one"}"#.utf8), deleted: false)
                    ])
                ]
            )
            let next = try await store.commit([put("k", base: 1, "two")])
            guard case .applied(_, let changes, _) = next[0] else { Issue.record("not applied: \(next[0])"); return }
            #expect(changes.map(\.version) == [2])
        }
    }

    /// Pruning 1/16 of a large history in one commit made every write of that batch wait tens
    /// of milliseconds; a commit prunes at most `maxPrunedSeqsPerCommit` seqs, and the log still
    /// holds every change after the seq it says it was pruned through.
    @Test("a commit prunes at most a bounded number of seqs, and the log holds every change after them")
    func pruningIsBoundedPerCommit() async throws {
        let directory = makeTemporaryFolder()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let configuration = SQLiteStoreConfiguration(directory: directory, durability: .normal, historyLimit: 32_768)
        let store = SQLiteStore(configuration: configuration, logger: Logger(label: "test"))
        _ = try await store.open()
        // 35,000 changes: the commit that takes the log 2,048 seqs (1/16) past its limit is due
        // to prune 2,232 of them, and prunes 1,024.
        for batch in 0..<70 {
            _ = try await store.commit((0..<500).map { put("k\(batch * 500 + $0)", base: 0, "v") })
        }
        let bounds = try await store.logBounds()
        #expect(bounds.lastSeq == 35_000)
        #expect(bounds.prunedThrough == SQLiteWriter.maxPrunedSeqsPerCommit)
        let replay = try await store.changes(after: bounds.prunedThrough, matching: .prefix(""))
        #expect(replay?.changes.count == 35_000 - Int(bounds.prunedThrough))
        #expect(try await store.changes(after: bounds.prunedThrough - 1, matching: .prefix("")) == nil)
        await store.close()
    }

    @Test(
        "the versions a prune drops are kept up to keepVersions per key, older kept ones trimmed, also for keys the writer no longer knows"
    )
    func prunedVersionsAreKeptAndTrimmed() async throws {
        let directory = makeTemporaryFolder()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let configuration = SQLiteStoreConfiguration(
            directory: directory,
            durability: .normal,
            historyLimit: 16,
            keepVersions: 3
        )
        func keptVersions(_ key: String) throws -> [Int64] {
            let check = try SQLiteConnection(path: configuration.databasePath, readOnly: true)
            return try check.withStatement("SELECT version FROM kept_versions WHERE key = ?1 ORDER BY version") {
                statement in
                try statement.bind(1, key)
                var versions: [Int64] = []
                while try statement.step() { versions.append(statement.int64(0)) }
                return versions
            }
        }
        for reopen in [false, true] {
            let key = reopen ? "after-reopen" : "known"
            var store = SQLiteStore(configuration: configuration, logger: Logger(label: "test"))
            _ = try await store.open()
            for base in Int64(0)..<10 { _ = try await store.commit([put(key, base: base, "v\(base)")]) }
            if reopen {
                // A store opened again knows no versions: the prune reads them from the database.
                await store.close()
                store = SQLiteStore(configuration: configuration, logger: Logger(label: "test"))
                _ = try await store.open()
            }
            for index in 0..<40 { _ = try await store.commit([put("\(key)-filler\(index)", base: 0, "f")]) }
            #expect(try keptVersions(key) == [8, 9, 10], "\(key)")
            for base in Int64(10)..<20 { _ = try await store.commit([put(key, base: base, "w\(base)")]) }
            for index in 0..<40 { _ = try await store.commit([put("\(key)-more\(index)", base: 0, "f")]) }
            #expect(try keptVersions(key) == [18, 19, 20], "\(key)")
            await store.close()
        }
    }

    @Test("the known versions start over when full, and keys no longer known are read again")
    func knownVersionsStartOver() {
        var known = KnownVersions(capacity: 2)
        known.set("a", version: 1, seq: 1, isLive: true)
        known.set("b", version: 2, seq: 2, isLive: false)
        known.set("a", version: 3, seq: 3, isLive: true)
        #expect(known.count == 2 && known["a"] == .init(version: 3, seq: 3, isLive: true))
        known.set("c", version: 1, seq: 4, isLive: true)
        #expect(known.count == 1 && known["a"] == nil && known["c"] == .init(version: 1, seq: 4, isLive: true))
    }
}

/// `outcome` with its commit times taken out, to compare with one written out by hand.
private func untimed(_ outcome: CommandOutcome) -> CommandOutcome {
    switch outcome {
    case .applied(let seq, let changes, let versions):
        .applied(seq: seq, changes: changes.map(untimed), versions: versions)
    case .conflict(let details):
        .conflict(
            details.map {
                var detail = $0
                detail.at = nil
                return detail
            }
        )
    case .batch(let outcomes): .batch(outcomes.map(untimed))
    case .replayed(let original): .replayed(untimed(original))
    default: outcome
    }
}

private func untimed(_ change: Change) -> Change {
    var change = change
    change.at = nil
    return change
}
