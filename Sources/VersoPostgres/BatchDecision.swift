import VersoCore
import VersoEngine

/// A key's state as the PostgreSQL writer read it, or as an earlier command of the batch left it.
struct KeyState: Sendable {
    var version: Int64
    /// The seq of the change that made this version.
    var seq: Int64
    /// The encoded JSON object, or nil for a tombstone.
    var data: [UInt8]?
    var at: Int64?
    var by: String?

    var isLive: Bool { data != nil }

    /// As a conflict reports it.
    var stored: StoredVersion { StoredVersion(version: version, seq: seq, at: at, by: by, data: data) }
}

/// An idempotency key the batch stores with its outcome.
struct DecidedClaim: Sendable {
    var scope: String
    var key: String
    var fingerprint: String
    var outcome: String
}

/// An idempotency key's outcome as the batch knows it: stored earlier (its seqs are the
/// store's), or kept by a command of this batch (its seqs relative to the batch's base).
struct KnownClaim: Sendable {
    var fingerprint: String
    var outcome: CommandOutcome
    var isStored: Bool
}

/// What the database held for a batch when the writer read it.
struct BatchReads: Sendable {
    /// The current state of each key the batch names that exists.
    var records: [String: KeyState]
    /// Versions of keys from the change log (version → data, nil for a tombstone), for merges
    /// and for a conflict's `changed`.
    var history: [String: [Int64: [UInt8]?]]
    /// Stored idempotency keys the batch's commands carry, their outcomes' seqs the store's.
    var claims: [ClaimID: KnownClaim]
}

struct ClaimID: Hashable, Sendable {
    var scope: String
    var key: String
}

/// Decides a batch of commands in order against what the writer read, each against the state
/// the ones before it left (the rules of `RecordStore.commit`): pure, no I/O.
///
/// Seqs are decided relative to the batch's base (the first accepted command takes seq 1):
/// the store's last seq is known only under the commit lock, when the writer writes the batch
/// (`verso_apply_v2`, which also checks that every key the batch named is still at the version
/// read) and moves the outcomes' seqs by it.
struct BatchDecision {
    /// Most versions a merge or a conflict's `changed` looks back across (as the SQLite store).
    static let maxMergeVersions: Int64 = 1000
    /// Work counted for any command besides the record data it touches (as the SQLite store).
    static let commandWork = 128

    private(set) var reads: BatchReads
    let commitTime: Int64
    /// Seqs the batch takes (its last seq, relative to its base).
    private(set) var lastSeq: Int64 = 0
    /// Its changes, their seqs relative to the base.
    private(set) var changes: [Change] = []
    /// Idempotency keys it keeps, their outcomes' seqs relative to the base.
    private(set) var claims: [DecidedClaim] = []
    /// The version each key the batch's decisions looked at had when read (0: absent): the
    /// read set the write checks.
    private(set) var readVersions: [String: Int64] = [:]
    /// The commands answered from a stored idempotency outcome, whose seqs are the store's.
    private(set) var storedReplays: Set<Int> = []
    private var work = 0

    init(reads: BatchReads, commitTime: Int64) {
        self.reads = reads
        self.commitTime = commitTime
        for (key, record) in reads.records {
            self.reads.history[key, default: [:]][record.version] = .some(record.data)
        }
    }

    /// The keys a batch's decisions may read history for, with the oldest version wanted:
    /// every key a write names on a stale base still within the merge limit.
    static func historyWanted(_ commands: [WriteCommand], records: [String: KeyState]) -> [String: Int64] {
        var wanted: [String: Int64] = [:]
        for command in commands {
            for operation in command.operations {
                guard case .base(let base) = operation.precondition, base >= 1,
                    let current = records[operation.key], base < current.version,
                    current.version - base <= maxMergeVersions
                else { continue }
                wanted[operation.key] = min(wanted[operation.key] ?? base, base)
            }
        }
        return wanted
    }

    /// Decides `commands` in order, stopping once `budget` is spent; returns the outcomes (their
    /// seqs relative to the base) and the work of each.
    mutating func decide(
        _ commands: [WriteCommand],
        budget: CommitBudget
    ) throws -> (outcomes: [CommandOutcome], work: [Int]) {
        var outcomes: [CommandOutcome] = []
        var costs: [Int] = []
        for command in commands {
            if outcomes.count >= budget.guaranteed, work >= budget.workLimit { break }
            let before = work
            work += Self.commandWork
            outcomes.append(try apply(command, index: outcomes.count))
            costs.append(work - before)
        }
        return (outcomes, costs)
    }

