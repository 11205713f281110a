import Foundation
import Logging
import NIOCore
import PostgresNIO
import VersoCore
import VersoEngine

/// The one writer of a server over PostgreSQL: commits the engine's batches.
///
/// Each batch is read and decided first, without a lock (`BatchDecision`, seqs relative to the
/// batch's base), then written in one explicit transaction on the writer's own connection by
/// `verso_apply_v2`, whose first statement locks the one row of `verso_meta`: the cluster-wide
/// commit lock, held to `COMMIT`, so batches of every server commit one at a time and seq order
/// is commit order. Under the lock it checks that every key the batch decided on is still at
/// the version read; if another server got there first, nothing is written and the batch is
/// read and decided again (after `optimisticAttempts` misses, with the lock taken before
/// reading). An ack is given only for a transaction whose `COMMIT` succeeded or, when the
/// connection dropped during `COMMIT`, that `pg_xact_status` says committed; a batch that
/// surely did not commit is tried again while the database is unreachable, so writes wait
/// rather than fail.
actor PostgresWriter {
    private let configuration: PostgresStoreConfiguration
    private let logger: Logger
    private var connection: PostgresConnection?
    /// The backend of `connection`, to end it when a transaction's outcome is unknown.
    private var backendPID: Int32 = 0
    private var nextConnectionID = 1
    private(set) var writerID: Int64 = 0
    private var claims: IdempotencyClaims
    /// Called after each commit that changed something (to wake the other servers).
    private let onCommitted: @Sendable () -> Void

    init(configuration: PostgresStoreConfiguration, logger: Logger, onCommitted: @escaping @Sendable () -> Void) {
        self.configuration = configuration
        self.logger = logger
        self.claims = IdempotencyClaims(retention: configuration.idempotencyRetention)
        self.onCommitted = onCommitted
    }

    /// Connects, migrates the schema, takes a writer id and reads the store's epoch and last seq.
    func open() async throws -> StoreInfo {
        let connection = try await connected()
        try await PostgresSchema.migrate(connection, logger: logger)
        for try await id in try await connection.query("SELECT nextval('verso_writer_ids')", logger: logger)
            .decode(Int64.self)
        {
            writerID = id
        }
        for try await (epoch, lastSeq) in try await connection.query(
            "SELECT epoch, last_seq FROM verso_meta WHERE id = 1",
            logger: logger
        ).decode((String, Int64).self) {
            return StoreInfo(epoch: epoch, lastSeq: lastSeq)
        }
        throw PostgresStoreError("the store's verso_meta row is missing")
    }

    func close() async {
        try? await connection?.close()
        connection = nil
    }

    private func connect(name: String) async throws -> PostgresConnection {
        defer { nextConnectionID += 1 }
        return try await PostgresConnection.connect(
            configuration: try configuration.connection(name: name),
            id: nextConnectionID,
            logger: logger
        )
    }

    private func connected() async throws -> PostgresConnection {
        if let connection, !connection.isClosed { return connection }
        let connection = try await connect(name: "verso-writer")
        for try await pid in try await connection.query("SELECT pg_backend_pid()", logger: logger).decode(Int32.self) {
            backendPID = pid
        }
        self.connection = connection
        return connection
    }

    private func dropConnection() async {
        try? await connection?.close()
        connection = nil
    }

    /// Whether `error` is the database server's `ERROR`: the statement failed (a `COMMIT`
    /// that fails so rolled back) and the session is fine. A `FATAL` or `PANIC` ends the
    /// session and counts as a broken connection: it can arrive after a `COMMIT` went through
    /// (a backend ended by `pg_terminate_backend` as it answers), so its outcome is asked.
    private static func isServerError(_ error: any Error) -> Bool {
        guard let error = error as? PSQLError, error.code == .server else { return false }
        return (error.serverInfo?[.severity] ?? error.serverInfo?[.localizedSeverity]) == "ERROR"
    }

    /// Whether a server error is a lost race worth deciding the batch again for.
    private static func isRetryable(_ error: any Error) -> Bool {
        guard let error = error as? PSQLError, let state = error.serverInfo?[.sqlState] else { return false }
        return state == "40001" || state == "40P01"
    }

    private func pause(_ attempt: Int) async {
        try? await Task.sleep(for: .milliseconds(min(1000, 50 << min(attempt, 5))))
    }

    /// Read and decided batches that found their read set changed under the lock before this
    /// one takes the lock before reading instead.
    static let optimisticAttempts = 2

    /// Commits `commands` (the prefix `budget` allows) in one transaction; see the type's comment.
    func commit(_ commands: [WriteCommand], budget: CommitBudget) async throws -> BudgetedCommit {
        var attempt = 0
        var stale = 0
        while true {
            attempt += 1
            do {
                let connection = try await connected()
                let lockFirst = stale >= Self.optimisticAttempts
                switch try await commitOnce(commands, budget: budget, lockFirst: lockFirst, on: connection) {
                case .committed(let result):
                    return result
                case .stale:
                    // Another server changed what this batch read: decide it again at once.
                    stale += 1
                    continue
                case .notCommitted(let reason):
                    logger.warning(
                        "a batch did not commit; deciding it again",
                        metadata: ["verso.reason": "\(reason)", "verso.attempt": "\(attempt)"]
                    )
                }
            } catch  where Self.isServerError(error) {
                guard Self.isRetryable(error), attempt < 10 else { throw error }
            } catch  where !(error is PSQLError) {
                // Not the database's doing (a stored record that does not parse, say): deciding
                // again would fail again. Nothing was committed.
                throw error
            } catch {
                // The database is unreachable or the connection broke before COMMIT was sent:
                // nothing was committed. Writes wait until it is back.
                if attempt == 1 || attempt % 20 == 0 {
                    logger.error(
                        "cannot reach PostgreSQL to commit; retrying (writes wait meanwhile)",
                        metadata: ["verso.error": "\(String(reflecting: error))", "verso.attempt": "\(attempt)"]
                    )
                }
                await dropConnection()
            }
            await pause(attempt)
        }
    }

    private enum Attempt {
        case committed(BudgetedCommit)
        /// The read set changed before the lock was taken: nothing was written.
        case stale
        case notCommitted(String)
    }

    /// What `verso_apply_v2` answered: the seq the batch starts after, the log's pruning point,
    /// the transaction's id, and whether the read set was stale (nothing written then).
    private struct Applied {
        var base: Int64
        var prunedThrough: Int64
        var xid: String
        var stale: Bool
    }

    /// One try: read what the batch needs and decide it, then in one transaction take the commit
    /// lock, check the read set and write (`verso_apply_v2`), and commit. With `lockFirst`, the
    /// lock is taken before reading, so the read set cannot go stale (after repeated misses).
    ///
    /// The write and its `COMMIT` are sent together: the connection sends `COMMIT` as soon as
    /// PostgreSQL has answered the write, from its event loop, so the commit lock is held for
    /// the write and the commit, not also for a hop through this actor (which, with several
    /// servers sharing two busy cores, was most of the time the lock was held).
    private func commitOnce(
        _ commands: [WriteCommand],
        budget: CommitBudget,
        lockFirst: Bool,
        on connection: PostgresConnection
    ) async throws -> Attempt {
        var inTransaction = false
        let decision: BatchDecision
        let result: (outcomes: [CommandOutcome], work: [Int])
        let applying: EventLoopFuture<PostgresQueryResult>
        let committing: EventLoopFuture<PostgresQueryResult>
        do {
            try await connection.query("BEGIN ISOLATION LEVEL READ COMMITTED", logger: logger)
            inTransaction = true
            if lockFirst {
                try await connection.query("SELECT 1 FROM verso_meta WHERE id = 1 FOR UPDATE", logger: logger)
            }
            var decided = BatchDecision(
                reads: try await read(for: commands, on: connection),
                commitTime: Int64((Date().timeIntervalSince1970 * 1000).rounded(.down))
            )
            result = try decided.decide(commands, budget: budget)
            decision = decided
            // In this order on the connection: PostgreSQL runs the COMMIT only after the write.
            applying = connection.query(applyQuery(decision), logger: logger)
            committing = connection.query("COMMIT", logger: logger)
        } catch {
            // After a statement's error (or one of the decision's) the session is fine: roll
            // back. After a broken connection PostgreSQL aborts the transaction by itself.
            if inTransaction, !(error is PSQLError) || Self.isServerError(error) {
                _ = try? await connection.query("ROLLBACK", logger: logger)
            }
            throw error
        }
        let applied: Applied
        do {
            applied = try Self.applied(try await applying.get())
        } catch {
            // Nothing was committed: after a failed write the COMMIT rolls back, and after a
            // broken connection it was never sent (the connection sends one query at a time).
            let ended = try? await committing.get()
            if ended?.metadata.command == "COMMIT" {
                // The write went through and only its answer could not be read (cannot happen
                // while verso_apply_v2 answers as this server expects). Its writes cannot be
                // answered as applied (their seqs are unknown) nor as failed (a retry would
                // apply them twice): stop rather than answer them wrongly.
                let message = "a batch committed but verso_apply_v2's answer could not be read: \(error)"
                logger.critical("\(message); stopping rather than answering its writes wrongly")
                fatalError(message)
            }
            throw error
        }
        let syncStarted = ContinuousClock.now
        do {
            let ended = try await committing.get()
            if applied.stale { return .stale }
            // A COMMIT of a transaction that failed answers ROLLBACK.
            guard ended.metadata.command == "COMMIT" else {
                return .notCommitted("COMMIT answered \(ended.metadata.command)")
            }
        } catch  where Self.isServerError(error) {
            return .notCommitted("COMMIT failed: \(error)")
        } catch {
            // The connection dropped (or the session ended) while COMMIT was under way: find out
            // what became of it.
            await dropConnection()
            guard await committed(applied.xid) else {
                return .notCommitted("the connection dropped during COMMIT")
            }
            if applied.stale { return .stale }
        }
        let sync = ContinuousClock.now - syncStarted
        if decision.lastSeq > 0 { onCommitted() }
        await maintainIfDue(lastSeq: applied.base + decision.lastSeq, prunedThrough: applied.prunedThrough)
        // The seqs were decided relative to the batch's base; stored replays carry the store's.
        let outcomes = result.outcomes.enumerated().map { index, outcome in
            decision.storedReplays.contains(index) ? outcome : outcome.shiftingSeqs(by: applied.base)
        }
        return .committed(BudgetedCommit(outcomes: outcomes, work: result.work, syncDuration: sync))
    }

    /// Whether transaction `xid` committed, asked on a new connection; a backend that still
    /// holds it open is ended first. Asked until PostgreSQL says committed or aborted, while the
    /// batch's writes wait: an outcome not known is never answered as a failure, which a
    /// client's retry would turn into a second write.
    private func committed(_ xid: String) async -> Bool {
        var attempt = 0
        let oldBackend = backendPID
        while true {
            attempt += 1
            do {
                let connection = try await connected()
                var status: String?
                for try await row in try await connection.query(
                    "SELECT pg_xact_status(\(xid)::xid8)",
                    logger: logger
                ).decode(String?.self) {
                    status = row
                }
                switch status {
                case "committed":
                    logger.warning("the connection dropped during COMMIT; the transaction committed")
                    return true
                case "aborted":
                    return false
                case "in progress":
                    try await connection.query("SELECT pg_terminate_backend(\(oldBackend), 5000)", logger: logger)
                default:
                    throw PostgresStoreError(
                        "the outcome of transaction \(xid) is unknown to PostgreSQL (\(status ?? "null"))"
                    )
                }
            } catch {
                if attempt == 1 || attempt % 20 == 0 {
                    logger.error(
                        "cannot learn whether a commit went through; asking again (its writes wait)",
                        metadata: ["verso.error": "\(String(reflecting: error))", "verso.attempt": "\(attempt)"]
                    )
                }
                if !Self.isServerError(error) { await dropConnection() }
            }
            await pause(attempt)
        }
    }

    /// What deciding `commands` needs: the records they name, the history merges and conflicts
    /// may look at, and the idempotency keys they carry, each read in one statement.
    private func read(
        for commands: [WriteCommand],
        on connection: PostgresConnection
    ) async throws
        -> BatchReads
    {
        var keys = Set<String>()
        var claimIDs = Set<ClaimID>()
        for command in commands {
            for operation in command.operations { keys.insert(operation.key) }
            if let claim = command.idempotency { claimIDs.insert(ClaimID(scope: claim.scope, key: claim.key)) }
        }
        var records: [String: KeyState] = [:]
        for try await (key, version, data, seq, at, by) in try await connection.query(
            "SELECT key, version, data, seq, at_ms, author FROM verso_records WHERE key = ANY(\(Array(keys)))",
            logger: logger
        ).decode((String, Int64, String?, Int64, Int64?, String?).self) {
            records[key] = KeyState(version: version, seq: seq, data: data.map { Array($0.utf8) }, at: at, by: by)
        }
        var history: [String: [Int64: [UInt8]?]] = [:]
        let wanted = BatchDecision.historyWanted(commands, records: records)
        if !wanted.isEmpty {
            let historyKeys = Array(wanted.keys)
            let bases = historyKeys.map { wanted[$0]! }
            for try await (key, version, data) in try await connection.query(
                """
                SELECT c.key, c.version, c.data FROM verso_changes c
                JOIN unnest(\(historyKeys)::text[], \(bases)::bigint[]) AS w(k, b) ON c.key = w.k AND c.version >= w.b
                """,
                logger: logger
            ).decode((String, Int64, String?).self) {
                history[key, default: [:]][version] = .some(data.map { Array($0.utf8) })
            }
        }
        var claims: [ClaimID: KnownClaim] = [:]
        if !claimIDs.isEmpty {
            let ids = Array(claimIDs)
            for try await (scope, key, fingerprint, outcome, base) in try await connection.query(
                """
                SELECT i.scope, i.key, i.fingerprint, i.outcome, i.seq_base FROM verso_idempotency i
                JOIN unnest(\(ids.map(\.scope))::text[], \(ids.map(\.key))::text[]) AS c(s, k)
                    ON i.scope = c.s AND i.key = c.k
                """,
                logger: logger
            ).decode((String, String, String, String, Int64).self) {
                claims[ClaimID(scope: scope, key: key)] = KnownClaim(
                    fingerprint: fingerprint,
                    outcome: try StoredOutcome.decode(outcome).shiftingSeqs(by: base),
                    isStored: true
                )
            }
        }
        return BatchReads(records: records, history: history, claims: claims)
    }

    /// The statement that takes the commit lock, checks the read set and writes what `decision`
    /// decided (`verso_apply_v2`).
    private func applyQuery(_ decision: BatchDecision) -> PostgresQuery {
        let changes = decision.changes
        let read = Array(decision.readVersions)
        let readKeys = read.map(\.key)
        let readVersions = read.map(\.value)
        let offsets = changes.map(\.seq)
        let keys = changes.map(\.key)
        let versions = changes.map(\.version)
        let data = changes.map { $0.data.map { String(decoding: $0, as: UTF8.self) } ?? "" }
        let deleted = changes.map { $0.data == nil }
        let authors = changes.map { $0.by ?? "" }
        let anonymous = changes.map { $0.by == nil }
        let claims = decision.claims
        let scopes = claims.map(\.scope)
        let claimKeys = claims.map(\.key)
        let fingerprints = claims.map(\.fingerprint)
        let outcomes = claims.map(\.outcome)
        return """
            SELECT * FROM verso_apply_v2(
                \(writerID), \(decision.commitTime), \(self.claims.now()), \(decision.lastSeq),
                \(readKeys)::text[], \(readVersions)::bigint[],
                \(offsets)::bigint[], \(keys)::text[], \(versions)::bigint[], \(data)::text[], \(deleted)::bool[],
                \(authors)::text[], \(anonymous)::bool[],
                \(scopes)::text[], \(claimKeys)::text[], \(fingerprints)::text[], \(outcomes)::text[]
            )
            """
    }

    /// What `verso_apply_v2` answered.
    private static func applied(_ result: PostgresQueryResult) throws -> Applied {
        for row in result.rows {
            let (base, pruned, xid, stale) = try row.decode((Int64, Int64, String, Bool).self)
            return Applied(base: base, prunedThrough: pruned, xid: xid, stale: stale)
        }
        throw PostgresStoreError("verso_apply_v2 returned no row")
    }

    /// Prunes the log and forgets expired idempotency keys when either is due, in a transaction
    /// of its own after a batch's commit, under the commit lock. A failure is logged and left
    /// for the next time: the batch before it has committed and is answered as such.
    private func maintainIfDue(lastSeq: Int64, prunedThrough: Int64) async {
        let keepFrom = lastSeq - configuration.historyLimit
        let pruneDue = keepFrom - prunedThrough >= max(1, configuration.historyLimit / 16)
        let cutoff = claims.cutoffIfDue()
        guard pruneDue || cutoff != nil else { return }
        var inTransaction = false
        do {
            let connection = try await connected()
            try await connection.query("BEGIN ISOLATION LEVEL READ COMMITTED", logger: logger)
            inTransaction = true
            // The commit lock first, as every batch takes it: no deadlock with them, nor
            // between two servers' maintenance.
            var prunedThrough = prunedThrough
            for try await pruned in try await connection.query(
                "SELECT pruned_through FROM verso_meta WHERE id = 1 FOR UPDATE",
                logger: logger
            ).decode(Int64.self) {
                prunedThrough = pruned
            }
            if pruneDue, keepFrom > prunedThrough { try await prune(through: keepFrom, on: connection) }
            if let cutoff {
                try await connection.query("DELETE FROM verso_idempotency WHERE at < \(cutoff)", logger: logger)
            }
            try await connection.query("COMMIT", logger: logger)
        } catch {
            logger.warning(
                "could not prune the log or the idempotency keys; trying again later",
                metadata: ["verso.error": "\(String(reflecting: error))"]
            )
            if inTransaction, Self.isServerError(error) {
                _ = try? await connection?.query("ROLLBACK", logger: logger)
            } else {
                await dropConnection()
            }
        }
    }

    /// Drops log entries up to `keepFrom`, in steps of 1/16 of the history limit, as the SQLite
    /// store does; the last `keepVersions` versions of each key they touch move to
    /// `verso_kept_versions` first.
    private func prune(through keepFrom: Int64, on connection: PostgresConnection) async throws {
        let keep = configuration.keepVersions
        if keep > 0 {
            try await connection.query(
                """
                INSERT INTO verso_kept_versions (key, version, seq, at_ms, author, data)
                SELECT c.key, c.version, c.seq, c.at_ms, c.author, c.data FROM verso_changes c
                JOIN verso_records r ON r.key = c.key
                WHERE c.seq <= \(keepFrom) AND c.version > r.version - \(keep)
                ON CONFLICT (key, version) DO UPDATE SET seq = EXCLUDED.seq, at_ms = EXCLUDED.at_ms,
                    author = EXCLUDED.author, data = EXCLUDED.data
                """,
                logger: logger
            )
            try await connection.query(
                """
                DELETE FROM verso_kept_versions k USING verso_records r
                WHERE k.key = r.key AND k.version <= r.version - \(keep)
                    AND k.key IN (SELECT DISTINCT key FROM verso_changes WHERE seq <= \(keepFrom))
                """,
                logger: logger
            )
        }
        try await connection.query("DELETE FROM verso_changes WHERE seq <= \(keepFrom)", logger: logger)
        try await connection.query("UPDATE verso_meta SET pruned_through = \(keepFrom) WHERE id = 1", logger: logger)
    }
}
