import CSQLite
import Foundation
import VersoCore
import VersoEngine

/// The single writer of a SQLite store: decides and applies batches of commands.
///
/// Used only on the store's writer queue (see `SQLiteConnection` for why that is safe).
final class SQLiteWriter: @unchecked Sendable {
    private let connection: SQLiteConnection
    private let statements: Statements
    private let historyLimit: Int64
    /// Versions of each key kept once the log prunes them (0: none beyond the log).
    private let keepVersions: Int64
    /// The commit time of the transaction in progress, in ms since the Unix epoch.
    private var commitTime: Int64 = 0
    private var lastSeq: Int64
    private var prunedThrough: Int64
    /// Large records as the last transactions left them.
    private var cache = RecordCache()
    /// Each key's version as the last transactions left it.
    private var versions = KnownVersions()
    /// Work done by the transaction in progress, as `CommitBudget` counts it.
    private var work = 0
    /// When idempotency keys are pruned.
    private var claims: IdempotencyClaims
    /// The paths each version changed from the one before, as merges found them.
    private var changedPaths = ChangedPaths()
    /// The list a command's decisions are gathered in, kept empty between commands so that
    /// deciding one allocates none.
    private var decisionList: [Decision] = []
    /// Changes the transaction in progress has logged but not yet inserted (`flushLog`), and
    /// their keys, data and authors back to back.
    private var pendingLog: [PendingChange] = []
    private var pendingLogBytes: [UInt8] = []
    /// The text parameters of a log insert, kept between inserts.
    private var pendingLogTexts: [(index: Int32, range: Range<Int>?)] = []
    /// Inserts of 1 to `maxChangesPerInsert` changes into the log, prepared when first used.
    private var logInserts: [Int: SQLiteStatement] = [:]
    let info: StoreInfo

    /// Work counted for any command besides the record data it touches.
    static let commandWork = 128

    /// The statements every commit runs, prepared once: no SQL parsed or looked up per write.
    private struct Statements {
        let begin: SQLiteStatement
        let commit: SQLiteStatement
        let version: SQLiteStatement
        let stored: SQLiteStatement
        let insertRecord: SQLiteStatement
        let updateRecord: SQLiteStatement
        let saveState: SQLiteStatement
        let prune: SQLiteStatement
        let prunedChanges: SQLiteStatement
        let keepChange: SQLiteStatement
        let trimKept: SQLiteStatement
        let history: SQLiteStatement
        let findClaim: SQLiteStatement
        let saveClaim: SQLiteStatement
        let pruneClaims: SQLiteStatement

        init(_ connection: SQLiteConnection) throws(SQLiteError) {
            begin = try connection.prepare("BEGIN IMMEDIATE")
            commit = try connection.prepare("COMMIT")
            version = try connection.prepare(SQLiteQueries.versionSQL)
            stored = try connection.prepare(SQLiteQueries.writerStoredSQL)
            insertRecord = try connection.prepare(
                """
                INSERT INTO records (key, version, data, seq, at_ms, author) VALUES (?4, ?1, ?2, ?3, ?6, ?7)
                ON CONFLICT (key) DO NOTHING
                """
            )
            updateRecord = try connection.prepare(
                """
                UPDATE records SET version = ?1, data = ?2, seq = ?3, at_ms = ?6, author = ?7
                WHERE key = ?4 AND version = ?5
                """
            )
            saveState = try connection.prepare("UPDATE store_state SET last_seq = ?1, pruned_through = ?2 WHERE id = 1")
            prune = try connection.prepare("DELETE FROM changes WHERE \(ChangeLog.seqAtMost(1))")
            // The changes a prune drops, read in one pass; those to keep are copied by id.
            prunedChanges = try connection.prepare(
                "SELECT id, key, version FROM changes WHERE \(ChangeLog.seqAtMost(1))"
            )
            keepChange = try connection.prepare(
                """
                INSERT OR REPLACE INTO kept_versions (key, version, seq, at_ms, author, data)
                SELECT key, version, seq, at_ms, author, data FROM changes WHERE id = ?1
                """
            )
            trimKept = try connection.prepare("DELETE FROM kept_versions WHERE key = ?1 AND version <= ?2")
            history = try connection.prepare(SQLiteQueries.changeSQL)
            findClaim = try connection.prepare(
                "SELECT fingerprint, outcome FROM idempotency WHERE scope = ?1 AND key = ?2"
            )
            saveClaim = try connection.prepare(
                "INSERT INTO idempotency (scope, key, fingerprint, at, outcome) VALUES (?1, ?2, ?3, ?4, ?5)"
            )
            pruneClaims = try connection.prepare("DELETE FROM idempotency WHERE at < ?1")
        }
    }

