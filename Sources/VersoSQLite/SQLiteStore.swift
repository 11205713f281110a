import Dispatch
import Foundation
import Logging
import Synchronization
import VersoCore
import VersoEngine

/// Settings of the SQLite store.
public struct SQLiteStoreConfiguration: Sendable {
    /// How hard a commit is pushed to disk.
    public enum Durability: String, Sendable, CaseIterable {
        /// fsync at every commit (`synchronous=FULL`): an acknowledged write survives power loss.
        case full
        /// No fsync at commit (`synchronous=NORMAL` in WAL mode): survives a crash of the server
        /// process, may lose the last commits on power loss.
        case normal
    }

    /// The folder holding `verso.sqlite` (created with mode 0700 if missing; the database files are 0600).
    public var directory: String
    /// The writer connection's page cache, in KiB (readers keep SQLite's default of 2 MB).
    static let writerCacheKiB = 32 << 10
    public var durability: Durability
    /// How many changes the log keeps for `subscribe` with `since`; older ones are pruned.
    public var historyLimit: Int64
    /// How many versions of each key are kept once the log has pruned them, for `history`
    /// (0: a key's history reaches back only as far as the log).
    public var keepVersions: Int64
    /// Connections used for reads, each on its own thread.
    public var readerCount: Int
    /// How long idempotency keys are kept at least; older ones are pruned.
    public var idempotencyRetention: Duration

    public init(
        directory: String,
        durability: Durability = .full,
        historyLimit: Int64 = 100_000,
        keepVersions: Int64 = 0,
        readerCount: Int = 2,
        idempotencyRetention: Duration = .seconds(24 * 3600)
    ) {
        self.directory = directory
        self.durability = durability
        self.historyLimit = historyLimit
        self.keepVersions = keepVersions
        self.readerCount = max(1, readerCount)
        self.idempotencyRetention = idempotencyRetention
    }

    /// The database file.
    public var databasePath: String { (directory as NSString).appendingPathComponent("verso.sqlite") }
}

/// Why the SQLite store failed.
public struct SQLiteStoreError: Error, Sendable, CustomStringConvertible {
    public let description: String
    init(_ description: String) { self.description = description }
}

/// A `RecordStore` in one SQLite database in WAL mode.
///
/// One connection writes, on its own serial queue, where the engine's writer task also runs
/// (`writerExecutor`), so a batch is committed with no hop between threads; reads use separate
/// connections, each on its own serial queue, and see a consistent snapshot while writes go on.
public final class SQLiteStore: RecordStore {
    private let configuration: SQLiteStoreConfiguration
    private let logger: Logger
    /// The writer connection's thread; the engine's writer task runs there too.
    private let writer = SerialQueueExecutor(label: "verso.sqlite.writer")
    private var writerQueue: DispatchQueue { writer.queue }
    private let readerQueues: [DispatchQueue]
    /// Connections, made in `open`. Set once before any other call and read-only afterwards.
    private let connections = Mutex<Connections?>(nil)
    private let nextReader = Atomic<Int>(0)

    private struct Connections {
        let writer: SQLiteWriter
        let readers: [SQLiteConnection]
    }

    public init(configuration: SQLiteStoreConfiguration, logger: Logger) {
        self.configuration = configuration
        self.logger = logger
        self.readerQueues = (0..<configuration.readerCount).map { DispatchQueue(label: "verso.sqlite.reader.\($0)") }
    }

