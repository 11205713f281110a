import VersoCore

/// What a store knows about itself when it opens.
public struct StoreInfo: Sendable, Equatable {
    /// A random id made when the store was created; it never changes afterwards.
    public var epoch: String
    /// The seq of the last committed change (0 for a new store).
    public var lastSeq: Int64

    public init(epoch: String, lastSeq: Int64) {
        self.epoch = epoch
        self.lastSeq = lastSeq
    }
}

/// A key's stored state with its data still encoded, as reads return it (no parse, no re-encode).
public struct StoredRecord: Sendable, Equatable {
    public var version: Int64
    /// The encoded JSON object, or nil for a tombstone.
    public var data: [UInt8]?

    public init(version: Int64, data: [UInt8]?) {
        self.version = version
        self.data = data
    }
}

/// What kind of write request a command came from.
public enum WriteShape: String, Sendable, Equatable {
    /// One `put`, `patch` or `delete`.
    case single
    /// A `txn`: its operations are applied all or nothing.
    case txn
    /// A `batch`: each operation is decided on its own, in order, and all are committed together.
    case batch
}

/// One unit of work for the writer: a single put/patch/delete, a txn or a batch.
public struct WriteCommand: Sendable, Equatable {
    /// The operations.
    public var operations: [WriteOperation]
    /// How they are decided, and the shape of the reply.
    public var shape: WriteShape
    /// The client's idempotency key: the store keeps it with an applied outcome, in the same
    /// transaction, and answers a later command with the same key from it.
    public var idempotency: IdempotencyClaim?
    /// Who sends it (the user of the connection's access token): stored with each change it
    /// makes as `by`.
    public var author: String?

    public init(
        operations: [WriteOperation],
        shape: WriteShape,
        idempotency: IdempotencyClaim? = nil,
        author: String? = nil
    ) {
        self.operations = operations
        self.shape = shape
        self.idempotency = idempotency
        self.author = author
    }

    /// A single write (`isTxn` false) or a txn.
    public init(operations: [WriteOperation], isTxn: Bool, idempotency: IdempotencyClaim? = nil, author: String? = nil)
    {
        self.init(operations: operations, shape: isTxn ? .txn : .single, idempotency: idempotency, author: author)
    }

    /// Whether the client sent a `txn`.
    public var isTxn: Bool { shape == .txn }
}

/// What became of one `WriteCommand`.
///
/// Only `replayed` is boxed (it holds an outcome of its own): an `applied`, the outcome of
/// nearly every write, is stored inline with no heap allocation.
public enum CommandOutcome: Sendable, Equatable {
    /// Committed. `changes` are the accepted changes (all at `seq`); `versions` lists every key
    /// the command named with its version afterwards, in the command's order.
    case applied(seq: Int64, changes: [Change], versions: [KeyVersion])
    /// One or more bases were stale; nothing was applied.
    case conflict([ConflictDetail])
    /// A delete of a key that does not exist or is already deleted; nothing was applied.
    case notFound(key: String, current: RecordState?)
    /// A batch: the outcome of each operation, in order (each `applied`, `conflict` or
    /// `notFound`), all committed in one transaction; each applied operation has its own seq.
    case batch([CommandOutcome])
    /// The command's idempotency key was already used by the same request: its outcome then
    /// (an `applied` without its changes, or a `batch`); nothing was applied now.
    indirect case replayed(CommandOutcome)
    /// The command's idempotency key was already used by a different request; nothing was applied.
    case keyReused
}

/// Changes replayed for `subscribe` with `since`.
public struct ChangeReplay: Sendable, Equatable {
    /// The matching changes after `since`, in seq order.
    public var changes: [Change]
    /// The last seq the replay covers: changes after it arrive live.
    public var throughSeq: Int64

    public init(changes: [Change], throughSeq: Int64) {
        self.changes = changes
        self.throughSeq = throughSeq
    }
}

/// The records a subscription starts from, read in one consistent view.
public struct StoreSnapshot: Sendable, Equatable {
    public var records: [RecordSnapshot]
    /// The seq the view was taken at: every change up to it is in `records`, none after it.
    public var seq: Int64

    public init(records: [RecordSnapshot], seq: Int64) {
        self.records = records
        self.seq = seq
    }
}

/// How much of a batch `RecordStore.commit(_:budget:)` must decide.
public struct CommitBudget: Sendable, Equatable {
    /// The first `guaranteed` commands are always decided.
    public var guaranteed: Int
    /// After those, commands are decided only while the work done so far is below this: bytes
    /// of record data the commands made the store read, merge, write or send back.
    public var workLimit: Int

    public init(guaranteed: Int, workLimit: Int) {
        self.guaranteed = guaranteed
        self.workLimit = workLimit
    }

    /// Decide every command.
    public static let unlimited = CommitBudget(guaranteed: .max, workLimit: .max)
}

/// What `RecordStore.commit(_:budget:)` decided and what each decided command cost.
public struct BudgetedCommit: Sendable {
    /// The outcomes of the commands decided: a prefix of the commands given.
    public var outcomes: [CommandOutcome]
    /// The work each of those commands took, as `CommitBudget` counts it (one entry per
    /// outcome); the engine shares the writer's time between connections by it.
    public var work: [Int]
    /// How long making the transaction durable took (SQLite's COMMIT: the WAL's fsync with
    /// full durability), when the store measures it.
    public var syncDuration: Duration?