    init(
        connection: SQLiteConnection,
        historyLimit: Int64,
        keepVersions: Int64 = 0,
        idempotencyRetention: Duration = .seconds(86_400)
    ) throws {
        self.connection = connection
        self.statements = try Statements(connection)
        self.historyLimit = historyLimit
        self.keepVersions = keepVersions
        self.claims = IdempotencyClaims(retention: idempotencyRetention)
        (lastSeq, prunedThrough) = try SQLiteQueries.lastSeq(connection)
        info = StoreInfo(epoch: try SQLiteQueries.epoch(connection), lastSeq: lastSeq)
    }

    /// A change to insert into the log; its key, data and author lie in `pendingLogBytes`.
    private struct PendingChange {
        var id: Int64
        var seq: Int64
        var version: Int64
        var previousSeq: Int64?
        var at: Int64
        var key: Range<Int>
        var data: Range<Int>?
        var author: Range<Int>?
    }

    /// Most changes one statement inserts into the log.
    static let maxChangesPerInsert = 32

    /// Applies `commands` in one transaction, or the prefix of them `budget` allows; on any
    /// error rolls everything back and rethrows.
    func commit(_ commands: [WriteCommand], budget: CommitBudget = .unlimited) throws -> BudgetedCommit {
        let savedSeq = lastSeq
        let savedPruned = prunedThrough
        try rollBackLeftoverTransaction()
        try statements.begin.use { try $0.run() }
        do {
            var outcomes: [CommandOutcome] = []
            var costs: [Int] = []
            outcomes.reserveCapacity(commands.count)
            costs.reserveCapacity(commands.count)
            work = 0
            commitTime = Int64((Date().timeIntervalSince1970 * 1000).rounded(.down))
            for command in commands {
                if outcomes.count >= budget.guaranteed, work >= budget.workLimit { break }
                let before = work
                work += Self.commandWork
                outcomes.append(try apply(command))
                costs.append(work - before)
            }
            try pruneClaimsIfDue()
            try flushLog()
            if lastSeq != savedSeq {
                try pruneIfNeeded()
                try statements.saveState.use { statement in
                    try statement.bind(1, lastSeq)
                    try statement.bind(2, prunedThrough)
                    try statement.run()
                }
            }
            let syncStarted = ContinuousClock.now
            try commitOrStop()
            return BudgetedCommit(outcomes: outcomes, work: costs, syncDuration: ContinuousClock.now - syncStarted)
        } catch {
            // A failed statement or COMMIT (SQLITE_FULL, a locked database) fails the whole
            // batch: nothing of it is acknowledged (an I/O error on COMMIT stops the process
            // above). SQLite may already have rolled the
            // transaction back; if the ROLLBACK fails too, the next batch tries again first.
            if !connection.isAutocommit { try? connection.execute("ROLLBACK") }
            lastSeq = savedSeq
            prunedThrough = savedPruned
            clearPendingLog()
            // The cache and the versions may hold states this transaction wrote, which never happened.
            cache.removeAll()
            changedPaths.removeAll()
            versions.removeAll()
            throw error
        }
    }

