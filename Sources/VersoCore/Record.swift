/// The stored state of one key: its version, and its data unless it is a tombstone.
///
/// A key that never existed has no `RecordState` at all and counts as version 0.
public struct RecordState: Sendable, Equatable {
    /// The version: 1 for the first accepted change, one more for each change after it.
    public var version: Int64
    private var content: Content

    /// What the data is held as.
    private enum Content: Sendable {
        case tombstone
        case object(JSONObject)
        /// The data only as its encoding (a put's data that came written so): parsed when asked.
        case encoded(CanonicalObject)
    }

    public init(version: Int64, data: JSONObject?) {
        self.version = version
        self.content = data.map(Content.object) ?? .tombstone
    }

    /// A live state whose data is held as its encoding, not parsed.
    public init(version: Int64, encoded data: CanonicalObject) {
        self.version = version
        self.content = .encoded(data)
    }

    /// The JSON object, or `nil` when the key is deleted (a tombstone). A state made from an
    /// encoding parses it here, at each call.
    public var data: JSONObject? {
        get {
            switch content {
            case .tombstone: nil
            case .object(let object): object
            case .encoded(let encoded): encoded.object
            }
        }
        set { content = newValue.map(Content.object) ?? .tombstone }
    }

    /// The data's encoding when the state was made from it (`init(version:encoded:)`).
    public var encoded: CanonicalObject? {
        if case .encoded(let encoded) = content { encoded } else { nil }
    }

    /// The parsed data when the state holds it parsed (nil for a tombstone and for a state
    /// made from an encoding: nothing is parsed here).
    public var parsedData: JSONObject? {
        if case .object(let object) = content { object } else { nil }
    }

    /// Whether this state is a tombstone left by a delete.
    public var isDeleted: Bool {
        if case .tombstone = content { true } else { false }
    }

    /// Equal versions and equal data, however each is held.
    public static func == (lhs: RecordState, rhs: RecordState) -> Bool {
        guard lhs.version == rhs.version else { return false }
        switch (lhs.content, rhs.content) {
        case (.encoded(let left), .encoded(let right)): return left == right
        default: return lhs.data == rhs.data
        }
    }
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
    /// When the change committed, in milliseconds since the Unix epoch (server time); nil for a
    /// change stored before the server recorded it.
    public var at: Int64?
    /// Who made the change: the user of the writer's access token; nil on a server that does
    /// not authenticate.
    public var by: String?

    public init(seq: Int64, key: String, version: Int64, data: [UInt8]?, at: Int64? = nil, by: String? = nil) {
        self.seq = seq
        self.key = key
        self.version = version
        self.data = data
        self.at = at
        self.by = by
    }
}

/// One version of a key as the store keeps it, for `history`: its data still encoded.
public struct StoredVersion: Sendable, Equatable {
    public var version: Int64
    /// The seq of the change that made it.
    public var seq: Int64
    /// As `Change.at`.
    public var at: Int64?
    /// As `Change.by`.
    public var by: String?
    /// The encoded JSON object, or nil when this version is a tombstone.
    public var data: [UInt8]?

    public init(version: Int64, seq: Int64, at: Int64?, by: String?, data: [UInt8]?) {
        self.version = version
        self.seq = seq
        self.at = at
        self.by = by
        self.data = data
    }
}

/// One page of a key's versions, newest first, as `history` answers it (Protocol.md 3.9).
public struct StoredHistory: Sendable, Equatable {
    /// The versions, newest first, with no version between two of them left out.
    public var versions: [StoredVersion]
    /// The `before` of the next page; nil when this page reached the oldest version kept.
    public var next: Int64?
    /// When the page reached versions the server no longer keeps: the newest of them (every
    /// version up to it is gone). Nil when nothing older than the page is missing.
    public var gone: Int64?

    public init(versions: [StoredVersion], next: Int64?, gone: Int64?) {
        self.versions = versions
        self.next = next
        self.gone = gone
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
