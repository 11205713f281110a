/// A path to one value inside a record: the member names from the top object down, written as
/// an RFC 6901 JSON Pointer (`/title`, `/meta/author`). Arrays count as one value, so a path
/// never indexes into one.
public struct FieldPath: Sendable, Hashable, Comparable, CustomStringConvertible {
    /// The member names from the top object down (compared as UTF-8 bytes).
    public var names: [BytewiseString]

    public init(_ names: [BytewiseString]) {
        self.names = names
    }

    /// The JSON Pointer: each name after a `/`, with `~` written `~0` and `/` written `~1`.
    public var pointer: String {
        var text = ""
        for name in names {
            text += "/"
            for character in name.string.unicodeScalars {
                switch character {
                case "~": text += "~0"
                case "/": text += "~1"
                default: text.unicodeScalars.append(character)
                }
            }
        }
        return text
    }

    public var description: String { pointer }

    /// The path an RFC 6901 JSON Pointer names (`/meta/a~1b` is `meta`, `a/b`; `""` is the
    /// whole record), or nil when it is not one (no leading `/`, or a `~` not followed by 0 or 1).
    public init?(pointer: String) {
        guard !pointer.isEmpty else {
            self.init([])
            return
        }
        guard pointer.hasPrefix("/") else { return nil }
        var names: [BytewiseString] = []
        for token in pointer.dropFirst().split(separator: "/", omittingEmptySubsequences: false) {
            var name = ""
            var escaped = false
            for character in token.unicodeScalars {
                if escaped {
                    switch character {
                    case "0": name += "~"
                    case "1": name += "/"
                    default: return nil
                    }
                    escaped = false
                } else if character == "~" {
                    escaped = true
                } else {
                    name.unicodeScalars.append(character)
                }
            }
            if escaped { return nil }
            names.append(BytewiseString(name))
        }
        self.init(names)
    }

    /// Whether the two paths name the same value, or one names a value inside the other's.
    public func overlaps(_ other: FieldPath) -> Bool {
        let shorter = min(names.count, other.names.count)
        return names.prefix(shorter) == other.names.prefix(shorter)
    }

    public static func < (lhs: FieldPath, rhs: FieldPath) -> Bool {
        lhs.names.lexicographicallyPrecedes(rhs.names)
    }

    func appending(_ name: BytewiseString) -> FieldPath {
        FieldPath(names + [name])
    }
}

/// Why a `"merge": "fields"` write could not be merged, as its conflict reply says.
public enum MergeRefusal: String, Sendable, Equatable {
    /// A value this write changes was changed since `base` too (see `clashes`).
    case clash
    /// The record is deleted now.
    case deleted
    /// The record was created, or deleted and created again, since `base`.
    case recreated
    /// The change log no longer holds every version since `base`.
    case historyGone = "history_gone"
    /// `base` is newer than the record's current version.
    case unknownBase = "unknown_base"
}

/// What a conflict reply of a merge write says beyond the current record.
public struct MergeConflict: Sendable, Equatable {
    public var reason: MergeRefusal
    /// The paths this write changes that collide with a change since `base` (sorted).
    public var clashes: [FieldPath]
    /// Every path changed since `base`, when the server still knows them (sorted).
    public var changed: [FieldPath]?

    public init(reason: MergeRefusal, clashes: [FieldPath] = [], changed: [FieldPath]? = nil) {
        self.reason = reason
        self.clashes = clashes
        self.changed = changed
    }
}

/// The pure rules of `"merge": "fields"` (Protocol.md section 3.3): which values a write and the
/// changes since its base touch, whether they collide, and the merged result. No I/O.
public enum FieldMerge {
    /// What a merge decides.
    public enum Outcome: Sendable, Equatable {
        /// No clash: the write applied to the current data gives this.
        case merged(JSONObject)
        /// The write cannot be merged; nothing changes.
        case refused(MergeConflict)
    }

    /// The paths at which `old` and `new` differ. Members that are objects on both sides are
    /// compared member by member; any other difference (a scalar, an array, a member added or
    /// removed, an object replaced by something else) is one path. Sorted.
    public static func differences(from old: JSONObject, to new: JSONObject) -> [FieldPath] {
        var paths: [FieldPath] = []
        collectDifferences(old, new, at: FieldPath([]), into: &paths)
        return paths.sorted()
    }

    private static func collectDifferences(
        _ old: JSONObject,
        _ new: JSONObject,
        at path: FieldPath,
        into paths: inout [FieldPath]
    ) {
        for (name, oldValue) in old {
            guard let newValue = new[name] else {
                paths.append(path.appending(name))
                continue
            }
            if case .object(let oldMembers) = oldValue, case .object(let newMembers) = newValue {
                collectDifferences(oldMembers, newMembers, at: path.appending(name), into: &paths)
            } else if oldValue != newValue {
                paths.append(path.appending(name))
            }
        }
        for name in new.keys where old[name] == nil {
            paths.append(path.appending(name))
        }
    }