    /// Ends the transaction with COMMIT.
    ///
    /// An I/O error during COMMIT (a failing fsync, say) leaves it unknown whether the WAL holds
    /// the transaction: it may come back when the database is next opened. Answering `internal`
    /// ("nothing was applied") could then be a lie, and going on could overwrite or resurrect it.
    /// Like PostgreSQL after a failed fsync, the process stops: the batch's clients get no reply,
    /// and the restart's recovery decides what is committed. Other errors (a full disk, a locked
    /// database) leave the transaction uncommitted and are thrown.
    private func commitOrStop() throws {
        do {
            try statements.commit.use { try $0.run() }
        } catch let error as SQLiteError {
            if error.code & 0xFF == SQLITE_IOERR {
                fatalError(
                    "SQLite COMMIT failed with an I/O error (\(error)); stopping so that recovery decides what is committed"
                )
            }
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
            throw SQLiteStoreError(
                "the transaction of an earlier failed commit could not be rolled back (\(error)); nothing was applied"
            )
        }
    }

    /// Applies `command`, or answers it from its idempotency key's stored outcome; an applied
    /// command with a key stores the key with its outcome in the same transaction.
    private func apply(_ command: WriteCommand) throws -> CommandOutcome {
        guard let claim = command.idempotency else { return try decideAndApply(command) }
        let fingerprint = StoredOutcome.hex(claim.fingerprint.prefix(16))
        let stored = try statements.findClaim.use { statement in
            try statement.bind(1, claim.scope)
            try statement.bind(2, claim.key)
            return try statement.step() ? (fingerprint: statement.text(0), outcome: statement.text(1)) : nil
        }
        if let stored {
            guard stored.fingerprint == fingerprint else { return .keyReused }
            return .replayed(try StoredOutcome.decode(stored.outcome))
        }
        let outcome = try decideAndApply(command)
        guard let encoded = try StoredOutcome.encode(outcome) else { return outcome }
        try statements.saveClaim.use { statement in
            try statement.bind(1, claim.scope)
            try statement.bind(2, claim.key)
            try statement.bind(3, fingerprint)
            try statement.bind(4, claims.now())
            try statement.bind(5, encoded)
            try statement.run()
        }
        return outcome
    }

    /// Deletes idempotency keys past their retention, at most once a minute.
    private func pruneClaimsIfDue() throws {
        guard let cutoff = claims.cutoffIfDue() else { return }
        try statements.pruneClaims.use { statement in
            try statement.bind(1, cutoff)
            try statement.run()
        }
    }

    /// Decides and applies `command`: a batch op by op, each as its own write.
    private func decideAndApply(_ command: WriteCommand) throws -> CommandOutcome {
        guard command.shape == .batch else { return try decideAndApply(command.operations, by: command.author) }
        var outcomes: [CommandOutcome] = []
        outcomes.reserveCapacity(command.operations.count)
        for operation in command.operations {
            outcomes.append(try decideAndApply([operation], by: command.author))
        }
        return .batch(outcomes)
    }

    /// Decides `operations` all or nothing and applies them when every one holds, as `author`'s.
    private func decideAndApply(_ operations: [WriteOperation], by author: String?) throws -> CommandOutcome {
        var decisions: [Decision] = []
        swap(&decisions, &decisionList)
        defer {
            decisions.removeAll(keepingCapacity: true)
            swap(&decisions, &decisionList)
        }
        decisions.reserveCapacity(operations.count)
        for operation in operations {
            if let decided = decidedByVersion(operation) {
                decisions.append(decided)
                continue
            }
            let current = try current(for: operation)
            decisions.append((operation, current, try decide(operation, current: current)))
        }
        let verdict = try VersioningRules.verdict(
            decisions.lazy.map { (operation: $0.operation, decision: $0.decision) }
        ) { index, base in
            try pathsChanged(of: decisions[index].operation.key, since: base, through: decisions[index].current)
        }
        let seq: Int64
        switch verdict {
        case .staleBases(let refusals):
            return .conflict(
                refusals.map { refusal in
                    let entry = decisions[refusal.index]
                    work += entry.current?.encoded?.count ?? 0
                    return ConflictDetail(key: entry.operation.key, refusal: refusal, current: entry.current?.stored)
                }
            )
        case .notFound(let index, let current):
            return .notFound(key: decisions[index].operation.key, current: current)
        case .apply(let changesAny):
            seq = changesAny ? lastSeq + 1 : lastSeq
        }
        var changes: [Change] = []
        var versions: [KeyVersion] = []
        // Each change's place in the log among its seq's (a single write's is 0).
        let places =
            decisions.count == 1
            ? [0] : ChangeLog.places(of: decisions.compactMap { $0.decision.newState == nil ? nil : $0.operation.key })
        var logged = 0
        for entry in decisions {
            guard let next = entry.decision.newState else {
                versions.append(KeyVersion(key: entry.operation.key, version: entry.current?.version ?? 0))
                continue
            }
            let key = entry.operation.key
            let (data, index) = encode(next, for: entry.operation, current: entry.current)
            let id = ChangeLog.id(seq: seq, place: places[logged])
            logged += 1
            try write(key: key, previous: entry.current, next: next.version, data: data, seq: seq, id: id, by: author)
            var written = CurrentRecord(
                version: next.version,
                seq: seq,
                encoded: data,
                object: next.parsedData,
                index: index
            )
            written.at = commitTime
            written.by = author
            cache.store(written, for: key)
            self.versions.set(key, version: next.version, seq: seq, isLive: data != nil)
            work += data?.count ?? 0
            changes.append(
                Change(seq: seq, key: key, version: next.version, data: data, at: commitTime, by: author)
            )
            versions.append(KeyVersion(key: key, version: next.version, merged: entry.decision.isMerged))
        }
        lastSeq = seq
        return .applied(seq: seq, changes: changes, versions: versions)
    }

