import VersoCore

/// A live record as the server sent it.
public struct Record: Sendable, Equatable {
    public var key: String
    public var version: Int64
    public var data: JSONObject

    public init(key: String, version: Int64, data: JSONObject) {
        self.key = key
        self.version = version
        self.data = data
    }
}

/// The current state of a key that a write found stale.
public struct RecordConflict: Sendable, Equatable, Error {
    public var key: String
    /// The base the write was sent with.
    public var base: Int64
    /// The key's current version (0 if it never existed).
    public var version: Int64
    /// The current data; nil when the key is deleted or never existed.
    public var data: JSONObject?
    public var deleted: Bool
}

/// What a single-key write came to.
public enum WriteOutcome: Sendable, Equatable {
    /// Accepted at `version`, as change `seq`.
    case ack(version: Int64, seq: Int64)
    /// The base was stale; nothing changed.
    case conflict(RecordConflict)
}

/// What a txn came to.
public enum TxnOutcome: Sendable, Equatable {
    /// Accepted: every named key's version afterwards (keys compared as UTF-8 bytes, so NFC
    /// and NFD spellings of a key are two entries).
    case ack(seq: Int64, versions: [BytewiseString: Int64])
    /// One or more bases were stale; nothing changed.
    case conflict([RecordConflict])
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

/// One operation of a txn.
public struct TxnOperation: Sendable, Equatable {
    public enum Action: Sendable, Equatable {
        case put(JSONObject)
        case patch(JSONObject)
        case delete
        case check
    }

    public var key: String
    public var base: Int64?
    public var action: Action

    /// `base` nil means a forced write (only on servers started with --allow-force).
    public init(key: String, base: Int64?, action: Action) {
        self.key = key
        self.base = base
        self.action = action
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
    /// A change: `data` nil when the key was deleted.
    case update(key: String, version: Int64, seq: Int64, data: JSONObject?)
}

/// What the client observes about its connection.
public enum ConnectionState: Sendable, Equatable {
    case connecting
    case connected(session: String)
    case disconnected(reason: String)
    case closed
}
