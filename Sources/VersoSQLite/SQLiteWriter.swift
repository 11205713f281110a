import VersoCore
import VersoEngine

/// The single writer of a SQLite store: decides and applies batches of commands.
///
/// Used only on the store's writer queue (see `SQLiteConnection` for why that is safe).
final class SQLiteWriter: @unchecked Sendable {
    private let connection: SQLiteConnection
    private let historyLimit: Int64
    private var lastSeq: Int64
    private var prunedThrough: Int64
    let info: StoreInfo

    init(connection: SQLiteConnection, historyLimit: Int64) throws {
        self.connection = connection
        self.historyLimit = historyLimit
        (lastSeq, prunedThrough) = try SQLiteQueries.lastSeq(connection)
        info = StoreInfo(epoch: try SQLiteQueries.epoch(connection), lastSeq: lastSeq)
    }

    /// Applies `commands` in one transaction; on any error rolls everything back and rethrows.
    func commit(_ commands: [WriteCommand]) throws -> [CommandOutcome] {
        let savedSeq = lastSeq
        let savedPruned = prunedThrough
        try rollBackLeftoverTransaction()
        try connection.execute("BEGIN IMMEDIATE")
        do {
            var outcomes: [CommandOutcome] = []
            outcomes.reserveCapacity(commands.count)
            for command in commands {
                outcomes.append(try apply(command))
            }
            if lastSeq != savedSeq {
                try pruneIfNeeded()
                try connection.withStatement("UPDATE store_state SET last_seq = ?1, pruned_through = ?2 WHERE id = 1") { statement in
                    try statement.bind(1, lastSeq)
                    try statement.bind(2, prunedThrough)
                    try statement.run()
                }
            }
            try connection.execute("COMMIT")
            return outcomes
        } catch {
            // A failed COMMIT (SQLITE_FULL, or SQLITE_IOERR from a failing fsync) is fatal for
            // the whole batch: nothing of it is acknowledged. SQLite may already have rolled the
            // transaction back; if the ROLLBACK fails too, the next batch tries again first.
            if !connection.isAutocommit { try? connection.execute("ROLLBACK") }
            lastSeq = savedSeq
            prunedThrough = savedPruned
            throw error
        }
    }

    /// Rolls back a transaction an earlier failed batch could not end (its ROLLBACK failed
    /// too, say on a full disk), so one failure does not fail every batch after it.
    private func rollBackLeftoverTransaction() throws {
        guard !connection.isAutocommit else { return }
        do {
            try connection.execute("ROLLBACK")
        } catch {
            throw SQLiteStoreError("the transaction of an earlier failed commit could not be rolled back (\(error)); nothing was applied")
        }
    }

    private func apply(_ command: WriteCommand) throws -> CommandOutcome {
        var decisions: [(operation: WriteOperation, current: RecordState?, decision: VersionDecision)] = []
        decisions.reserveCapacity(command.operations.count)
        for operation in command.operations {
            let current = try currentState(for: operation)
            decisions.append((operation, current, VersioningRules.decide(operation, current: current)))
        }
        var conflicts: [ConflictDetail] = []
        for entry in decisions {
            if case .conflict(let current) = entry.decision, case .base(let base) = entry.operation.precondition {
                conflicts.append(ConflictDetail(key: entry.operation.key, base: base, current: current))
            }
        }
        if !conflicts.isEmpty { return .conflict(conflicts) }
        for entry in decisions {
            if case .notFound(let current) = entry.decision {
                return .notFound(key: entry.operation.key, current: current)
            }
        }
        let accepted = decisions.contains { if case .accept = $0.decision { true } else { false } }
        let seq = accepted ? lastSeq + 1 : lastSeq
        var changes: [Change] = []
        var versions: [KeyVersion] = []
        for entry in decisions {
            switch entry.decision {
            case .accept(let next):
                let data = next.data.map { JSONValue.object($0).encodedBytes }
                try write(key: entry.operation.key, previous: entry.current?.version, next: next.version, data: data, seq: seq)
                changes.append(Change(seq: seq, key: entry.operation.key, version: next.version, data: data))
                versions.append(KeyVersion(key: entry.operation.key, version: next.version))
            default:
                versions.append(KeyVersion(key: entry.operation.key, version: entry.current?.version ?? 0))
            }
        }
        lastSeq = seq
        return .applied(seq: seq, changes: changes, versions: versions)
    }

    /// The key's current state as `VersioningRules.decide` needs it for `operation`.
    ///
    /// A put that will be accepted (its base is the current version, or it is forced) replaces
    /// the data without reading it, so the stored JSON is not parsed for it: its state carries
    /// an empty object in place of the data (or nil for a tombstone), which nothing reads.
    /// Every other operation, and a put that will conflict (its reply carries the current
    /// data), gets the stored data parsed.
    private func currentState(for operation: WriteOperation) throws -> RecordState? {
        guard case .put = operation.action else { return try SQLiteQueries.state(of: operation.key, in: connection) }
        guard let stored = try SQLiteQueries.stored(operation.key, in: connection) else { return nil }
        let accepted = switch operation.precondition {
        case .base(let base): base == stored.version
        case .force: true
        }
        if accepted { return RecordState(version: stored.version, data: stored.data == nil ? nil : [:]) }
        return RecordState(version: stored.version, data: try stored.data.map { try SQLiteQueries.decodeObject($0, key: operation.key) })
    }

    /// Writes the new state with a compare-and-set on the previous version, and logs the change.
    private func write(key: String, previous: Int64?, next: Int64, data: [UInt8]?, seq: Int64) throws {
        let sql = previous == nil
            ? "INSERT INTO records (key, version, data, seq) VALUES (?4, ?1, ?2, ?3) ON CONFLICT (key) DO NOTHING"
            : "UPDATE records SET version = ?1, data = ?2, seq = ?3 WHERE key = ?4 AND version = ?5"
        try connection.withStatement(sql) { statement in
            try statement.bind(1, next)
            try statement.bind(2, utf8: data)
            try statement.bind(3, seq)
            try statement.bind(4, key)
            if let previous { try statement.bind(5, previous) }
            try statement.run()
        }
        guard connection.changes == 1 else {
            throw SQLiteStoreError("compare-and-set on \"\(key)\" at version \(previous ?? 0) matched no row: another writer changed the database")
        }
        try connection.withStatement("INSERT INTO changes (seq, key, version, data) VALUES (?1, ?2, ?3, ?4)") { log in
            try log.bind(1, seq)
            try log.bind(2, key)
            try log.bind(3, next)
            try log.bind(4, utf8: data)
            try log.run()
        }
    }

    /// Drops log entries older than the history limit, in steps of 1/16 of it.
    private func pruneIfNeeded() throws {
        let keepFrom = lastSeq - historyLimit
        guard keepFrom - prunedThrough >= max(1, historyLimit / 16) else { return }
        try connection.withStatement("DELETE FROM changes WHERE seq <= ?1") { statement in
            try statement.bind(1, keepFrom)
            try statement.run()
        }
        prunedThrough = keepFrom
    }
}