    private func onQueue<T: Sendable>(
        _ queue: DispatchQueue,
        _ body: @escaping @Sendable () throws -> T
    ) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            queue.async {
                continuation.resume(with: Result { try body() })
            }
        }
    }

    private func opened() throws -> Connections {
        guard let connections = connections.withLock({ $0 }) else { throw SQLiteStoreError("the store is not open") }
        return connections
    }

    /// Runs `body` with a reader connection on that reader's queue.
    private func read<T: Sendable>(_ body: @escaping @Sendable (SQLiteConnection) throws -> T) async throws -> T {
        let connections = try opened()
        let index = nextReader.wrappingAdd(1, ordering: .relaxed).oldValue % readerQueues.count
        let connection = connections.readers[index]
        return try await onQueue(readerQueues[index]) { try body(connection) }
    }

    public func open() async throws -> StoreInfo {
        let configuration = configuration
        let logger = logger
        let (writer, readers, info) = try await onQueue(writerQueue) {
            () throws -> (SQLiteWriter, [SQLiteConnection], StoreInfo) in
            if let warning = try DataFolder.prepare(
                directory: configuration.directory,
                databasePath: configuration.databasePath
            ) {
                logger.warning("\(warning)")
            }
            let connection = try SQLiteConnection(path: configuration.databasePath, readOnly: false)
            try connection.execute("PRAGMA journal_mode=WAL")
            try connection.execute("PRAGMA synchronous=\(configuration.durability == .full ? "FULL" : "NORMAL")")
            try connection.execute("PRAGMA foreign_keys=ON")
            // The writer's page cache: large enough to keep the pages a large record's rewrite
            // touches (its old overflow chain is read to free it), which the default 2 MB is
            // not; the hog benchmark in BENCHMARKS.md measured the difference.
            try connection.execute("PRAGMA cache_size=-\(SQLiteStoreConfiguration.writerCacheKiB)")
            try SQLiteSchema.migrate(connection)
            let writer = try SQLiteWriter(
                connection: connection,
                historyLimit: configuration.historyLimit,
                keepVersions: configuration.keepVersions,
                idempotencyRetention: configuration.idempotencyRetention
            )
            let readers = try (0..<configuration.readerCount).map { _ in
                let reader = try SQLiteConnection(path: configuration.databasePath, readOnly: true)
                try reader.execute("PRAGMA query_only=ON")
                return reader
            }
            return (writer, readers, writer.info)
        }
        connections.withLock { $0 = Connections(writer: writer, readers: readers) }
        logger.info(
            "opened store",
            metadata: [
                "verso.database": "\(configuration.databasePath)", "verso.epoch": "\(info.epoch)",
                "verso.seq": "\(info.lastSeq)",
            ]
        )
        return info
    }

    public func commit(_ commands: [WriteCommand]) async throws -> [CommandOutcome] {
        try await commit(commands, budget: .unlimited).outcomes
    }

    /// Commits on the writer's queue: right there when called on it (from the engine's writer
    /// task, which prefers `writerExecutor`), else by a hop to it and back.
    public func commit(_ commands: [WriteCommand], budget: CommitBudget) async throws -> BudgetedCommit {
        let sqliteWriter = try opened().writer
        if writer.isCurrent { return try sqliteWriter.commit(commands, budget: budget) }
        return try await onQueue(writerQueue) { try sqliteWriter.commit(commands, budget: budget) }
    }

    public var writerExecutor: (any TaskExecutor)? { writer }

    /// Whether the caller runs on the writer's queue (for tests).
    var isOnWriterQueue: Bool { writer.isCurrent }

    public func record(_ key: String) async throws -> StoredRecord? {
        try await read { connection in try SQLiteQueries.stored(key, in: connection) }
    }

    public func list(prefix: String, after: String?, limit: Int, maxBytes: Int) async throws -> [RecordSnapshot] {
        try await read { connection in
            try SQLiteQueries.scan(prefix: prefix, after: after, limit: limit, maxBytes: maxBytes, in: connection)
        }
    }

    public func snapshot(_ filter: SubscriptionFilter) async throws -> StoreSnapshot {
        try await read { connection in
            try SQLiteQueries.inReadTransaction(connection) {
                let seq = try SQLiteQueries.lastSeq(connection).lastSeq
                let records: [RecordSnapshot]
                switch filter {
                case .prefix(let prefix):
                    records = try SQLiteQueries.scan(prefix: prefix, after: nil, limit: Int.max, in: connection)
                case .keys(let keys):
                    records = try keys.sorted().compactMap { key in
                        try SQLiteQueries.snapshot(of: key.string, in: connection)
                    }
                }
                return StoreSnapshot(records: records, seq: seq)
            }
        }
    }

    public func changes(after seq: Int64, matching filter: SubscriptionFilter) async throws -> ChangeReplay? {
        try await read { connection in
            try SQLiteQueries.inReadTransaction(connection) {
                let (lastSeq, prunedThrough) = try SQLiteQueries.lastSeq(connection)
                guard seq >= prunedThrough, seq <= lastSeq else { return nil }
                let changes = try connection.withStatement(
                    "SELECT seq, key, version, data, at_ms, author FROM changes WHERE \(ChangeLog.seqAfter(1)) ORDER BY id"
                ) { statement in
                    try statement.bind(1, seq)
                    var changes: [Change] = []
                    while try statement.step() {
                        let key = statement.text(1)
                        guard filter.matches(key) else { continue }
                        changes.append(
                            Change(
                                seq: statement.int64(0),
                                key: key,
                                version: statement.int64(2),
                                data: statement.bytes(3),
                                at: statement.optionalInt64(4),
                                by: statement.optionalText(5)
                            )
                        )
                    }
                    return changes
                }
                return ChangeReplay(changes: changes, throughSeq: lastSeq)
            }
        }
    }

    public func history(of key: String, before: Int64?, limit: Int, maxBytes: Int) async throws -> StoredHistory? {
        try await read { connection in
            try SQLiteQueries.inReadTransaction(connection) {
                try SQLiteQueries.history(of: key, before: before, limit: limit, maxBytes: maxBytes, in: connection)
            }
        }
    }

    public func logBounds() async throws -> (prunedThrough: Int64, lastSeq: Int64) {
        try await read { connection in
            let (lastSeq, prunedThrough) = try SQLiteQueries.lastSeq(connection)
            return (prunedThrough, lastSeq)
        }
    }

    public func close() async {
        _ = try? await onQueue(writerQueue) { [self] in
            self.connections.withLock { $0 = nil }
        }
        for queue in readerQueues { queue.sync {} }
    }
}
