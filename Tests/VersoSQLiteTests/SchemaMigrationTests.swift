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
}
