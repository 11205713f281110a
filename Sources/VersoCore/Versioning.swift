/// What a write operation does to its key.
public enum WriteAction: Sendable, Equatable {
    /// Replace the whole object.
    case put(JSONObject)
    /// Apply an RFC 7396 merge patch (always an object).
    case patch(JSONObject)
    /// Leave a tombstone.
    case delete
    /// Change nothing, only require the version (a txn op).
    case check
}

/// The condition under which a write is accepted.
public enum WritePrecondition: Sendable, Equatable {
    /// Accepted only if the key's current version equals this base.
    case base(Int64)
    /// Accepted whatever the current version (only when the server allows forced writes).
    case force
}

/// What a write does when its base is stale.
public enum MergePolicy: Sendable, Equatable {
    /// A conflict, always (the plain versioning rule).
    case plain
    /// `"merge": "fields"`: merged into the current record unless a value it changes was changed
    /// since the base (Protocol.md section 3.3); only for `put` and `patch`.
    case fields
}

/// One operation on one key.
public struct WriteOperation: Sendable, Equatable {
    public var key: String
    public var action: WriteAction
    public var precondition: WritePrecondition
    public var merge: MergePolicy

    public init(key: String, action: WriteAction, precondition: WritePrecondition, merge: MergePolicy = .plain) {
        self.key = key
        self.action = action
        self.precondition = precondition
        self.merge = merge
    }

    /// Whether deciding this operation needs the record's versions since its base: a
    /// `"merge": "fields"` write whose base is older than the live record's `current` version.
    public func needsHistory(current: RecordState?) -> Bool {
        guard merge == .fields, case .base(let base) = precondition, let current, !current.isDeleted else {
            return false
        }
        return base >= 1 && base < current.version
    }
}

/// The outcome of checking one operation against the key's current state.
public enum VersionDecision: Sendable, Equatable {
    /// Accepted: the key moves to this new state (version current + 1).
    case accept(RecordState)
    /// A `check` that holds: nothing changes.
    case unchanged
    /// The base is stale: carries the current state (`nil` when the key never existed).
    case conflict(current: RecordState?)
    /// A `"merge": "fields"` write on a stale base merged into the current record: the key
    /// moves to this new state (version current + 1).
    case merged(RecordState)
    /// A `"merge": "fields"` write on a stale base that could not be merged: a conflict that
    /// also says why.
    case mergeRefused(current: RecordState?, MergeConflict)
    /// A delete of a key that does not exist or is already deleted: nothing changes.
    case notFound(current: RecordState?)
}

/// Verso's single versioning rule, shared by every mutating path (put, patch, delete, txn,
/// forced writes): pure, no I/O.
public enum VersioningRules {
    /// Decides what `operation` does to a key whose current state is `current`
    /// (`nil` when the key never existed, which counts as version 0).
    public static func decide(_ operation: WriteOperation, current: RecordState?) -> VersionDecision {
        let currentVersion = current?.version ?? 0
        if case .base(let base) = operation.precondition, base != currentVersion {
            return .conflict(current: current)
        }
        let nextVersion = currentVersion + 1
        switch operation.action {
        case .check:
            return .unchanged
        case .put(let data):
            return .accept(RecordState(version: nextVersion, data: data))
        case .patch(let patch):
            let base: JSONValue? = current?.data.map { .object($0) }
            guard case .object(let merged) = MergePatch.apply(.object(patch), to: base) else {
                preconditionFailure("a merge patch that is an object always yields an object")
            }
            return .accept(RecordState(version: nextVersion, data: merged))
        case .delete:
            guard let current, !current.isDeleted else { return .notFound(current: current) }
            return .accept(RecordState(version: nextVersion, data: nil))
        }
    }

    /// Decides `operation` like `decide(_:current:)`, merging a `"merge": "fields"` write on a
    /// stale base when it can. `history` holds the key's versions from the base on, as the
    /// change log still has them (any order; nil data for a tombstone); only a write for which
    /// `needsHistory(current:)` holds looks at it.
    public static func decide(
        _ operation: WriteOperation,
        current: RecordState?,
        history: [RecordState]
    ) -> VersionDecision {
        var summary = MergeHistory.gone
        if case .base(let base) = operation.precondition, let currentVersion = current?.version, base >= 1,
            base < currentVersion
        {
            var byVersion: [Int64: RecordState] = [:]
            for state in history where state.version >= base && state.version <= currentVersion {
                byVersion[state.version] = state
            }
            let states = (base...currentVersion).map { byVersion[$0] }
            if states.contains(where: { $0 == nil }) {
                summary = .gone
            } else if states.contains(where: { $0?.data == nil }) {
                summary = .recreated
            } else {
                let objects = states.compactMap { $0?.data }
                summary = .known(base: objects[0], changed: FieldMerge.changed(across: objects))
            }
        }
        return decide(operation, current: current, history: summary)
    }

    /// Decides `operation` like `decide(_:current:)`, merging a `"merge": "fields"` write on a
    /// stale base when it can, with what the change log says happened since its base
    /// (`history`, looked at only when `needsHistory(current:)` holds). `current` must carry
    /// the record's data.
    public static func decide(
        _ operation: WriteOperation,
        current: RecordState?,
        history: MergeHistory
    ) -> VersionDecision {
        let plain = decide(operation, current: current)
        guard operation.merge == .fields, case .conflict = plain, case .base(let base) = operation.precondition else {
            return plain
        }
        let currentVersion = current?.version ?? 0
        guard base < currentVersion, let current else {
            return .mergeRefused(current: current, MergeConflict(reason: .unknownBase))
        }
        guard let currentData = current.data else {
            return .mergeRefused(current: current, MergeConflict(reason: .deleted))
        }
        if base == 0 { return .mergeRefused(current: current, MergeConflict(reason: .recreated)) }
        switch history {
        case .gone:
            return .mergeRefused(current: current, MergeConflict(reason: .historyGone))
        case .recreated:
            return .mergeRefused(current: current, MergeConflict(reason: .recreated))
        case .known(let baseData, let changed):
            switch FieldMerge.merge(operation.action, base: baseData, current: currentData, changed: changed) {
            case .merged(let data): return .merged(RecordState(version: currentVersion + 1, data: data))
            case .refused(let conflict): return .mergeRefused(current: current, conflict)
            }
        }
    }
}

/// What the change log says about a key between a merge write's base and its current version.
public enum MergeHistory: Sendable, Equatable {
    /// The log no longer holds every version from the base on (or the server would not read
    /// that far back).
    case gone
    /// A version from the base on is a tombstone: deleted (and created again) since the base.
    case recreated
    /// The data at the base, and the paths changed version by version since (sorted).
    case known(base: JSONObject, changed: [FieldPath])
}
