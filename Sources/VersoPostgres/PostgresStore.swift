import Logging
import PostgresNIO
import Synchronization
import VersoCore
import VersoEngine

/// A `RecordStore` in PostgreSQL that several servers share (`--store postgres://…`).
///
/// Writes go through one `PostgresWriter` per server; reads go through a pool of connections,
/// each read one statement (one consistent snapshot). Every server stamps its changes with its
/// writer id and follows the others' through the log (`logWindow`), woken by a `NOTIFY` sent
/// after each commit (outside the write transaction) and polling in case one is lost.
public final class PostgresStore: SharedRecordStore {
    private let configuration: PostgresStoreConfiguration
    private let logger: Logger
    private let client: PostgresClient
    private let writer: PostgresWriter
    /// Set once by `open`.
    private let opened = Mutex<(info: StoreInfo, writerID: Int64)?>(nil)
    private let tasks = Mutex<[Task<Void, Never>]>([])
    private let callbacks = Mutex(Callbacks())
    private let notifier: CommitNotifier
    /// Texts to broadcast, sent one at a time in order.
    private let broadcasts: (stream: AsyncStream<String>, continuation: AsyncStream<String>.Continuation)

    /// The channel servers NOTIFY on after a commit.
    static let channel = "verso_commits"
    /// The channel of `broadcast`.
    static let broadcastChannel = "verso_broadcast"

    public init(configuration: PostgresStoreConfiguration, logger: Logger) throws {
        self.configuration = configuration
        self.logger = logger
        let client = PostgresClient(configuration: try configuration.pool(), backgroundLogger: logger)
        self.client = client
        let notifier = CommitNotifier(client: client)
        self.notifier = notifier
        self.writer = PostgresWriter(configuration: configuration, logger: logger) { notifier.notify() }
        self.broadcasts = AsyncStream.makeStream(bufferingPolicy: .bufferingNewest(4096))
    }

    public var writerID: Int64 { opened.withLock { $0?.writerID ?? 0 } }

    public var pollInterval: Duration { configuration.pollInterval }

    public func notifyCommits(_ hint: @escaping @Sendable () -> Void) {
        callbacks.withLock { $0.hint = hint }
    }

    public func broadcast(_ text: String) {
        broadcasts.continuation.yield(text)
    }

    public func receiveBroadcasts(_ receive: @escaping @Sendable (String) -> Void) {
        callbacks.withLock { $0.receive = receive }
    }

    /// Sends the broadcasts in order, each its own NOTIFY on a pooled connection.
    private func sendBroadcasts() async {
        for await text in broadcasts.stream {
            _ = try? await client.query("SELECT pg_notify(\(Self.broadcastChannel), \(text))")
        }
    }

    public func open() async throws -> StoreInfo {
        let client = client
        tasks.withLock { $0.append(Task { await client.run() }) }
        let info: StoreInfo
        do {
            info = try await writer.open()
        } catch {
            throw PostgresStoreError(
                "could not open the PostgreSQL store at \(configuration.description): \(String(reflecting: error))"
            )
        }
        let writerID = await writer.writerID
        opened.withLock { $0 = (info, writerID) }
        tasks.withLock {
            $0.append(Task { await self.listen() })
            $0.append(Task { await self.sendBroadcasts() })
        }
        logger.info(
            "opened store",
            metadata: [
                "verso.store": "\(configuration.description)", "verso.epoch": "\(info.epoch)",
                "verso.seq": "\(info.lastSeq)", "verso.writer": "\(writerID)",
            ]
        )
        return info
    }

    /// Listens for other servers' commits on a connection of its own (a pooled one may be
    /// closed when idle), connecting again after any failure; each (re)connection is also a
    /// hint, since notifications sent meanwhile were lost.
    private func listen() async {
        var attempt = 0
        while !Task.isCancelled {
            attempt += 1
            do {
                let connection = try await PostgresConnection.connect(
                    configuration: try configuration.connection(name: "verso-listener"),
                    id: 0,
                    logger: logger
                )
                defer { Task { try? await connection.close() } }
                try await connection.listen(on: Self.channel) { commits in
                    try await connection.listen(on: Self.broadcastChannel) { texts in
                        attempt = 0
                        callbacks.withLock { $0 }.hint?()
                        try await withThrowingTaskGroup(of: Void.self) { group in
                            group.addTask { for try await _ in commits { self.callbacks.withLock { $0 }.hint?() } }
                            group.addTask {
                                for try await text in texts { self.callbacks.withLock { $0 }.receive?(text.payload) }
                            }
                            // Either ending (the connection failed) ends both.
                            try await group.next()
                            group.cancelAll()
                        }
                    }
                }
            } catch {
                if attempt == 1 {
                    logger.warning(
                        "lost the PostgreSQL notification connection; reconnecting (other servers' changes arrive by polling meanwhile)",
                        metadata: ["verso.error": "\(String(reflecting: error))"]
                    )
                }
            }
            try? await Task.sleep(for: .milliseconds(min(2000, 100 * attempt)))
        }
    }