    /// An operation of a command with the key's current state and what the versioning rules
    /// decided for it.
    private typealias Decision = (operation: WriteOperation, current: CurrentRecord?, decision: VersionDecision)

    /// The decision on `operation` when the key's known version alone makes it: a put, delete or
    /// check that does not conflict. Its current record carries the version only (nothing reads
    /// its data: a put replaces it, a delete drops it). Nil when the database must be read: a
    /// patch merges into the data, a conflict's reply carries it, and unknown keys.
    private func decidedByVersion(_ operation: WriteOperation) -> Decision? {
        if case .patch = operation.action { return nil }
        guard let known = versions[operation.key] else { return nil }
        let decision = VersioningRules.decide(
            operation,
            current: RecordState(version: known.version, data: known.isLive ? [:] : nil)
        )
        if case .conflict = decision { return nil }
        return (operation, CurrentRecord(version: known.version, seq: known.seq, encoded: nil), decision)
    }

    /// Most versions a `"merge": "fields"` write is merged across, and most bytes of their
    /// data: a base further behind is refused with `history_gone` rather than make one write
    /// read that much of the log.
    static let maxMergeVersions: Int64 = 1000
    static let maxMergeBytes = 64 << 20

    /// The decision on `operation` against `current`; a merge write on a stale base reads the
    /// key's versions since its base from the change log.
    private func decide(_ operation: WriteOperation, current: CurrentRecord?) throws -> VersionDecision {
        guard operation.merge == .fields else { return VersioningRules.decide(operation, current: current?.state) }
        guard let current, let encoded = current.encoded, operation.needsHistory(current: current.state),
            case .base(let base) = operation.precondition, current.version - base <= Self.maxMergeVersions
        else {
            // Decided without the log: a write on the current version, or a refusal that
            // needs no history (a future base, a deleted record, a base too far behind).
            return VersioningRules.decide(operation, current: current?.state, history: .gone)
        }
        let history: MergeHistory =
            switch try walkHistory(of: operation.key, from: base, through: current, readingBase: true) {
            case .gone: .gone
            case .recreated: .recreated
            case .known(let baseData?, let changed): .known(base: baseData, changed: changed)
            case .known(nil, _): preconditionFailure("walkHistory reads the base when asked to")
            }
        var state = current.state
        if current.object == nil {
            state.data = try SQLiteQueries.decodeObject(encoded, key: operation.key)
            work += encoded.count
        }
        return VersioningRules.decide(operation, current: state, history: history)
    }

