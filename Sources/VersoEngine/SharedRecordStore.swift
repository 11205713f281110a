import VersoCore

/// A store that cannot be reached now (its database is down or unreachable): the request
/// changed nothing and may be retried; clients are answered `unavailable`.
public struct StoreUnavailableError: Error, Sendable, CustomStringConvertible {
    public let description: String

    public init(_ description: String) {
        self.description = description
    }
}

/// A change as the shared log holds it, with the writer that committed it.
public struct LoggedChange: Sendable, Equatable {
    public var change: Change
    /// The id of the server process (`SharedRecordStore.writerID`) whose writer committed it.
    public var writer: Int64

    public init(change: Change, writer: Int64) {
        self.change = change
        self.writer = writer
    }
}

/// A window of the shared change log, read in one consistent view.
public struct LogWindow: Sendable, Equatable {
    /// The changes after the seq asked for, in seq (then key) order: every seq from the one after
    /// it up to the last listed is complete (a transaction's changes are never split).
    public var changes: [LoggedChange]
    /// The last committed seq in the store.
    public var lastSeq: Int64
    /// Changes up to this seq are no longer in the log.
    public var prunedThrough: Int64

    public init(changes: [LoggedChange], lastSeq: Int64, prunedThrough: Int64) {
        self.changes = changes
        self.lastSeq = lastSeq
        self.prunedThrough = prunedThrough
    }
}

/// A store that several servers write at once (PostgreSQL). Each server commits its own writes
/// and learns of the others' by reading the log in seq order: seqs are gap-free and in commit
/// order, so every consistent read of the log sees an unbroken prefix of them.
public protocol SharedRecordStore: RecordStore {
    /// This server process's writer id, stamped on every change it commits; another process
    /// (including an earlier run of this server) never has the same one. Valid after `open()`.
    var writerID: Int64 { get }

    /// The changes after `seq`, at most `maxSeqs` seqs of them, with the log's bounds.
    func logWindow(after seq: Int64, maxSeqs: Int64) async throws -> LogWindow

    /// How often the log is read when no notification says another server committed
    /// (notifications can be lost).
    var pollInterval: Duration { get }

    /// Calls `hint` whenever another server may have committed, until the store closes.
    func notifyCommits(_ hint: @escaping @Sendable () -> Void)

    /// Sends `text` to every server sharing the store (this one included), after the texts sent
    /// before it; best effort: a server not listening then never gets it.
    func broadcast(_ text: String)

    /// Calls `receive` with each text a server broadcast, in the order each server sent them.
    func receiveBroadcasts(_ receive: @escaping @Sendable (String) -> Void)
}
