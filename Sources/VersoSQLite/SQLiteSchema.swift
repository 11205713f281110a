import Foundation

/// The database schema as numbered migrations. A shipped step never changes; new steps are appended.
enum SQLiteSchema {
    static let migrations: [(name: String, sql: String)] = [
        (
            "create records, changes and store state",
            """
            CREATE TABLE store_state (
                id INTEGER PRIMARY KEY CHECK (id = 1),
                epoch TEXT NOT NULL,
                last_seq INTEGER NOT NULL CHECK (last_seq >= 0),
                pruned_through INTEGER NOT NULL CHECK (pruned_through >= 0)
            );
            CREATE TABLE records (
                key TEXT PRIMARY KEY NOT NULL,
                version INTEGER NOT NULL CHECK (version >= 1),
                data TEXT,
                seq INTEGER NOT NULL CHECK (seq >= 1)
            ) WITHOUT ROWID;
            CREATE TABLE changes (
                seq INTEGER NOT NULL CHECK (seq >= 1),
                key TEXT NOT NULL,
                version INTEGER NOT NULL CHECK (version >= 1),
                data TEXT,
                PRIMARY KEY (seq, key)
            ) WITHOUT ROWID;
            """
        ),
        (
            // WITHOUT ROWID tables keep each whole row in their b-tree's keys: every seek that
            // compares against a row with overflow pages copies the whole row (SQLite's
            // sqlite3BtreeIndexMoveto), and interior pages hold copies of whole rows. With
            // records of up to a megabyte that made one patch of a large record cost
            // megabytes of copying. Rowid tables keep only the keys in the key indexes; the
            // small columns come first so reading them never walks a large row's overflow.
            "records and changes as rowid tables",
            """
            CREATE TABLE records_v2 (
                key TEXT PRIMARY KEY NOT NULL,
                version INTEGER NOT NULL CHECK (version >= 1),
                seq INTEGER NOT NULL CHECK (seq >= 1),
                data TEXT
            );
            INSERT INTO records_v2 (key, version, seq, data) SELECT key, version, seq, data FROM records ORDER BY key;
            DROP TABLE records;
            ALTER TABLE records_v2 RENAME TO records;
            CREATE TABLE changes_v2 (
                seq INTEGER NOT NULL CHECK (seq >= 1),
                key TEXT NOT NULL,
                version INTEGER NOT NULL CHECK (version >= 1),
                data TEXT,
                PRIMARY KEY (seq, key)
            );
            INSERT INTO changes_v2 (seq, key, version, data) SELECT seq, key, version, data FROM changes ORDER BY seq, key;
            DROP TABLE changes;
            ALTER TABLE changes_v2 RENAME TO changes;
            """
        ),
        (
            // A "merge": "fields" write reads the versions of one key since its base: each
            // change names the seq of the key's version before it, so the writer walks back
            // from the record's seq by the (seq, key) primary key. (An index on (key, version)
            // would do it too, but costs every write a random b-tree insert.)
            "changes link to the key's previous change",
            """
            ALTER TABLE changes ADD COLUMN previous_seq INTEGER;
            """
        ),
        (
            // Idempotency keys with the outcome of the write that first used them: one b-tree
            // by (scope, key), the rows small (a 128-bit fingerprint in hex, a short outcome).
            "idempotency keys",
            """
            CREATE TABLE idempotency (
                scope TEXT NOT NULL,
                key TEXT NOT NULL,
                fingerprint TEXT NOT NULL,
                at INTEGER NOT NULL,
                outcome TEXT NOT NULL,
                PRIMARY KEY (scope, key)
            ) WITHOUT ROWID;
            CREATE INDEX idempotency_by_age ON idempotency (at);
            """
        ),
        (
            // When each version was committed (ms since the Unix epoch) and who wrote it, on
            // the record and in the log; and the versions kept per key once the global log has
            // pruned them (`--keep-versions`), one b-tree by (key, version) so a key's history
            // is a range read. (Columns named at_ms and author: BY is an SQL keyword.)
            "commit time, author and kept versions",
            """
            ALTER TABLE records ADD COLUMN at_ms INTEGER;
            ALTER TABLE records ADD COLUMN author TEXT;
            ALTER TABLE changes ADD COLUMN at_ms INTEGER;
            ALTER TABLE changes ADD COLUMN author TEXT;
            CREATE TABLE kept_versions (
                key TEXT NOT NULL,
                version INTEGER NOT NULL CHECK (version >= 1),
                seq INTEGER NOT NULL CHECK (seq >= 1),
                at_ms INTEGER,
                author TEXT,
                data TEXT,
                PRIMARY KEY (key, version)
            );
            """
        ),
        (
            // The log keyed by one integer, `ChangeLog.id(seq:place:)`: the (seq, key) primary key
            // was a second b-tree that every logged change was inserted into and every pruned
            // one deleted from. Ids follow (seq, key) order, so a seq range is an id range,
            // pruned by deleting the front of the one table. The small columns come first, so
            // reading them never walks a large change's overflow pages.
            "the change log keyed by an integer id in (seq, key) order",
            """
            CREATE TABLE changes_v3 (
                id INTEGER PRIMARY KEY,
                seq INTEGER NOT NULL CHECK (seq >= 1),
                key TEXT NOT NULL,
                version INTEGER NOT NULL CHECK (version >= 1),
                previous_seq INTEGER,
                at_ms INTEGER,
                author TEXT,
                data TEXT
            );
            INSERT INTO changes_v3 (id, seq, key, version, previous_seq, at_ms, author, data)
            SELECT seq * 1024 + ROW_NUMBER() OVER (PARTITION BY seq ORDER BY key) - 1,
                seq, key, version, previous_seq, at_ms, author, data
            FROM changes ORDER BY seq, key;
            DROP TABLE changes;
            ALTER TABLE changes_v3 RENAME TO changes;
            """
        ),
    ]

    /// Brings the database up to the newest schema; creates the store state (with a new epoch) once.
    static func migrate(_ connection: SQLiteConnection) throws {
        let current = try connection.withStatement("PRAGMA user_version") { statement in
            _ = try statement.step()
            return Int(statement.int64(0))
        }
        guard current <= migrations.count else {
            throw SQLiteStoreError(
                "the database has schema version \(current), newer than this server knows (\(migrations.count)); use a newer verso-server"
            )
        }
        for (index, migration) in migrations.enumerated() where index >= current {
            try connection.execute("BEGIN IMMEDIATE")
            do {
                try connection.execute(migration.sql)
                if index == 0 {
                    let epoch = UUID().uuidString.lowercased()
                    try connection.execute(
                        "INSERT INTO store_state (id, epoch, last_seq, pruned_through) VALUES (1, '\(epoch)', 0, 0)"
                    )
                }
                try connection.execute("PRAGMA user_version = \(index + 1)")
                try connection.execute("COMMIT")
            } catch {
                try? connection.execute("ROLLBACK")
                throw SQLiteStoreError("migration \(index + 1) (\(migration.name)) failed: \(error)")
            }
        }
    }
}