    /// The paths an RFC 7396 merge patch names when applied to `base`: each member it sets or
    /// removes, and inside a member that is an object in both the patch and `base`, the
    /// members that patch names (a patch member that is an object replaces anything else
    /// whole). Sorted. A patch may name a value it leaves as it was; it still counts.
    public static func paths(of patch: JSONObject, on base: JSONObject) -> [FieldPath] {
        var paths: [FieldPath] = []
        collectPatchPaths(patch, base, at: FieldPath([]), into: &paths)
        return paths.sorted()
    }

    private static func collectPatchPaths(
        _ patch: JSONObject,
        _ base: JSONObject,
        at path: FieldPath,
        into paths: inout [FieldPath]
    ) {
        for (name, value) in patch {
            if case .object(let inner) = value, case .object(let baseMembers)? = base[name] {
                collectPatchPaths(inner, baseMembers, at: path.appending(name), into: &paths)
            } else {
                paths.append(path.appending(name))
            }
        }
    }

    /// The paths changed from one version to the next across `versions` (oldest first, each a
    /// live record): a value changed and changed back still counts. Sorted, no repeats.
    public static func changed(across versions: [JSONObject]) -> [FieldPath] {
        var all = Set<FieldPath>()
        for (old, new) in zip(versions, versions.dropFirst()) {
            all.formUnion(differences(from: old, to: new))
        }
        return all.sorted()
    }

    /// The paths of `writing` that overlap (equal, inside or above) a path of `changed`. Sorted.
    public static func clashes(_ writing: [FieldPath], with changed: [FieldPath]) -> [FieldPath] {
        writing.filter { path in changed.contains { $0.overlaps(path) } }.sorted()
    }

    /// Merges a put or a patch made against `versions.first` into `versions.last`, where
    /// `versions` are every version of the record from the write's base to the current one,
    /// oldest first, each a live record.
    public static func merge(_ action: WriteAction, versions: [JSONObject]) -> Outcome {
        guard let base = versions.first, let current = versions.last else {
            preconditionFailure("a merge needs at least the base version")
        }
        return merge(action, base: base, current: current, changed: changed(across: versions))
    }

    /// Merges a put or a patch made against `base` into `current`, `changed` being the paths
    /// changed from `base` to `current` version by version (`changed(across:)`). Without a
    /// clash: a patch applies as sent to the current data, and a put as the differences
    /// between the base data and its data.
    public static func merge(
        _ action: WriteAction,
        base: JSONObject,
        current: JSONObject,
        changed: [FieldPath]
    ) -> Outcome {
        switch action {
        case .putEncoded(let data):
            return merge(.put(data.object), base: base, current: current, changed: changed)
        case .put(let data):
            let writing = differences(from: base, to: data)
            let clashes = clashes(writing, with: changed)
            guard clashes.isEmpty else {
                return .refused(MergeConflict(reason: .clash, clashes: clashes, changed: changed))
            }
            var merged = current
            for path in writing { set(&merged, at: path.names[...], to: value(in: data, at: path.names[...])) }
            return .merged(merged)
        case .patch(let patch):
            let clashes = clashes(paths(of: patch, on: base), with: changed)
            guard clashes.isEmpty else {
                return .refused(MergeConflict(reason: .clash, clashes: clashes, changed: changed))
            }
            guard case .object(let merged) = MergePatch.apply(.object(patch), to: .object(current)) else {
                preconditionFailure("a merge patch that is an object always yields an object")
            }
            return .merged(merged)
        case .delete, .check:
            // Nothing to merge: a delete or a check on a stale base is a plain conflict.
            return .refused(MergeConflict(reason: .clash, clashes: [FieldPath([])], changed: changed))
        }
    }

    /// The value at `names` in `object`, nil when a member on the way is missing or not an object.
    static func value(in object: JSONObject, at names: ArraySlice<BytewiseString>) -> JSONValue? {
        guard let first = names.first, let member = object[first] else { return nil }
        let rest = names.dropFirst()
        if rest.isEmpty { return member }
        guard case .object(let inner) = member else { return nil }
        return value(in: inner, at: rest)
    }

    /// Sets (or with nil removes) the value at `names` in `object`. Every member on the way is
    /// an object: the caller only sets paths that do not overlap a change since the base, so
    /// the objects above them are as they were in the base.
    static func set(_ object: inout JSONObject, at names: ArraySlice<BytewiseString>, to value: JSONValue?) {
        guard let first = names.first else { return }
        let rest = names.dropFirst()
        if rest.isEmpty {
            object[first] = value
            return
        }
        guard case .object(var inner)? = object[first] else { return }
        object[first] = nil
        set(&inner, at: rest, to: value)
        object[first] = .object(inner)
    }
}