    /// For a plain write's conflict: the paths changed since `base` when the live record is
    /// newer and the change log still holds every version since (within the merge limits), so
    /// an editor can show what moved. Nil otherwise.
    private func pathsChanged(of key: String, since base: Int64, through current: CurrentRecord?) throws -> [FieldPath]?
    {
        guard let current, current.encoded != nil, base >= 1, base < current.version,
            current.version - base <= Self.maxMergeVersions,
            case .known(_, let changed) = try walkHistory(of: key, from: base, through: current, readingBase: false)
        else { return nil }
        return changed
    }

    /// What `walkHistory` found: as `MergeHistory`, with the base's data only when asked for.
    private enum WalkedHistory {
        case gone
        case recreated
        case known(base: JSONObject?, changed: [FieldPath])
    }

    /// What the change log says about `key` from version `first` through `current`: the paths
    /// changed version by version since, and with `readingBase` the data at `first` (a merge
    /// needs it; a conflict's `changed` does not). The writer walks back from the current
    /// version's change by each change's link to the one before (`previous_seq`); a change no
    /// longer in the log, or logged without the link, means the history is gone. Each version's
    /// changed paths are kept (`changedPaths`), so a version is read and parsed, and compared
    /// with the one before it, once for all the merges and conflicts that cross it.
    private func walkHistory(
        of key: String,
        from first: Int64,
        through current: CurrentRecord,
        readingBase: Bool
    ) throws -> WalkedHistory {
        // The log is read below: the changes this transaction has logged go in first.
        try flushLog()
        // Each version from the current one back to `first`: whether it is a tombstone, its
        // data when it is read, and its changed paths when they are known already (looked up
        // once, here: the diffs below may start the store of paths over).
        var rows: [(version: Int64, isTombstone: Bool, data: [UInt8]?, paths: [FieldPath]?)] = []
        var bytes = 0
        var seq: Int64? = current.seq
        var expected = current.version
        var laterKnown = true
        while expected >= first {
            guard let at = seq else { return .gone }
            let version = expected
            let known = version == first ? nil : changedPaths[key, version]
            // The data is read for the base when wanted, and for a version whose changed paths
            // (or the next version's) are not known yet.
            let needed = version == first ? readingBase || !laterKnown : known == nil || !laterKnown
            let row = try SQLiteQueries.change(at, of: key, with: statements.history) { change, data in
                (change, change.isTombstone || !needed ? nil : data())
            }
            guard let (change, data) = row, change.version == version else { return .gone }
            bytes += data?.count ?? 0
            guard bytes <= Self.maxMergeBytes else { return .gone }
            rows.append((version, change.isTombstone, data, known))
            laterKnown = known != nil
            seq = change.previousSeq
            expected -= 1
        }
        work += bytes
        if rows.contains(where: \.isTombstone) { return .recreated }
        rows.reverse()
        var objects: [Int: JSONObject] = [:]
        func object(_ index: Int) throws -> JSONObject {
            if let parsed = objects[index] { return parsed }
            guard let data = rows[index].data else {
                throw SQLiteStoreError("version \(rows[index].version) of \"\(key)\" was not read for a merge")
            }
            let parsed = try SQLiteQueries.decodeObject(data, key: key)
            objects[index] = parsed
            return parsed
        }
        var changed = Set<FieldPath>()
        for index in rows.indices.dropFirst() {
            if let known = rows[index].paths {
                changed.formUnion(known)
            } else {
                let paths = FieldMerge.differences(from: try object(index - 1), to: try object(index))
                changedPaths[key, rows[index].version] = paths
                changed.formUnion(paths)
            }
        }
        return .known(base: readingBase ? try object(0) : nil, changed: changed.sorted())
    }