    private mutating func apply(_ command: WriteCommand, index: Int) throws -> CommandOutcome {
        guard let claim = command.idempotency else { return try decideAndApply(command) }
        let id = ClaimID(scope: claim.scope, key: claim.key)
        let fingerprint = StoredOutcome.hex(claim.fingerprint.prefix(16))
        if let known = reads.claims[id] {
            guard known.fingerprint == fingerprint else { return .keyReused }
            if known.isStored { storedReplays.insert(index) }
            return .replayed(known.outcome)
        }
        let outcome = try decideAndApply(command)
        guard let encoded = try StoredOutcome.encode(outcome) else { return outcome }
        reads.claims[id] = KnownClaim(fingerprint: fingerprint, outcome: outcome, isStored: false)
        claims.append(DecidedClaim(scope: claim.scope, key: claim.key, fingerprint: fingerprint, outcome: encoded))
        return outcome
    }

    private mutating func decideAndApply(_ command: WriteCommand) throws -> CommandOutcome {
        guard command.shape == .batch else { return try decideAndApply(command.operations, by: command.author) }
        return .batch(try command.operations.map { try decideAndApply([$0], by: command.author) })
    }

    /// The state `VersioningRules` takes: the parsed data when the operation reads it (a patch,
    /// a merge), else an empty object in its place (only the version and liveness matter).
    private func state(of record: KeyState?, for operation: WriteOperation) throws -> RecordState? {
        guard let record else { return nil }
        guard let data = record.data else { return RecordState(version: record.version, data: nil) }
        let reads: Bool =
            switch operation.action {
            case .patch: true
            default: operation.merge == .fields
            }
        return RecordState(version: record.version, data: reads ? try StoredJSON.object(data, key: operation.key) : [:])
    }

    /// The key's versions from `base` through `current` as `RecordState`s, as far as known.
    private func historyStates(of key: String, from base: Int64, through current: Int64) throws -> [RecordState] {
        guard let known = reads.history[key] else { return [] }
        var states: [RecordState] = []
        for version in base...current {
            guard let data = known[version] else { continue }
            states.append(RecordState(version: version, data: try data.map { try StoredJSON.object($0, key: key) }))
        }
        return states
    }

    /// For a plain write's conflict: the paths changed since `base`, when every version since
    /// is known and none is a tombstone.
    private func pathsChanged(of key: String, since base: Int64, through current: KeyState?) throws -> [FieldPath]? {
        guard let current, current.isLive, base >= 1, base < current.version,
            current.version - base <= Self.maxMergeVersions
        else { return nil }
        let states = try historyStates(of: key, from: base, through: current.version)
        guard states.count == Int(current.version - base + 1) else { return nil }
        let objects = states.compactMap(\.data)
        guard objects.count == states.count else { return nil }
        return FieldMerge.changed(across: objects)
    }

    private mutating func decideAndApply(_ operations: [WriteOperation], by author: String?) throws -> CommandOutcome {
        var decisions: [(operation: WriteOperation, current: KeyState?, decision: VersionDecision)] = []
        for operation in operations {
            let current = reads.records[operation.key]
            if readVersions[operation.key] == nil { readVersions[operation.key] = current?.version ?? 0 }
            let state = try state(of: current, for: operation)
            let decision: VersionDecision
            if operation.needsHistory(current: state), case .base(let base) = operation.precondition, let state {
                let history =
                    state.version - base <= Self.maxMergeVersions
                    ? try historyStates(of: operation.key, from: base, through: state.version) : []
                decision = VersioningRules.decide(operation, current: state, history: history)
            } else if operation.merge == .fields {
                decision = VersioningRules.decide(operation, current: state, history: .gone)
            } else {
                decision = VersioningRules.decide(operation, current: state)
            }
            decisions.append((operation, current, decision))
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
                    work += entry.current?.data?.count ?? 0
                    return ConflictDetail(key: entry.operation.key, refusal: refusal, current: entry.current?.stored)
                }
            )
        case .notFound(let index, let current):
            return .notFound(key: decisions[index].operation.key, current: current)
        case .apply(let changesAny):
            seq = changesAny ? lastSeq + 1 : lastSeq
        }
        var applied: [Change] = []
        var versions: [KeyVersion] = []
        for entry in decisions {
            guard let next = entry.decision.newState else {
                versions.append(KeyVersion(key: entry.operation.key, version: entry.current?.version ?? 0))
                continue
            }
            let key = entry.operation.key
            let data = next.encoded?.bytes ?? next.data.map { JSONValue.object($0).encodedBytes }
            reads.records[key] = KeyState(version: next.version, seq: seq, data: data, at: commitTime, by: author)
            reads.history[key, default: [:]][next.version] = .some(data)
            work += data?.count ?? 0
            applied.append(Change(seq: seq, key: key, version: next.version, data: data, at: commitTime, by: author))
            versions.append(KeyVersion(key: key, version: next.version, merged: entry.decision.isMerged))
        }
        changes += applied
        lastSeq = seq
        return .applied(seq: seq, changes: applied, versions: versions)
    }
}
