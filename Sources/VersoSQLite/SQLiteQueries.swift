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

    static let changeSQL = "SELECT version, previous_seq, data FROM changes WHERE \(ChangeLog.seqIs(1)) AND key = ?2"

    /// One change of the log, as a merge walks back through a key's versions.
    struct LoggedChange {
        var version: Int64
        /// The seq of the key's change before this one; nil for its first, or a change logged
        /// before the log kept the link.
        var previousSeq: Int64?
        var isTombstone: Bool
    }

    /// The change `seq` made to `key`, with `statement` prepared from `changeSQL`, or nil when
    /// the log no longer holds it; `read` may read its data (it is not read otherwise).
    static func change<T>(
        _ seq: Int64,
        of key: String,
        with statement: SQLiteStatement,
        read: (LoggedChange, () -> [UInt8]?) throws -> T
    ) throws -> T? {
        try statement.use { statement in
            try statement.bind(1, seq)
            return try statement.withText(2, key) {
                guard try statement.step() else { return nil }
                let change = LoggedChange(
                    version: statement.int64(0),
                    previousSeq: statement.isNull(1) ? nil : statement.int64(1),
                    isTombstone: statement.isNull(2)
                )
                return try read(change, { statement.bytes(2) })
            }
        }
    }

    static let writerStoredSQL = "SELECT version, seq, data, at_ms, author FROM records WHERE key = ?1"

    /// The key's version, the seq that made it, its encoded data (nil for a tombstone), and when
    /// and by whom it was written, or nil if it never existed, with `statement` prepared from
    /// `writerStoredSQL`.
    static func storedWithSeq(
        _ key: String,
        with statement: SQLiteStatement
    ) throws -> (version: Int64, seq: Int64, data: [UInt8]?, at: Int64?, by: String?)? {
        try statement.use { statement in
            try statement.withText(1, key) {
                guard try statement.step() else { return nil }
                return (
                    statement.int64(0), statement.int64(1), statement.bytes(2), statement.optionalInt64(3),
                    statement.optionalText(4)
                )
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

    /// A page of `key`'s versions below `before`, newest first (see `RecordStore.history`).
    ///
    /// The current version comes from the record; older ones from the change log, walking back
    /// by each change's link to the key's change before it, and where the log no longer holds
    /// them (pruned, or logged before the link was kept) from kept_versions, which holds a run
    /// of each key's versions just below the log's. The first version found in neither is
    /// where the page ends: it and every older one are gone. Call inside a read transaction.
    static func history(
        of key: String,
        before: Int64?,
        limit: Int,
        maxBytes: Int,
        in connection: SQLiteConnection
    ) throws -> StoredHistory? {
        let current = try connection.withStatement(
            "SELECT version, seq, at_ms, author, data FROM records WHERE key = ?1"
        ) { statement -> StoredVersion? in
            try statement.bind(1, key)
            guard try statement.step() else { return nil }
            return Self.version(from: statement)
        }
        guard let current else { return nil }
        var page = HistoryPage(limit: limit, maxBytes: maxBytes, wanted: min(current.version, (before ?? .max) - 1))
        if page.wants(current.version) { page.append(current) }
        // Walk the log: `seq` is the seq of `version`'s change.
        var version = current.version
        var seq: Int64? = current.seq
        try connection.withStatement(
            "SELECT version, previous_seq, at_ms, author, data FROM changes WHERE \(ChangeLog.seqIs(1)) AND key = ?2"
        ) { statement in
            while !page.isFull, let at = seq {
                statement.reset()
                try statement.bind(1, at)
                try statement.bind(2, key)
                // A change no longer in the log: older versions may be in kept_versions.
                guard try statement.step(), statement.int64(0) == version else { return }
                if page.wants(version) { page.append(Self.version(from: statement, seq: at)) }
                guard version > 1, !statement.isNull(1) else { return }
                seq = statement.int64(1)
                version -= 1
            }
        }
        if !page.isFull, page.wanted >= 1 {
            try connection.withStatement(
                "SELECT version, seq, at_ms, author, data FROM kept_versions WHERE key = ?1 AND version <= ?2 ORDER BY version DESC"
            ) { statement in
                try statement.bind(1, key)
                try statement.bind(2, page.wanted)
                while !page.isFull, try statement.step(), statement.int64(0) == page.wanted {
                    page.append(Self.version(from: statement))
                }
            }
        }
        return page.result
    }

    /// A `StoredVersion` from a row of (version, seq, at_ms, author, data); with `seq` given, a
    /// row of (version, previous_seq, at_ms, author, data) of the change at `seq`.
    private static func version(from statement: SQLiteStatement, seq: Int64? = nil) -> StoredVersion {
        StoredVersion(
            version: statement.int64(0),
            seq: seq ?? statement.int64(1),
            at: statement.optionalInt64(2),
            by: statement.optionalText(3),
            data: statement.bytes(4)
        )
    }

    static func decodeObject(_ bytes: [UInt8], key: String) throws -> JSONObject {
        try StoredJSON.object(bytes, key: key)
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
