import VersoCore

/// The paths each version of a key changed from the version before it, as `"merge": "fields"`
/// writes found them: a version never changes once committed, so a merge crossing it reuses
/// them instead of reading and comparing both versions again. Up to `capacity` versions are
/// kept; past that it starts over. The writer empties it when a transaction rolls back (a
/// version it wrote then never happened). Used by the writer alone, on its queue.
struct ChangedPaths {
    private struct Version: Hashable {
        var key: BytewiseString
        var version: Int64
    }

    let capacity: Int
    private var paths: [Version: [FieldPath]] = [:]

    init(capacity: Int = 1 << 16) {
        self.capacity = capacity
    }

    subscript(key: String, version: Int64) -> [FieldPath]? {
        get { paths[Version(key: BytewiseString(key), version: version)] }
        set {
            if paths.count >= capacity { paths.removeAll(keepingCapacity: true) }
            paths[Version(key: BytewiseString(key), version: version)] = newValue
        }
    }

    mutating func removeAll() {
        paths.removeAll()
    }
}