    public func commit(_ commands: [WriteCommand]) async throws -> [CommandOutcome] {
        try await commit(commands, budget: .unlimited).outcomes
    }

    public func commit(_ commands: [WriteCommand], budget: CommitBudget) async throws -> BudgetedCommit {
        try await writer.commit(commands, budget: budget)
    }

    /// Runs a read, answering `StoreUnavailableError` when the database cannot be reached within
    /// the read timeout.
    private func read<T: Sendable>(_ body: @escaping @Sendable (PostgresClient) async throws -> T) async throws -> T {
        let client = client
        let timeout = configuration.readTimeout
        return try await withThrowingTaskGroup(of: T?.self) { group in
            group.addTask { try await body(client) }
            group.addTask {
                try await Task.sleep(for: timeout)
                return nil
            }
            defer { group.cancelAll() }
            do {
                guard let first = try await group.next(), let value = first else {
                    throw StoreUnavailableError("PostgreSQL did not answer within \(timeout)")
                }
                return value
            } catch let error as PSQLError where error.code != .server {
                throw StoreUnavailableError("PostgreSQL cannot be reached (\(error.code))")
            }
        }
    }

    private static func bytes(_ text: String?) -> [UInt8]? { text.map { Array($0.utf8) } }

    public func record(_ key: String) async throws -> StoredRecord? {
        try await read { client in
            for try await (version, data) in try await client.query(
                "SELECT version, data FROM verso_records WHERE key = \(key)"
            ).decode((Int64, String?).self) {
                return StoredRecord(version: version, data: Self.bytes(data))
            }
            return nil
        }
    }

    /// `prefix` as a LIKE pattern matching every key that starts with it.
    private static func likePattern(_ prefix: String) -> String {
        var pattern = ""
        for character in prefix.unicodeScalars {
            if character == "\\" || character == "%" || character == "_" { pattern.unicodeScalars.append("\\") }
            pattern.unicodeScalars.append(character)
        }
        return pattern + "%"
    }

    public func list(prefix: String, after: String?, limit: Int, maxBytes: Int) async throws -> [RecordSnapshot] {
        let pattern = Self.likePattern(prefix)
        let limit = Int64(min(limit, Int(Int32.max)))
        return try await read { client in
            var records: [RecordSnapshot] = []
            var bytes = 0
            for try await (key, version, data) in try await client.query(
                """
                SELECT key, version, data FROM verso_records
                WHERE key LIKE \(pattern) AND key > \(after ?? "") AND data IS NOT NULL
                ORDER BY key LIMIT \(limit)
                """
            ).decode((String, Int64, String).self) {
                let record = RecordSnapshot(key: key, version: version, data: Array(data.utf8))
                records.append(record)
                bytes += record.encodedSizeBound
                if bytes > maxBytes { break }
            }
            return records
        }
    }

    public func snapshot(_ filter: SubscriptionFilter) async throws -> StoreSnapshot {
        let query: PostgresQuery
        switch filter {
        case .prefix(let prefix):
            let pattern = Self.likePattern(prefix)
            query = """
                SELECT m.last_seq, r.key, r.version, r.data FROM verso_meta m
                LEFT JOIN verso_records r ON r.key LIKE \(pattern) AND r.data IS NOT NULL
                ORDER BY r.key
                """
        case .keys(let keys):
            let names = keys.map(\.string)
            query = """
                SELECT m.last_seq, r.key, r.version, r.data FROM verso_meta m
                LEFT JOIN verso_records r ON r.key = ANY(\(names)) AND r.data IS NOT NULL
                ORDER BY r.key
                """
        }
        return try await read { client in
            var seq: Int64 = 0
            var records: [RecordSnapshot] = []
            for try await (lastSeq, key, version, data) in try await client.query(query)
                .decode((Int64, String?, Int64?, String?).self)
            {
                seq = lastSeq
                if let key, let version, let data {
                    records.append(RecordSnapshot(key: key, version: version, data: Array(data.utf8)))
                }
            }
            return StoreSnapshot(records: records, seq: seq)
        }
    }

    /// The log's rows after `seq` (at most `maxSeqs` seqs of them when given) with its bounds,
    /// in one statement.
    private func logRows(after seq: Int64, maxSeqs: Int64?) async throws -> LogWindow {
        let through = maxSeqs.map { seq + $0 } ?? .max
        return try await read { client in
            var window = LogWindow(changes: [], lastSeq: 0, prunedThrough: 0)
            for try await row in try await client.query(
                """
                SELECT m.last_seq, m.pruned_through, c.seq, c.key, c.version, c.data, c.at_ms, c.author, c.writer
                FROM verso_meta m
                LEFT JOIN verso_changes c ON c.seq > \(seq) AND c.seq <= \(through)
                ORDER BY c.seq, c.key
                """
            ).decode((Int64, Int64, Int64?, String?, Int64?, String?, Int64?, String?, Int64?).self) {
                window.lastSeq = row.0
                window.prunedThrough = row.1
                guard let changeSeq = row.2, let key = row.3, let version = row.4, let writer = row.8 else { continue }
                let change = Change(
                    seq: changeSeq,
                    key: key,
                    version: version,
                    data: Self.bytes(row.5),
                    at: row.6,
                    by: row.7
                )
                window.changes.append(LoggedChange(change: change, writer: writer))
            }
            return window
        }
    }

