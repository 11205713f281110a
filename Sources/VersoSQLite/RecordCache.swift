import VersoCore

/// A key's current state as the writer knows it: the stored encoding and, once a patch
/// needed it, the parsed object.
struct CurrentRecord {
    var version: Int64
    /// The seq of the change that made this version.
    var seq: Int64
    /// The encoded JSON object, or nil for a tombstone.
    var encoded: [UInt8]?
    /// `encoded` parsed, when something needed it.
    var object: JSONObject?
    /// Where `encoded`'s members lie, once a patch encoded it.
    var index: MemberIndex?
    /// When this version was committed (ms since the Unix epoch), when known.
    var at: Int64?
    /// Who wrote it, when known.
    var by: String?

    /// The state `VersioningRules.decide` takes. Without the parsed object, a live record
    /// carries an empty one in its place: only an accepted patch reads the data, and the
    /// writer parses it for that.
    var state: RecordState {
        RecordState(version: version, data: encoded == nil ? nil : (object ?? [:]))
    }

    /// The version as stored (its encoding, when read), as a conflict reports it.
    var stored: StoredVersion { StoredVersion(version: version, seq: seq, at: at, by: by, data: encoded) }
}

/// The writer's least-recently-used cache of large records, so that a patch or a conflict on
/// a large record neither reads nor parses it again.
///
/// Only records of `minBytes` and up are kept (a small one costs little to read and parse),
/// `maxBytes` of encoded data in all. An entry is used only after the database confirms its
/// version, and the writer empties the cache when a transaction rolls back, so the cache is
/// never ahead of the database. Used by the writer alone, on its queue.
struct RecordCache {
    private struct Entry {
        var record: CurrentRecord
        var lastUse: UInt64
    }

    let minBytes: Int
    let maxBytes: Int
    /// By key bytes: NFC and NFD spellings of a key are two records (Protocol.md section 2).
    private var entries: [BytewiseString: Entry] = [:]
    private var bytes = 0
    private var clock: UInt64 = 0

    init(minBytes: Int = 16 << 10, maxBytes: Int = 16 << 20) {
        self.minBytes = minBytes
        self.maxBytes = maxBytes
    }

    /// The cached state of `key`, if any (the caller checks its version).
    mutating func record(_ key: String) -> CurrentRecord? {
        guard var entry = entries[BytewiseString(key)] else { return nil }
        clock += 1
        entry.lastUse = clock
        entries[BytewiseString(key)] = entry
        return entry.record
    }

    /// Keeps `record` as `key`'s state when it is large enough; otherwise forgets the key.
    mutating func store(_ record: CurrentRecord, for key: String) {
        remove(key)
        let size = record.encoded?.count ?? 0
        guard size >= minBytes, size <= maxBytes else { return }
        clock += 1
        entries[BytewiseString(key)] = Entry(record: record, lastUse: clock)
        bytes += size
        while bytes > maxBytes, let oldest = entries.min(by: { $0.value.lastUse < $1.value.lastUse })?.key {
            remove(oldest.string)
        }
    }

    mutating func remove(_ key: String) {
        guard let entry = entries.removeValue(forKey: BytewiseString(key)) else { return }
        bytes -= entry.record.encoded?.count ?? 0
    }

    mutating func removeAll() {
        entries = [:]
        bytes = 0
    }

    var count: Int { entries.count }
}
