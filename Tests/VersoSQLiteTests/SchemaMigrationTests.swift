import Foundation
import Logging
import Testing
import VersoCore
import VersoEngine
@testable import VersoSQLite

@Suite("Schema migrations: a database made by an older server opens with everything in it")
struct SchemaMigrationTests {
    @Test(
        "a schema 1 database (WITHOUT ROWID tables) is migrated to rowid tables, keeping records, tombstones, the change log, the epoch and the seq"
    )
    func schemaOneToRowidTables() async throws {
        let directory = makeTemporaryFolder()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let configuration = SQLiteStoreConfiguration(directory: directory)
        // A database as schema 1 left it, written without the store.
        do {
            let old = try SQLiteConnection(path: configuration.databasePath, readOnly: false)
            try old.execute(SQLiteSchema.migrations[0].sql)
            try old.execute(
                """
                INSERT INTO store_state (id, epoch, last_seq, pruned_through) VALUES (1, 'old-epoch', 3, 0);
                INSERT INTO records (key, version, data, seq) VALUES ('a', 2, '{"n":2}', 2), ('gone', 2, NULL, 3);
                INSERT INTO changes (seq, key, version, data) VALUES (1, 'a', 1, '{"n":1}'), (2, 'a', 2, '{"n":2}'), (3, 'gone', 2, NULL);
                PRAGMA user_version = 1;
                """
            )
        }
        let store = SQLiteStore(configuration: configuration, logger: Logger(label: "verso.test"))
        let info = try await store.open()
        #expect(info.epoch == "old-epoch" && info.lastSeq == 3)
        #expect(try await store.record("a") == StoredRecord(version: 2, data: Array(#"{"n":2}"#.utf8)))
        #expect(try await store.record("gone") == StoredRecord(version: 2, data: nil))
        let replay = try await store.changes(after: 0, matching: .prefix(""))
        #expect(replay?.changes.map(\.seq) == [1, 2, 3])
        #expect(replay?.changes.last?.data == nil)
        // Writes go on from the migrated state, with the compare-and-set on the old version.
        let outcomes = try await store.commit([
            WriteCommand(
                operations: [WriteOperation(key: "a", action: .patch(["n": .number("3")]), precondition: .base(2))],
                isTxn: false
            )
        ])
        guard case .applied(seq: 4, _, _) = outcomes.first else {
            Issue.record("\(outcomes)")
            return
        }
        await store.close()
        let check = try SQLiteConnection(path: configuration.databasePath, readOnly: true)
        let tables = try check.withStatement(
            "SELECT sql FROM sqlite_master WHERE type = 'table' AND name IN ('records', 'changes')"
        ) { statement in
            var sql: [String] = []
            while try statement.step() { sql.append(statement.text(0)) }
            return sql
        }
        #expect(tables.count == 2)
        #expect(tables.allSatisfy { !$0.uppercased().contains("WITHOUT ROWID") }, "\(tables)")
        let version = try check.withStatement("PRAGMA user_version") { statement in
            _ = try statement.step()
            return statement.int64(0)
        }
        #expect(version == Int64(SQLiteSchema.migrations.count))
    }

