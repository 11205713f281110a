import Foundation

/// When a store's writer prunes idempotency keys past their retention (`StoredOutcome` is
/// the form their outcomes are kept in). Used by the writer alone, on its queue.
public struct IdempotencyClaims: Sendable {
    /// Keys are kept at least this long.
    public let retention: Duration
    /// Pruning runs at most this often.
    public static let pruneInterval: Int64 = 60_000
    private var lastPrune: Int64 = 0

    public init(retention: Duration) {
        self.retention = retention
    }

    /// Milliseconds since the Unix epoch.
    public func now() -> Int64 { Int64((Date().timeIntervalSince1970 * 1000).rounded(.down)) }

    /// The time before which keys are pruned, when a prune is due; nil otherwise.
    public mutating func cutoffIfDue() -> Int64? {
        let now = now()
        guard now - lastPrune >= Self.pruneInterval else { return nil }
        lastPrune = now
        let (seconds, attoseconds) = retention.components
        return now - seconds * 1000 - attoseconds / 1_000_000_000_000_000
    }
}
