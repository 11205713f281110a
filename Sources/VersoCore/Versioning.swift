/// What a write operation does to its key.
public enum WriteAction: Sendable, Equatable {
    /// Replace the whole object.
    case put(JSONObject)
    /// Replace the whole object with data that came written exactly as the server writes data
    /// (`Request.parse(utf8:)`): stored as it came, parsed only if a merge needs its members.
    /// Equal to the `put` of the same object.
    case putEncoded(CanonicalObject)
    /// Apply an RFC 7396 merge patch (always an object).
    case patch(JSONObject)
    /// Leave a tombstone.
    case delete
    /// Change nothing, only require the version (a txn op).
    case check

    public static func == (lhs: WriteAction, rhs: WriteAction) -> Bool {
        switch (lhs, rhs) {
        case (.put(let left), .put(let right)): left == right
        case (.putEncoded(let left), .putEncoded(let right)): left == right
        case (.put(let object), .putEncoded(let encoded)), (.putEncoded(let encoded), .put(let object)):
            encoded.object == object
        case (.patch(let left), .patch(let right)): left == right
        case (.delete, .delete), (.check, .check): true
        default: false
        }
    }
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
        case .putEncoded(let data):
            return .accept(RecordState(version: nextVersion, encoded: data))
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

extension VersionDecision {
    /// The key's new state when the decision changes it (accepted, or merged); nil otherwise.
    public var newState: RecordState? {
        switch self {
        case .accept(let next), .merged(let next): next
        default: nil
        }
    }

    /// Whether the write was merged into a newer record (`"merge": "fields"`).
    public var isMerged: Bool {
        if case .merged = self { true } else { false }
    }
}

/// A write refused because its base was stale, as its conflict reports it.
public struct StaleBaseRefusal: Sendable, Equatable {
    /// The operation's position in its command.
    public var index: Int
    public var base: Int64
    /// Why a `"merge": "fields"` write could not be merged (its changed paths are in `changed`).
    public var merge: MergeConflict?
    /// The paths changed since the base, when known.
    public var changed: [FieldPath]?

    @usableFromInline
    init(index: Int, base: Int64, merge: MergeConflict?, changed: [FieldPath]?) {
        self.index = index
        self.base = base
        self.merge = merge
        self.changed = changed
    }
}

/// What the decisions on one command's operations (applied all or nothing) come to.
public enum CommandVerdict: Sendable, Equatable {
    /// One or more bases were stale: nothing is applied.
    case staleBases([StaleBaseRefusal])
    /// A delete of a key that does not exist or is already deleted: nothing is applied.
    case notFound(index: Int, current: RecordState?)
    /// Every operation holds; `changesAny` when at least one changes its key (the command then
    /// takes a seq).
    case apply(changesAny: Bool)
}

extension VersioningRules {
    /// What `decisions` (one per operation of a command, in order) come to: stale bases first
    /// (every one, each with the paths `plainChanged(index, base)` finds for a plain conflict),
    /// then the first not-found delete, else the command applies.
    ///
    /// Inlinable so that it is specialized for the caller's collection: unspecialized, its
    /// generic iteration allocates per call.
    @inlinable
    public static func verdict(
        _ decisions: some Collection<(operation: WriteOperation, decision: VersionDecision)>,
        plainChanged: (_ index: Int, _ base: Int64) throws -> [FieldPath]?
    ) rethrows -> CommandVerdict {
        var refusals: [StaleBaseRefusal] = []
        for (index, entry) in decisions.enumerated() {
            guard case .base(let base) = entry.operation.precondition else { continue }
            switch entry.decision {
            case .conflict:
                refusals.append(
                    StaleBaseRefusal(index: index, base: base, merge: nil, changed: try plainChanged(index, base))
                )
            case .mergeRefused(_, var refusal):
                let changed = refusal.changed
                refusal.changed = nil
                refusals.append(StaleBaseRefusal(index: index, base: base, merge: refusal, changed: changed))
            default:
                continue
            }
        }
        if !refusals.isEmpty { return .staleBases(refusals) }
        for (index, entry) in decisions.enumerated() {
            if case .notFound(let current) = entry.decision { return .notFound(index: index, current: current) }
        }
        return .apply(changesAny: decisions.contains { $0.decision.newState != nil })
    }
}

extension ConflictDetail {
    /// The conflict `refusal` reports on `key`, with the key's stored state `current` (nil when
    /// it never existed) as the reply carries it: the stored encoding as it is.
    public init(key: String, refusal: StaleBaseRefusal, current: StoredVersion?) {
        self.init(
            key: key,
            base: refusal.base,
            version: current?.version ?? 0,
            data: current?.data,
            deleted: current != nil && current?.data == nil
        )
        merge = refusal.merge
        changed = refusal.changed
        at = current?.at
        by = current?.by
    }
}