    public init(outcomes: [CommandOutcome], work: [Int], syncDuration: Duration? = nil) {
        precondition(outcomes.count == work.count, "one work figure per outcome")
        self.outcomes = outcomes
        self.work = work
        self.syncDuration = syncDuration
    }
}

/// Durable storage for records, their versions and the change log.
///
/// The store is the authority on versions: `commit` decides each operation with
/// `VersioningRules` against the state it reads inside its own transaction and writes with a
/// compare-and-set (`UPDATE … WHERE key = ? AND version = ?`), so a store shared by several
/// servers (PostgreSQL) keeps the same guarantees. The engine calls `commit` from one writer
/// at a time.
public protocol RecordStore: Sendable {
    /// Opens (creating when needed) the store.
    func open() async throws -> StoreInfo

    /// Applies `commands` in order in one durable transaction: each is decided against the state
    /// the commands before it left, a command that does not apply changes nothing, and accepted
    /// commands get consecutive seqs. Returns only after the transaction is durable; when it
    /// throws, nothing was applied.
    func commit(_ commands: [WriteCommand]) async throws -> [CommandOutcome]

    /// Like `commit(_:)`, but may stop before the end of `commands` once `budget` is spent:
    /// returns the outcomes of the commands decided (and committed), a prefix of `commands`
    /// at least `budget.guaranteed` long, with the work each took; the others were not looked
    /// at and may be committed later. The default decides every command and counts each as
    /// costing the same.
    func commit(_ commands: [WriteCommand], budget: CommitBudget) async throws -> BudgetedCommit

    /// Where the engine's writer task runs, when the store's commits cost least from there (a
    /// store with a writer thread of its own: a commit called on it needs no hop); nil for the
    /// global pool.
    var writerExecutor: (any TaskExecutor)? { get }

    /// The current state of `key`, or nil if it never existed.
    func record(_ key: String) async throws -> StoredRecord?

    /// Live records with `prefix` whose key sorts after `after`, in key (UTF-8 byte) order, at
    /// most `limit`, ending with the first record that takes their `encodedSizeBound`s together
    /// past `maxBytes` (so the caller sees that the page is full by bytes).
    func list(prefix: String, after: String?, limit: Int, maxBytes: Int) async throws -> [RecordSnapshot]

    /// The live records matching `filter` and the seq they are consistent with.
    func snapshot(_ filter: SubscriptionFilter) async throws -> StoreSnapshot

    /// The changes matching `filter` after `seq`, or nil when the log no longer reaches back
    /// that far (or `seq` is ahead of the store).
    func changes(after seq: Int64, matching filter: SubscriptionFilter) async throws -> ChangeReplay?

    /// A page of `key`'s versions below `before` (from the current one when nil), newest first,
    /// as far back as the store keeps them: at most `limit`, and ending with the first version
    /// whose data takes the page past `maxBytes`. `next` is set when older versions may follow;
    /// `gone` when the page reached versions no longer kept. Nil when the key never existed.
    func history(of key: String, before: Int64?, limit: Int, maxBytes: Int) async throws -> StoredHistory?

    /// The seqs the change log holds now: changes after `prunedThrough`, up to `lastSeq`.
    func logBounds() async throws -> (prunedThrough: Int64, lastSeq: Int64)

    /// Releases the store's resources. Nothing may be called after it.
    func close() async
}

extension RecordSnapshot {
    /// At least the bytes this record takes in a `snapshot` message or a `records` list: its
    /// data as stored, its key escaped (no key character takes more than 3 bytes per byte of
    /// UTF-8), its version and the punctuation around them.
    public var encodedSizeBound: Int { data.count + 3 * key.utf8.count + 64 }
}

extension Change {
    /// At least the bytes this change takes in an `update` message, as for `RecordSnapshot`.
    public var encodedSizeBound: Int { (data?.count ?? 0) + 3 * key.utf8.count + 128 }
}

extension RecordStore {
    /// None: the writer task runs on the global pool.
    public var writerExecutor: (any TaskExecutor)? { nil }

    public func commit(_ commands: [WriteCommand], budget: CommitBudget) async throws -> BudgetedCommit {
        let outcomes = try await commit(commands)
        return BudgetedCommit(outcomes: outcomes, work: Array(repeating: 1, count: outcomes.count))
    }
}

extension CommandOutcome {
    /// The changes this outcome committed, in seq order, and the last seq among them; nil
    /// when it committed nothing.
    public var committed: (changes: [Change], lastSeq: Int64)? {
        switch self {
        case .applied(let seq, let changes, _):
            return (changes, seq)
        case .batch(let outcomes):
            var changes: [Change] = []
            var lastSeq: Int64?
            for case .applied(let seq, let applied, _) in outcomes {
                changes += applied
                lastSeq = seq
            }
            return lastSeq.map { (changes, $0) }
        default:
            return nil
        }
    }
}

extension CommandOutcome {
    /// The outcome with every seq it carries (its own, and its changes') moved by `delta`: for
    /// a store that decides a batch before it knows the seq the batch starts after.
    public func shiftingSeqs(by delta: Int64) -> CommandOutcome {
        switch self {
        case .applied(let seq, let changes, let versions):
            let shifted = changes.map { change in
                var change = change
                change.seq += delta
                return change
            }
            return .applied(seq: seq + delta, changes: shifted, versions: versions)
        case .batch(let outcomes):
            return .batch(outcomes.map { $0.shiftingSeqs(by: delta) })
        case .replayed(let outcome):
            return .replayed(outcome.shiftingSeqs(by: delta))
        case .conflict, .notFound, .keyReused:
            return self
        }
    }
}
