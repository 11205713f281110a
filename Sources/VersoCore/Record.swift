/// The stored state of one key: its version, and its data unless it is a tombstone.
///
/// A key that never existed has no `RecordState` at all and counts as version 0.
public struct RecordState: Sendable, Equatable {
    /// The version: 1 for the first accepted change, one more for each change after it.
    public var version: Int64
    /// The JSON object, or `nil` when the key is deleted (a tombstone).
    public var data: JSONObject?

    public init(version: Int64, data: JSONObject?) {
        self.version = version
        self.data = data
    }

    /// Whether this state is a tombstone left by a delete.
    public var isDeleted: Bool { data == nil }
}

/// One accepted change to one key, as it is stored in the change log and sent to subscribers.
public struct Change: Sendable, Equatable {
    /// The global sequence number of the change (the ops of one txn share it).
    public var seq: Int64
    public var key: String
    /// The key's version after the change.
    public var version: Int64
    /// The encoded JSON object, or `nil` for a delete.
    public var data: [UInt8]?

    public init(seq: Int64, key: String, version: Int64, data: [UInt8]?) {
        self.seq = seq
        self.key = key
        self.version = version
        self.data = data
    }
}

/// A live record as `get`, `list` and subscription snapshots return it.
public struct RecordSnapshot: Sendable, Equatable {
    public var key: String
    public var version: Int64
    /// The encoded JSON object.
    public var data: [UInt8]

    public init(key: String, version: Int64, data: [UInt8]) {
        self.key = key
        self.version = version
        self.data = data
    }
}

/// A key and a version.
public struct KeyVersion: Sendable, Equatable {
    public var key: String
    public var version: Int64
    /// The write was a `"merge": "fields"` write merged into a newer version than its base.
    public var merged: Bool

    public init(key: String, version: Int64, merged: Bool = false) {
        self.key = key
        self.version = version
        self.merged = merged
    }
}
