import VersoCore

/// The writer's knowledge of each key's version and whether it is live, so that a write the
/// version alone decides (a put, delete or check on the current version) is decided without
/// reading the database.
///
/// The writer is the database's only writer (the data folder's lock keeps out another
/// server), and it updates an entry for every write it applies and empties the map when a
/// transaction rolls back, so an entry is never ahead of, nor behind, the database. The
/// store's compare-and-set (`UPDATE … WHERE version = ?`) still checks every write. At most
/// `capacity` keys are known (about 100 bytes each); when it is full it starts over, and keys
/// it no longer knows are read from the database as before. Used by the writer alone.
struct KnownVersions {
    struct Entry: Equatable {
        var version: Int64
        /// The seq of the change that made this version.
        var seq: Int64
        /// False for a tombstone.
        var isLive: Bool
    }

    let capacity: Int
    /// By key bytes: NFC and NFD spellings of a key are two records (Protocol.md section 2).
    private var entries: [BytewiseString: Entry] = [:]

    init(capacity: Int = 100_000) {
        self.capacity = capacity
    }

    subscript(key: String) -> Entry? {
        entries[BytewiseString(key)]
    }

    /// Records `key`'s state as the database now holds it.
    mutating func set(_ key: String, version: Int64, seq: Int64, isLive: Bool) {
        if entries.count >= capacity, entries[BytewiseString(key)] == nil { entries.removeAll(keepingCapacity: true) }
        entries[BytewiseString(key)] = Entry(version: version, seq: seq, isLive: isLive)
    }

    mutating func remove(_ key: String) {
        entries.removeValue(forKey: BytewiseString(key))
    }

    mutating func removeAll() {
        entries.removeAll()
    }

    var count: Int { entries.count }
}