    /// The key's current state as `VersioningRules.decide` needs it for `operation`: from the
    /// cache when its version is the known one (or the database's), else read from the database.
    ///
    /// Only an accepted patch reads the current data, so only then is it parsed (and the
    /// parsed object kept with a cached record). A put replaces the data, a conflict's reply
    /// carries the stored encoding, and a delete or check needs only the version.
    private func current(for operation: WriteOperation) throws -> CurrentRecord? {
        let key = operation.key
        var record: CurrentRecord
        if let cached = cache.record(key),
            try versions[key]?.version ?? SQLiteQueries.version(of: key, with: statements.version) == cached.version
        {
            record = cached
        } else {
            guard let stored = try SQLiteQueries.storedWithSeq(key, with: statements.stored) else {
                cache.remove(key)
                versions.remove(key)
                return nil
            }
            record = CurrentRecord(version: stored.version, seq: stored.seq, encoded: stored.data)
            record.at = stored.at
            record.by = stored.by
        }
        versions.set(key, version: record.version, seq: record.seq, isLive: record.encoded != nil)
        if case .patch = operation.action, record.object == nil, let encoded = record.encoded {
            let accepted =
                switch operation.precondition {
                case .base(let base): base == record.version
                case .force: true
                }
            if accepted {
                // Parsing is counted on top of the merge below: it is the costlier part.
                record.object = try SQLiteQueries.decodeObject(encoded, key: key)
                work += encoded.count
            }
        }
        // A patch merges into the whole record (the encoding it writes is counted in `apply`).
        if case .patch = operation.action { work += record.encoded?.count ?? 0 }
        cache.store(record, for: key)
        return record
    }

    /// The encoding of an accepted state. A put's data that came encoded as the server encodes
    /// it is taken as it came (a put merged into the record is a parsed object, encoded here).
    /// A patch's result is encoded with its member index, and a patch on a record whose index
    /// is known encodes again only the members it names.
    private func encode(
        _ next: RecordState,
        for operation: WriteOperation,
        current: CurrentRecord?
    ) -> (data: [UInt8]?, index: MemberIndex?) {
        if let encoded = next.encoded { return (encoded.bytes, nil) }
        guard let object = next.data else { return (nil, nil) }
        guard case .patch(let patch) = operation.action else {
            return (JSONValue.object(object).encodedBytes, nil)
        }
        if let encoded = current?.encoded, let index = current?.index,
            let patched = index.patched(encoded, merged: object, touched: patch.keys)
        {
            return (patched.bytes, patched.index)
        }
        let whole = MemberIndex.encode(object)
        return (whole.bytes, whole.index)
    }

    /// Writes the new state with a compare-and-set on the previous version, and logs the change
    /// under `id` (`ChangeLog`; inserted with the transaction's others by `flushLog`), both
    /// stamped with the commit time and `author`.
    private func write(
        key: String,
        previous current: CurrentRecord?,
        next: Int64,
        data: [UInt8]?,
        seq: Int64,
        id: Int64,
        by author: String?
    ) throws {
        let previous = current?.version
        try (previous == nil ? statements.insertRecord : statements.updateRecord).use { statement in
            try statement.bind(1, next)
            try statement.bind(3, seq)
            if let previous { try statement.bind(5, previous) }
            try statement.bind(6, commitTime)
            try statement.bind(7, author)
            try statement.withText(2, data) {
                try statement.withText(4, key) { try statement.run() }
            }
        }
        guard connection.changes == 1 else {
            throw SQLiteStoreError(
                "compare-and-set on \"\(key)\" at version \(previous ?? 0) matched no row: another writer changed the database"
            )
        }
        func append(_ bytes: some Sequence<UInt8>) -> Range<Int> {
            let start = pendingLogBytes.count
            pendingLogBytes.append(contentsOf: bytes)
            return start..<pendingLogBytes.count
        }
        pendingLog.append(
            PendingChange(
                id: id,
                seq: seq,
                version: next,
                // The link a merge walks back by; NULL for the key's first change.
                previousSeq: current?.seq,
                at: commitTime,
                key: append(key.utf8),
                data: data.map { append($0) },
                author: author.map { append($0.utf8) }
            )
        )
        if pendingLog.count == Self.maxChangesPerInsert { try flushLog() }
    }

