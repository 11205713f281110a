import VersoCore
import VersoEngine

/// Reads shared by the writer and the readers.
enum SQLiteQueries {
    static func lastSeq(_ connection: SQLiteConnection) throws -> (lastSeq: Int64, prunedThrough: Int64) {
        try connection.withStatement("SELECT last_seq, pruned_through FROM store_state WHERE id = 1") { statement in
            guard try statement.step() else { throw SQLiteStoreError("the store state row is missing") }
            return (statement.int64(0), statement.int64(1))
        }
    }

    static func epoch(_ connection: SQLiteConnection) throws -> String {
        try connection.withStatement("SELECT epoch FROM store_state WHERE id = 1") { statement in
            guard try statement.step() else { throw SQLiteStoreError("the store state row is missing") }
            return statement.text(0)
        }
    }

    static let versionSQL = "SELECT version FROM records WHERE key = ?1"
    static let storedSQL = "SELECT version, data FROM records WHERE key = ?1"

    /// The key's version, or nil if it never existed (the data is not read), with `statement`
    /// prepared from `versionSQL`.
    static func version(of key: String, with statement: SQLiteStatement) throws -> Int64? {
        try statement.use { statement in
            try statement.withText(1, key) {
                guard try statement.step() else { return nil }
                return statement.int64(0)
            }
        }
    }

    /// The key's version and encoded data (nil for a tombstone), or nil if it never existed,
    /// with `statement` prepared from `storedSQL`.
    static func stored(_ key: String, with statement: SQLiteStatement) throws -> StoredRecord? {
        try statement.use { statement in
            try statement.withText(1, key) {
                guard try statement.step() else { return nil }
                return StoredRecord(version: statement.int64(0), data: statement.bytes(1))
            }
        }
    }

    static let historySQL = """
        SELECT version, data FROM changes WHERE key = ?1 AND version >= ?2 AND version <= ?3 ORDER BY version
        """

    /// Visits the key's versions from `first` through `last` that the change log still holds,
    /// in order, with `statement` prepared from `historySQL`: `visit` gets each version,
    /// whether it is a tombstone, and a function that reads its data, and returns whether to
    /// go on. Returns false when `visit` stopped it.
    static func history(
        of key: String,
        from first: Int64,
        through last: Int64,
        with statement: SQLiteStatement,
        visit: (Int64, Bool, () -> [UInt8]?) throws -> Bool
    ) throws -> Bool {
        try statement.use { statement in
            try statement.bind(2, first)
            try statement.bind(3, last)
            return try statement.withText(1, key) {
                while try statement.step() {
                    guard try visit(statement.int64(0), statement.isNull(1), { statement.bytes(1) }) else {
                        return false
                    }
                }
                return true
            }
        }
    }

    /// The key's version and encoded data (nil for a tombstone), or nil if it never existed.
    static func stored(_ key: String, in connection: SQLiteConnection) throws -> StoredRecord? {
        try connection.withStatement(storedSQL) { statement in
            try statement.bind(1, key)
            guard try statement.step() else { return nil }
            return StoredRecord(version: statement.int64(0), data: statement.bytes(1))
        }
    }

    /// The live record at `key` with its stored encoding, or nil.
    static func snapshot(of key: String, in connection: SQLiteConnection) throws -> RecordSnapshot? {
        guard let stored = try stored(key, in: connection), let data = stored.data else { return nil }
        return RecordSnapshot(key: key, version: stored.version, data: data)
    }

    /// Live records with `prefix` after `after`, in byte order of their keys, at most `limit`,
    /// ending with the first whose `encodedSizeBound` takes the total past `maxBytes`.
    static func scan(
        prefix: String,
        after: String?,
        limit: Int,
        maxBytes: Int = .max,
        in connection: SQLiteConnection
    ) throws -> [RecordSnapshot] {
        try connection.withStatement(
            "SELECT key, version, data FROM records WHERE key >= ?1 AND key > ?2 AND data IS NOT NULL ORDER BY key"
        ) { statement in
            try statement.bind(1, prefix)
            try statement.bind(2, after ?? "")
            var records: [RecordSnapshot] = []
            var bytes = 0
            while records.count < limit, bytes <= maxBytes, try statement.step() {
                let key = statement.text(0)
                guard RecordKey.key(key, hasPrefix: prefix) else { break }
                let record = RecordSnapshot(key: key, version: statement.int64(1), data: statement.bytes(2) ?? [])
                bytes += record.encodedSizeBound
                records.append(record)
            }
            return records
        }
    }

    static func decodeObject(_ bytes: [UInt8], key: String) throws -> JSONObject {
        let value = try bytes.withUnsafeBufferPointer { try JSONParser.parse($0) }
        guard case .object(let members) = value else {
            throw SQLiteStoreError("stored data for key \"\(key)\" is not a JSON object")
        }
        return members
    }

    /// Runs `body` inside one read transaction, so every query in it sees the same snapshot.
    static func inReadTransaction<T>(_ connection: SQLiteConnection, _ body: () throws -> T) throws -> T {
        try connection.execute("BEGIN")
        do {
            let result = try body()
            try connection.execute("COMMIT")
            return result
        } catch {
            try? connection.execute("ROLLBACK")
            throw error
        }
    }
}
