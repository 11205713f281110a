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

/// One operation on one key.
public struct WriteOperation: Sendable, Equatable {
    public var key: String
    public var action: WriteAction
    public var precondition: WritePrecondition

    public init(key: String, action: WriteAction, precondition: WritePrecondition) {
        self.key = key
        self.action = action
        self.precondition = precondition
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
}