    public func logWindow(after seq: Int64, maxSeqs: Int64) async throws -> LogWindow {
        try await logRows(after: seq, maxSeqs: maxSeqs)
    }

    public func changes(after seq: Int64, matching filter: SubscriptionFilter) async throws -> ChangeReplay? {
        let window = try await logRows(after: seq, maxSeqs: nil)
        guard seq >= window.prunedThrough, seq <= window.lastSeq else { return nil }
        let changes = window.changes.lazy.map(\.change).filter { filter.matches($0.key) }
        return ChangeReplay(changes: Array(changes), throughSeq: window.lastSeq)
    }

    public func history(of key: String, before: Int64?, limit: Int, maxBytes: Int) async throws -> StoredHistory? {
        let below = before ?? .max
        let rows = Int64(min(limit, 1000) + 2)
        return try await read { client in
            // The current version, then the log's and the kept ones below `before`, newest first.
            var page: HistoryPage?
            for try await (source, version, seq, at, by, data) in try await client.query(
                """
                SELECT * FROM (
                    SELECT DISTINCT ON (version) source, version, seq, at_ms, author, data FROM (
                        SELECT 0 AS source, version, seq, at_ms, author, data FROM verso_records WHERE key = \(key)
                        UNION ALL
                        SELECT 1, version, seq, at_ms, author, data FROM verso_changes
                        WHERE key = \(key) AND version < \(below)
                        UNION ALL
                        SELECT 2, version, seq, at_ms, author, data FROM verso_kept_versions
                        WHERE key = \(key) AND version < \(below)
                    ) v ORDER BY version DESC, source
                ) d ORDER BY source <> 0, version DESC LIMIT \(rows)
                """
            ).decode((Int32, Int64, Int64, Int64?, String?, String?).self) {
                if page == nil {
                    guard source == 0 else { return nil }
                    page = HistoryPage(limit: limit, maxBytes: maxBytes, wanted: min(version, below - 1))
                }
                guard var current = page, !current.isFull else { break }
                if current.wants(version) {
                    current.append(StoredVersion(version: version, seq: seq, at: at, by: by, data: Self.bytes(data)))
                } else if version < current.wanted {
                    break
                }
                page = current
            }
            return page?.result
        }
    }

    public func logBounds() async throws -> (prunedThrough: Int64, lastSeq: Int64) {
        try await read { client in
            for try await (pruned, last) in try await client.query(
                "SELECT pruned_through, last_seq FROM verso_meta WHERE id = 1"
            ).decode((Int64, Int64).self) {
                return (pruned, last)
            }
            throw PostgresStoreError("the store's verso_meta row is missing")
        }
    }

    public func close() async {
        broadcasts.continuation.finish()
        await writer.close()
        for task in tasks.withLock({ $0 }) { task.cancel() }
    }
}

/// Sends `NOTIFY verso_commits` after commits, on a pooled connection and in its own
/// transaction (never inside a write transaction, where it would take a cluster-wide lock at
/// commit); at most one at a time, the commits meanwhile covered by one more.
final class CommitNotifier: Sendable {
    private let client: PostgresClient
    private let state = Mutex<(sending: Bool, again: Bool)>((false, false))

    init(client: PostgresClient) {
        self.client = client
    }

    func notify() {
        let start = state.withLock { state -> Bool in
            if state.sending {
                state.again = true
                return false
            }
            state.sending = true
            return true
        }
        guard start else { return }
        let client = client
        Task {
            while true {
                _ = try? await client.query("SELECT pg_notify(\(PostgresStore.channel), '')")
                let more = state.withLock { state -> Bool in
                    if state.again {
                        state.again = false
                        return true
                    }
                    state.sending = false
                    return false
                }
                if !more { return }
            }
        }
    }
}

/// What the engine asked the store to call, in a struct: a closure read out of a `Mutex` as
/// itself goes through `withLock`'s generic inout access, which wraps it in a reabstraction
/// thunk each time and writes the wrapped one back, so every call would walk a chain that
/// grows by each read (measured: a sixth of a busy server's CPU, and a stack that grows without
/// bound). A struct's fields keep their own representation.
private struct Callbacks: Sendable {
    /// Another server may have committed.
    var hint: (@Sendable () -> Void)?
    /// A broadcast's text arrived.
    var receive: (@Sendable (String) -> Void)?
}
