import Foundation

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Online backup and restore of a SQLite store (README, "Backup and restore").
public enum StoreBackup {
    /// What a backup or a restore holds.
    public struct Summary: Sendable, Equatable {
        /// The store's epoch: the original's in a backup, a new one after a restore.
        public var epoch: String
        /// The seq of the last change in it: the next write gets the one after.
        public var lastSeq: Int64
        /// Records in it, tombstones included.
        public var records: Int64
        /// The size of the database file.
        public var bytes: Int64
    }

    /// Writes a consistent copy of the store in `dataDirectory` to the new file `output`; a
    /// server may be writing the store meanwhile. `VACUUM INTO` reads one snapshot of the
    /// database (a read transaction, which a WAL database lets run beside the writer), so the
    /// copy holds every change committed before the backup began and none committed after it.
    /// The file is made private to the user (mode 0600). Throws when the store is missing or
    /// `output` exists.
    public static func backup(dataDirectory: String, to output: String) throws -> Summary {
        let source = SQLiteStoreConfiguration(directory: dataDirectory).databasePath
        guard FileManager.default.fileExists(atPath: source) else {
            throw SQLiteStoreError("no store in \(dataDirectory): there is no \(source) to back up")
        }
        guard !FileManager.default.fileExists(atPath: output) else {
            throw SQLiteStoreError("\(output) exists already: give a new file to back up to")
        }
        try copy(source, to: output)
        return try summary(of: output)
    }

    /// Makes the missing or empty folder `dataDirectory` a store holding the backup `backup`,
    /// with a new epoch: a client resuming with the old store's epoch is reset (Protocol.md 5)
    /// rather than replayed seqs that the old store may have given to changes made after the
    /// backup. The restored store's seqs go on from the backup's last one.
    public static func restore(from backup: String, into dataDirectory: String) throws -> Summary {
        guard FileManager.default.fileExists(atPath: backup) else {
            throw SQLiteStoreError("there is no backup at \(backup)")
        }
        let target = SQLiteStoreConfiguration(directory: dataDirectory).databasePath
        if let contents = try? FileManager.default.contentsOfDirectory(atPath: dataDirectory), !contents.isEmpty {
            throw SQLiteStoreError(
                "\(dataDirectory) is not empty: restore into a new folder, then start the server on it"
            )
        }
        _ = try summary(of: backup)
        _ = try DataFolder.prepare(directory: dataDirectory, databasePath: target)
        // DataFolder leaves an empty database file; VACUUM INTO writes only a new or empty file.
        try copy(backup, to: target)
        let connection = try SQLiteConnection(path: target, readOnly: false)
        try SQLiteSchema.migrate(connection)
        let epoch = UUID().uuidString.lowercased()
        try connection.withStatement("UPDATE store_state SET epoch = ?1 WHERE id = 1") { statement in
            try statement.bind(1, epoch)
            try statement.run()
        }
        return try summary(of: target)
    }

    /// Copies the database at `source` into `output` with `VACUUM INTO`, then makes `output`
    /// private and checks it.
    private static func copy(_ source: String, to output: String) throws {
        do {
            let connection = try SQLiteConnection(path: source, readOnly: true)
            try connection.withStatement("VACUUM INTO ?1") { statement in
                try statement.bind(1, output)
                try statement.run()
            }
        } catch {
            try? FileManager.default.removeItem(atPath: output)
            throw SQLiteStoreError("copying \(source) to \(output) failed: \(error)")
        }
        chmod(output, 0o600)
        let check = try SQLiteConnection(path: output, readOnly: true)
        let verdict = try check.withStatement("PRAGMA quick_check") { statement in
            _ = try statement.step()
            return statement.text(0)
        }
        guard verdict == "ok" else { throw SQLiteStoreError("the copy at \(output) is damaged: \(verdict)") }
    }

    /// What the database file at `path` holds; throws when it is not a Verso store.
    private static func summary(of path: String) throws -> Summary {
        do {
            let connection = try SQLiteConnection(path: path, readOnly: true)
            let (lastSeq, _) = try SQLiteQueries.lastSeq(connection)
            let records = try connection.withStatement("SELECT count(*) FROM records") { statement in
                _ = try statement.step()
                return statement.int64(0)
            }
            let bytes = (try? FileManager.default.attributesOfItem(atPath: path)[.size] as? NSNumber)?.int64Value ?? 0
            return Summary(
                epoch: try SQLiteQueries.epoch(connection),
                lastSeq: lastSeq,
                records: records,
                bytes: bytes
            )
        } catch {
            throw SQLiteStoreError("\(path) is not a Verso store: \(error)")
        }
    }
}