    @Test(
        "a schema 5 change log (keyed by seq and key) is rekeyed by id in (seq, key) bytewise order: replay, history and merges read it as before, and new changes follow"
    )
    func changeLogKeyedById() async throws {
        let directory = makeTemporaryFolder()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let configuration = SQLiteStoreConfiguration(directory: directory)
        do {
            let old = try SQLiteConnection(path: configuration.databasePath, readOnly: false)
            for migration in SQLiteSchema.migrations.prefix(5) { try old.execute(migration.sql) }
            // Seq 2 is a txn of three keys, logged in an order that is not theirs; "B" sorts
            // before "a" as bytes, and "é" (C3 A9) after "z".
            try old.execute(
                """
                INSERT INTO store_state (id, epoch, last_seq, pruned_through) VALUES (1, 'old-epoch', 3, 0);
                INSERT INTO records (key, version, data, seq) VALUES
                    ('a', 3, '{"n":3}', 3), ('z', 1, '{"z":1}', 2), ('é', 1, '{"e":1}', 2), ('B', 1, '{"b":1}', 2);
                INSERT INTO changes (seq, key, version, data, previous_seq) VALUES
                    (1, 'a', 1, '{"n":1}', NULL), (2, 'z', 1, '{"z":1}', NULL), (2, 'é', 1, '{"e":1}', NULL),
                    (2, 'a', 2, '{"n":2}', 1), (2, 'B', 1, '{"b":1}', NULL), (3, 'a', 3, '{"n":3}', 2);
                PRAGMA user_version = 5;
                """
            )
        }
        let store = SQLiteStore(configuration: configuration, logger: Logger(label: "verso.test"))
        _ = try await store.open()
        let replay = try #require(try await store.changes(after: 0, matching: .prefix("")))
        #expect(replay.changes.map { "\($0.seq) \($0.key)" } == ["1 a", "2 B", "2 a", "2 z", "2 é", "3 a"])
        let afterOne = try #require(try await store.changes(after: 2, matching: .prefix("")))
        #expect(afterOne.changes.map(\.seq) == [3])
        // History walks back through the log by each change's previous seq.
        let history = try #require(try await store.history(of: "a", before: nil, limit: 10, maxBytes: 1 << 20))
        #expect(history.versions.map(\.version) == [3, 2, 1])
        // A merge of fields reads the versions since its base from the log.
        let merged = try await store.commit([
            WriteCommand(
                operations: [
                    WriteOperation(key: "a", action: .patch(["m": .bool(true)]), precondition: .base(1), merge: .fields)
                ],
                isTxn: false
            )
        ])
        guard case .applied(seq: 4, _, _) = merged.first else {
            Issue.record("\(merged)")
            return
        }
        // A new txn's changes are logged in key order too, whatever order it gave them in.
        let txn = try await store.commit([
            WriteCommand(
                operations: ["y", "C", "b"].map { WriteOperation(key: $0, action: .put([:]), precondition: .base(0)) },
                isTxn: true
            )
        ])
        guard case .applied(seq: 5, _, _) = txn.first else {
            Issue.record("\(txn)")
            return
        }
        let after = try #require(try await store.changes(after: 3, matching: .prefix("")))
        #expect(after.changes.map { "\($0.seq) \($0.key)" } == ["4 a", "5 C", "5 b", "5 y"])
        await store.close()

        let check = try SQLiteConnection(path: configuration.databasePath, readOnly: true)
        let ids = try check.withStatement("SELECT id, seq FROM changes ORDER BY id") { statement in
            var ids: [Int64] = []
            while try statement.step() {
                #expect(statement.int64(0) / ChangeLog.placesPerSeq == statement.int64(1))
                ids.append(statement.int64(0))
            }
            return ids
        }
        #expect(ids.count == 10)
        let indexes = try check.withStatement(
            "SELECT count(*) FROM sqlite_master WHERE type = 'index' AND tbl_name = 'changes'"
        ) { statement in
            _ = try statement.step()
            return statement.int64(0)
        }
        #expect(indexes == 0, "the log has no index besides its ids")
        // Each way the log is read or pruned is a range of ids, never a scan of the table.
        for condition in [ChangeLog.seqIs(1), ChangeLog.seqAfter(1), ChangeLog.seqAtMost(1)] {
            let plan = try check.withStatement("EXPLAIN QUERY PLAN SELECT key FROM changes WHERE \(condition)") {
                statement in
                var details: [String] = []
                while try statement.step() { details.append(statement.text(3)) }
                return details.joined(separator: "; ")
            }
            #expect(plan.contains("INTEGER PRIMARY KEY"), "\(condition): \(plan)")
        }
    }

    @Test("one seq's changes always fit its ids: a txn's most keys are fewer than the places per seq")
    func placesPerSeqHoldATxn() {
        #expect(ChangeLog.placesPerSeq > Int64(RequestLimits.maxTxnOps))
        #expect(ChangeLog.places(of: ["b", "a", "é", "B"]) == [2, 1, 3, 0])
    }
}