    /// Inserts the changes logged so far into the log, up to `maxChangesPerInsert` in one
    /// statement: each statement run opens its cursor and builds its rows in memory SQLite
    /// allocates, so one run for many changes allocates once for all of them. Runs before
    /// anything reads the log in the transaction, and before it commits.
    private func flushLog() throws {
        guard !pendingLog.isEmpty else { return }
        let insert = try logInsert(of: pendingLog.count)
        pendingLogTexts.removeAll(keepingCapacity: true)
        try insert.use { statement in
            for (row, change) in pendingLog.enumerated() {
                let first = Int32(row * 8)
                try statement.bind(first + 1, change.id)
                try statement.bind(first + 2, change.seq)
                try statement.bind(first + 4, change.version)
                try statement.bind(first + 6, change.previousSeq)
                try statement.bind(first + 7, change.at)
                pendingLogTexts.append((first + 3, change.key))
                pendingLogTexts.append((first + 5, change.data))
                pendingLogTexts.append((first + 8, change.author))
            }
            try statement.withTexts(pendingLogTexts, of: pendingLogBytes) { try statement.run() }
        }
        clearPendingLog()
    }

    /// Empties the pending log, keeping the room of its buffer unless a large record made it large.
    private func clearPendingLog() {
        pendingLog.removeAll(keepingCapacity: true)
        pendingLogBytes.removeAll(keepingCapacity: pendingLogBytes.capacity <= 1 << 20)
    }

    /// The statement inserting `count` changes into the log, each as parameters 8 × row + 1…8.
    private func logInsert(of count: Int) throws -> SQLiteStatement {
        if let prepared = logInserts[count] { return prepared }
        let rows = (0..<count).map { row in
            "(" + (1...8).map { "?\(row * 8 + $0)" }.joined(separator: ", ") + ")"
        }
        let statement = try connection.prepare(
            "INSERT INTO changes (id, seq, key, version, data, previous_seq, at_ms, author) VALUES "
                + rows.joined(separator: ", ")
        )
        logInserts[count] = statement
        return statement
    }

    /// Most seqs one commit prunes: deleting a log entry costs about what writing it did, so a
    /// commit that pruned 1/16 of the default history (6,250 seqs) took tens of milliseconds,
    /// and every write in its batch waited for it (BENCHMARKS.md, the third hot-path round).
    static let maxPrunedSeqsPerCommit: Int64 = 1024

    /// Drops log entries older than the history limit once 1/16 of it is due, at most
    /// `maxPrunedSeqsPerCommit` seqs per commit; with `keepVersions`, those among the last
    /// `keepVersions` versions of their key move to kept_versions first, and each key they touch
    /// keeps only its last `keepVersions` there.
    private func pruneIfNeeded() throws {
        let due = lastSeq - historyLimit
        guard due - prunedThrough >= max(1, historyLimit / 16) else { return }
        let keepFrom = min(due, prunedThrough + Self.maxPrunedSeqsPerCommit)
        if keepVersions > 0 { try keepPrunedVersions(through: keepFrom) }
        try statements.prune.use { statement in
            try statement.bind(1, keepFrom)
            try statement.run()
        }
        prunedThrough = keepFrom
    }

    /// Before the log drops the changes of seqs up to `seq`: those among the last
    /// `keepVersions` versions of their key move to kept_versions, and each key they touch keeps
    /// only its last `keepVersions` there. One pass over the dropped changes; each key's
    /// current version comes from what the writer knows, or from the database once.
    private func keepPrunedVersions(through seq: Int64) throws {
        var current: [BytewiseString: Int64] = [:]
        try statements.prunedChanges.use { scan in
            try scan.bind(1, seq)
            while try scan.step() {
                let key = scan.text(1)
                let version: Int64
                if let known = current[BytewiseString(key)] {
                    version = known
                } else if let known = try versions[key]?.version
                    ?? SQLiteQueries.version(of: key, with: statements.version)
                {
                    version = known
                    current[BytewiseString(key)] = known
                } else {
                    continue
                }
                guard scan.int64(2) > version - keepVersions else { continue }
                try statements.keepChange.use { keep in
                    try keep.bind(1, scan.int64(0))
                    try keep.run()
                }
            }
        }
        for (key, version) in current where version > keepVersions {
            try statements.trimKept.use { statement in
                try statement.bind(1, key.string)
                try statement.bind(2, version - keepVersions)
                try statement.run()
            }
        }
    }
}
