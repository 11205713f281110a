import VersoCore

/// What a single-key write came to.
public enum WriteOutcome: Sendable, Equatable {
    /// Accepted at `version`, as change `seq`. `merged`: a write sent with `merge: true` was
    /// merged into a newer version than its base. `replayed`: the server had already applied this
    /// write (a resend after a dropped connection, or the same idempotency key again) and this is
    /// its first ack again; it was applied once.
    case ack(version: Int64, seq: Int64, merged: Bool = false, replayed: Bool = false)
    /// The base was stale (and, for a merge, the write could not be merged); nothing changed.
    case conflict(RecordConflict)
}

/// What a txn came to.
public enum TxnOutcome: Sendable, Equatable {
    /// Accepted: its seq, merged keys and whether it was replayed, and every named key's version
    /// afterwards (keys compared as UTF-8 bytes, so NFC and NFD spellings of a key are two entries).
    case ack(TxnAck, versions: [BytewiseString: Int64])
    /// One or more bases were stale (and could not be merged); nothing changed. Every such key.
    case conflict([RecordConflict])
}

/// What one op of a batch came to (Protocol.md 3.8), decided on its own against the state the ops
/// before it left.
public enum BatchResult: Sendable, Equatable {
    /// Applied at `version`, as change `seq` (a `check` that held: the key's version and the seq at
    /// that point). `merged`: an op sent with `merge: true` was merged into a newer version than
    /// its base.
    case ack(key: String, version: Int64, seq: Int64, merged: Bool = false)
    /// The op's base was stale (and, for a merge, it could not be merged); this op changed nothing.
    case conflict(RecordConflict)
    /// The server refused this op (`not_found`: a delete of a key that is missing or already
    /// deleted); it changed nothing. `key` is the op's key.
    case error(key: String, code: ErrorCode, message: String)
}

/// What a batch came to: one result per op, in the order the ops were sent.
public struct BatchOutcome: Sendable, Equatable {
    public var results: [BatchResult]
    /// The server had already committed this batch (a resend after a dropped connection, or the
    /// same idempotency key again): `results` are its first results, conflicts and errors
    /// included, and it was applied once.
    public var replayed: Bool

    public init(results: [BatchResult], replayed: Bool = false) {
        self.results = results
        self.replayed = replayed
    }
}

/// What `get` found.
public enum Lookup: Sendable, Equatable {
    case found(Record)
    /// The key never existed.
    case missing
    /// The key was deleted; its tombstone is at this version.
    case deleted(version: Int64)

    /// The key's current version (0 if it never existed).
    public var version: Int64 {
        switch self {
        case .found(let record): record.version
        case .missing: 0
        case .deleted(let version): version
        }
    }
}

/// One operation of a txn or a batch.
public struct TxnOperation: Sendable, Equatable {
    /// What the op does: the protocol's own write actions (`put`, `patch`, `delete`, `check`).
    public typealias Action = WriteAction

    public var key: String
    public var base: Int64?
    public var action: Action
    /// Sends a put or patch with `"merge": "fields"` (see `VersoClient.put`); needs a base.
    public var merge: Bool

    /// `base` nil means a forced write (only on servers started with --allow-force). `merge` is
    /// for a put or patch with a base; `txn` and `batch` refuse any other op with it before sending.
    public init(key: String, base: Int64?, action: Action, merge: Bool = false) {
        self.key = key
        self.base = base
        self.action = action
        self.merge = merge
    }
}

extension TxnOperation {
    /// The operation in the protocol's own terms, as the server reads it.
    var writeOperation: WriteOperation {
        WriteOperation(
            key: key,
            action: action,
            precondition: VersoClient.precondition(base),
            merge: merge ? .fields : .plain
        )
    }
}

/// What a subscription delivers.
public enum SubscriptionEvent: Sendable, Equatable {
    /// The subscription (re)started at `seq`. `reset` is true when a resume could not replay the
    /// changes missed while disconnected: snapshots of the current state follow instead, and the
    /// consumer should drop what it held for this subscription.
    case started(seq: Int64, reset: Bool)
    /// A current record (after `started` without resume, or after a reset).
    case snapshot(Record)
    /// Every snapshot of this start has been delivered; what follows is live.
    case synced
    /// A change: `data` nil when the key was deleted; `at` when it committed (ms since the Unix
    /// epoch) and `by` who made it, when the server says (Protocol.md 2).
    case update(key: String, version: Int64, seq: Int64, data: JSONObject?, at: Int64? = nil, by: String? = nil)
    /// Another connection's presence on a matching key changed (`state` nil: it left), or, right
    /// after `synced`, was already there (Protocol.md 5.1).
    case presence(Presence)
    /// A progress bookmark (asked for with `progressInterval`): nothing changed for this
    /// subscription, and every change up to `seq` has been delivered. The client resumes from
    /// it by itself after a dropped connection; keep it to resume later, from another client.
    case progress(seq: Int64)
}

/// What the client observes about its connection.
public enum ConnectionState: Sendable, Equatable {
    case connecting
    case connected(session: String)
    case disconnected(reason: String)
    case closed
}
