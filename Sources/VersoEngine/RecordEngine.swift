import Logging
import Synchronization
import VersoCore

/// Settings of the record engine.
public struct EngineConfiguration: Sendable {
    /// Whether `"force": true` writes are accepted (otherwise they get `forbidden`).
    public var allowForce: Bool
    /// Most commands committed in one transaction.
    public var maxBatchSize: Int
    /// Most writes of one connection taken into one transaction.
    public var maxWritesPerClient: Int
    /// Once every waiting connection's oldest write is in a transaction, further writes join
    /// it only while the work done so far (bytes of record data read, merged, written or
    /// sent back in conflicts) is below this.
    public var batchWorkLimit: Int
    /// Told of each commit: how many commands it decided, how long it took, and how long of that
    /// making it durable took, when the store says (for metrics).
    public var onCommit: (@Sendable (_ commands: Int, _ duration: Duration, _ sync: Duration?) -> Void)?
    /// Told when this server fell so far behind a shared store's log that the changes its
    /// subscribers miss are pruned: their connections must be closed so that they resume from
    /// the store (with a replay or a reset). Never called with a store of one server's own.
    public var onFellBehind: (@Sendable () -> Void)?
    /// Runs the delivery of one commit's results (each write's `onCommitted`, then its changes
    /// published to subscribers) inside `deliver`, so that whatever the deliveries queue can be
    /// handed on once for the whole batch when `deliver` returns rather than once per write.
    /// Must call `deliver` exactly once, at once.
    public var deliveringBatch: (@Sendable (_ deliver: () -> Void) -> Void)?

    public init(
        allowForce: Bool = false,
        maxBatchSize: Int = 1024,
        maxWritesPerClient: Int = 64,
        batchWorkLimit: Int = 256 << 10
    ) {
        self.allowForce = allowForce
        self.maxBatchSize = maxBatchSize
        self.maxWritesPerClient = maxWritesPerClient
        self.batchWorkLimit = batchWorkLimit
    }
}

/// The result of a write as the client sees it.
public enum WriteResult: Sendable, Equatable {
    case outcome(CommandOutcome)
    /// Refused or failed before or during commit; nothing was applied.
    case refused(RequestError)
}

/// How a new subscription starts.
public struct SubscriptionStart: Sendable {
    /// The subscription's id.
    public var id: Int64
    /// The seq the starting view is at: live updates follow from after it.
    public var seq: Int64
    /// True when `since` could not be replayed and `snapshots` hold the current state instead.
    public var reset: Bool
    /// Current records (when subscribing without `since`, or on reset).
    public var snapshots: [RecordSnapshot]
    /// Changes replayed after `since`.
    public var replay: [Change]
}

/// The record engine: accepts writes into a group-commit pipeline, reads, and subscriptions.
///
/// Writes from every connection queue up while the previous batch commits and are committed
/// together in one store transaction (group commit); a client hears `ack` only after its batch
/// is durable. One writer task drains the queue, so changes are published in seq order. No
/// lock is held across an await.
///
/// Connections take turns (`FairQueue`): every transaction decides the oldest waiting write
/// of each connection, and one connection's further writes only while the transaction's
/// work stays under `batchWorkLimit`, so one connection pipelining costly writes cannot make
/// every other connection's writes wait for all of its own. Turns are fair in the writer's
/// time too: a connection whose writes took more than its share of a commit's time sits out
/// the next commits while other connections wait, until theirs have made up the difference.
public final class RecordEngine: Sendable {
    private struct PendingWrite {
        let command: WriteCommand
        let onCommitted: @Sendable (WriteResult) -> Void
    }

    private struct Pipeline {
        /// Debts are in nanoseconds of the writer's time; under a tenth of a millisecond is
        /// rounding, not a turn taken.
        var pending = FairQueue<PendingWrite>(tolerance: 100_000)
        var nextClient: UInt64 = 0
        var writerWaiting: CheckedContinuation<Void, Never>?
        var accepting = true
        var drainedWaiters: [CheckedContinuation<Void, Never>] = []
        var writerFinished = false
    }

    public let configuration: EngineConfiguration
    private let store: any RecordStore
    private let logger: Logger
    private let hub = SubscriptionHub()
    private let pipeline = Mutex(Pipeline())
    private let info: StoreInfo
    private let lastSeq: Atomic<Int64>
    private let committing = Atomic<Int>(0)
    /// With a store several servers share: orders their changes and this server's into the hub.
    private let sequencer: ChangeSequencer?
    /// The store, when several servers share it.
    private let shared: (any SharedRecordStore)?

    /// Opens `store` and makes an engine over it.
    public init(store: any RecordStore, configuration: EngineConfiguration = .init(), logger: Logger) async throws {
        self.store = store
        self.configuration = configuration
        self.logger = logger
        self.info = try await store.open()
        self.lastSeq = Atomic(info.lastSeq)
        self.shared = store as? any SharedRecordStore
        self.sequencer = shared == nil ? nil : ChangeSequencer(hub: hub, published: info.lastSeq)
    }

    /// The store's epoch.
    public var epoch: String { info.epoch }

    /// The seq of the last committed change.
    public var currentSeq: Int64 { lastSeq.load(ordering: .acquiring) }

    /// Number of live subscriptions.
    public var subscriptionCount: Int { hub.count }

    /// Updates and presence messages sent to subscriptions so far.
    public var deliveryCount: Int { hub.deliveryCount }

    /// The seqs the change log holds: changes after `prunedThrough`, up to `lastSeq`.
    public func logBounds() async throws(RequestError) -> (prunedThrough: Int64, lastSeq: Int64) {
        try await storeCall("metrics") { try await store.logBounds() }
    }

    /// Whether the engine still takes requests.
    public var isAccepting: Bool { pipeline.withLock { $0.accepting } }

    /// Writes queued and not yet taken into a batch by the writer (for tests and monitoring).
    public var queuedWriteCount: Int { pipeline.withLock { $0.pending.count } }

    /// Writes in the batch the writer is committing now (0 between batches; for tests).
    public var committingWriteCount: Int { committing.load(ordering: .acquiring) }

    private static let shuttingDown = RequestError(.unavailable, "the server is shutting down; reconnect and retry")

    /// The writer's time for a batch (in nanoseconds) split between the clients whose writes
    /// were decided, in proportion to the work each write took.
    static func shares(
        of elapsed: Duration,
        among clients: some Sequence<WriteClient>,
        work: [Int]
    ) -> [WriteClient: Int] {
        let total = work.reduce(0, +)
        guard total > 0 else { return [:] }
        let nanoseconds = Double(elapsed.components.seconds) * 1e9 + Double(elapsed.components.attoseconds) / 1e9
        var shares: [WriteClient: Int] = [:]
        for (client, cost) in zip(clients, work) {
            shares[client, default: 0] += Int(nanoseconds * Double(cost) / Double(total))
        }
        return shares
    }

    // MARK: Writes

    /// A new identity for the writes of one connection.
    public func newClient() -> WriteClient {
        pipeline.withLock { state in
            state.nextClient += 1
            return WriteClient(id: state.nextClient)
        }
    }

    /// Queues `command` for the next group commit and returns at once, without waiting for it.
    ///
    /// Returns nil once the command is queued: `onCommitted` then runs exactly once, after the
    /// commit and before the change is published to subscribers, so a reply it queues reaches
    /// the client before the `update` for the same change. Commands of one `client` are
    /// decided, and `onCommitted` called, in the order they were queued.
    ///
    /// Returns the refusal instead, queueing nothing and never calling `onCommitted`, when the
    /// command cannot be taken: a forced write on a server that refuses them, or shutdown.
    public func enqueue(
        _ command: WriteCommand,
        from client: WriteClient,
        onCommitted: @escaping @Sendable (WriteResult) -> Void
    ) -> RequestError? {
        if !configuration.allowForce, command.operations.contains(where: { $0.precondition == .force }) {
            return RequestError(.forbidden, "forced writes are disabled on this server (start it with --allow-force)")
        }
        let (accepted, writer) = pipeline.withLock { state -> (Bool, CheckedContinuation<Void, Never>?) in
            guard state.accepting else { return (false, nil) }
            state.pending.append(PendingWrite(command: command, onCommitted: onCommitted), from: client)
            defer { state.writerWaiting = nil }
            return (true, state.writerWaiting)
        }
        writer?.resume()
        return accepted ? nil : Self.shuttingDown
    }

    /// The next batch to commit; nil once the engine stopped accepting and everything is committed.
    private func nextBatch() async -> FairQueue<PendingWrite>.Batch? {
        while true {
            enum Step { case batch(FairQueue<PendingWrite>.Batch), finished, wait }
            let step = pipeline.withLock { state -> Step in
                if !state.pending.isEmpty {
                    return .batch(
                        state.pending.nextBatch(
                            maxCount: configuration.maxBatchSize,
                            perClient: configuration.maxWritesPerClient
                        )
                    )
                }
                return state.accepting ? .wait : .finished
            }
            switch step {
            case .batch(let batch): return batch
            case .finished: return nil
            case .wait:
                await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                    let resumeNow = pipeline.withLock { state -> Bool in
                        if !state.pending.isEmpty || !state.accepting { return true }
                        state.writerWaiting = continuation
                        return false
                    }
                    if resumeNow { continuation.resume() }
                }
            }
        }
    }

    /// Runs the writer until `stopAccepting()` has been called and every queued write is decided,
    /// on the store's `writerExecutor` when it has one.
    public func runWriter() async {
        await withTaskExecutorPreference(store.writerExecutor) { await writeBatches() }
    }

    private func writeBatches() async {
        let clock = ContinuousClock()
        while let batch = await nextBatch() {
            let results: [WriteResult]
            let budget = CommitBudget(guaranteed: batch.firstRound, workLimit: configuration.batchWorkLimit)
            committing.store(batch.items.count, ordering: .releasing)
            let started = clock.now
            var work: [Int] = []
            var sync: Duration?
            do {
                let decided = try await store.commit(batch.items.map(\.element.command), budget: budget)
                precondition(
                    decided.outcomes.count >= min(batch.firstRound, batch.items.count)
                        && decided.outcomes.count <= batch.items.count,
                    "the store decided \(decided.outcomes.count) of \(batch.items.count) commands"
                )
                results = decided.outcomes.map { .outcome($0) }
                work = decided.work
                sync = decided.syncDuration
            } catch {
                logger.error(
                    "commit failed; the batch was not applied",
                    metadata: ["verso.error": "\(error)", "verso.batch": "\(batch.items.count)"]
                )
                results = Array(
                    repeating: .refused(
                        RequestError(
                            .internal,
                            "the write could not be saved (\(error)); nothing was applied, retry later"
                        )
                    ),
                    count: batch.items.count
                )
            }
            committing.store(0, ordering: .releasing)
            configuration.onCommit?(results.count, clock.now - started, sync)
            let costs = Self.shares(of: clock.now - started, among: batch.items.lazy.map(\.client), work: work)
            pipeline.withLock { state in
                if results.count < batch.items.count {
                    // Not looked at: back to the front of their connections' queues, in order.
                    state.pending.putBack(batch.items[results.count...])
                }
                state.pending.charge(costs, sharedBy: batch.sharers)
            }
            if let deliveringBatch = configuration.deliveringBatch {
                deliveringBatch { deliver(results, of: batch) }
            } else {
                deliver(results, of: batch)
            }
        }
        let waiters = pipeline.withLock { state -> [CheckedContinuation<Void, Never>] in
            state.writerFinished = true
            defer { state.drainedWaiters = [] }
            return state.drainedWaiters
        }
        for waiter in waiters { waiter.resume() }
    }

    /// Hands each write of `batch` its result, and publishes each committed change.
    private func deliver(_ results: [WriteResult], of batch: FairQueue<PendingWrite>.Batch) {
        for (write, result) in zip(batch.items.lazy.map(\.element), results) {
            guard case .outcome(let outcome) = result, let (changes, seq) = outcome.committed else {
                write.onCommitted(result)
                continue
            }
            // The seq first: a request its reply lets through (a `hello` after the ack)
            // must see this change's seq as committed.
            if let sequencer {
                lastSeq.max(seq, ordering: .releasing)
                write.onCommitted(result)
                sequencer.committedLocally(changes)
            } else {
                lastSeq.store(seq, ordering: .releasing)
                write.onCommitted(result)
                hub.publish(changes)
            }
        }
    }

    /// Refuses new requests from now on (with `unavailable`); queued writes still commit.
    public func stopAccepting() {
        let writer = pipeline.withLock { state -> CheckedContinuation<Void, Never>? in
            state.accepting = false
            defer { state.writerWaiting = nil }
            return state.writerWaiting
        }
        writer?.resume()
        sequencer?.doorbell.ring()
    }

    /// Most seqs of the shared log read at once.
    static let followWindow: Int64 = 1024

    /// With a store several servers share, publishes the other servers' changes to this
    /// server's subscribers, in seq order with this server's own, until the writer has stopped.
    /// Returns at once with any other store.
    public func runFollower() async {
        guard let sequencer, let shared else { return }
        let doorbell = sequencer.doorbell
        shared.notifyCommits { doorbell.ring() }
        shared.receiveBroadcasts { [hub] text in
            for notice in PresenceNotice.notices(in: text) where notice.server != shared.writerID {
                let owner = PresenceOwner.remote(server: notice.server, session: notice.presence.session)
                hub.setPresence(notice.presence, on: notice.key, by: owner, now: .now)
            }
        }
        var failing = false
        var presenceRefreshed = ContinuousClock.now
        while !hasDrained {
            if ContinuousClock.now - presenceRefreshed >= Self.presenceRefresh {
                presenceRefreshed = .now
                refreshSharedPresence(shared)
            }
            do {
                let before = sequencer.publishedSeq
                let window = try await shared.logWindow(after: before, maxSeqs: Self.followWindow)
                if failing {
                    logger.info("reading the shared change log again")
                    failing = false
                }
                switch sequencer.publish(window, me: shared.writerID) {
                case .advanced(let published):
                    lastSeq.max(published, ordering: .releasing)
                    // More committed than this window held: read on at once.
                    if published > before, published < window.lastSeq { continue }
                case .fellBehind(let published, let last):
                    lastSeq.max(published, ordering: .releasing)
                    logger.error(
                        "this server fell behind the shared change log, which no longer holds the changes its subscribers miss; closing their connections so that they resume",
                        metadata: ["verso.seq": "\(published)", "verso.lastSeq": "\(last)"]
                    )
                    configuration.onFellBehind?()
                    continue
                }
            } catch {
                if !failing {
                    logger.error(
                        "could not read the shared change log; retrying",
                        metadata: ["verso.error": "\(error)"]
                    )
                }
                failing = true
            }
            await doorbell.wait(timeout: shared.pollInterval)
        }
    }

    /// Waits until the writer has decided every queued write and stopped.
    public func waitUntilDrained() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let done = pipeline.withLock { state -> Bool in
                if state.writerFinished { return true }
                state.drainedWaiters.append(continuation)
                return false
            }
            if done { continuation.resume() }
        }
    }

    /// Whether the writer has stopped after committing every queued write.
    public var hasDrained: Bool { pipeline.withLock { $0.writerFinished } }

    /// Closes the store. Call after the writer has stopped.
    public func close() async {
        await store.close()
    }

    // MARK: Reads

    private func ensureAccepting() throws(RequestError) {
        guard isAccepting else { throw Self.shuttingDown }
    }

    private func storeCall<T>(_ what: String, _ body: () async throws -> T) async throws(RequestError) -> T {
        try ensureAccepting()
        do {
            return try await body()
        } catch let error as StoreUnavailableError {
            throw RequestError(.unavailable, "\(what) failed: \(error); retry later")
        } catch {
            logger.error("store read failed", metadata: ["verso.operation": "\(what)", "verso.error": "\(error)"])
            throw RequestError(.internal, "\(what) failed: \(error)")
        }
    }

    /// The current state of `key` (nil when it never existed).
    public func record(_ key: String) async throws(RequestError) -> StoredRecord? {
        try await storeCall("get") { try await store.record(key) }
    }

    /// Most bytes of records in one `list` page (by their `encodedSizeBound`), unless its first
    /// record alone is larger: a page stops early, with a `next` cursor, rather than pass it.
    public static let maxListPageBytes = 8 << 20

    /// One page of live records under `prefix` after `after`, and the `next` cursor: at most
    /// `limit` records and at most `maxListPageBytes` of them, but always at least one.
    public func list(
        prefix: String,
        after: String?,
        limit: Int
    ) async throws(RequestError) -> (records: [RecordSnapshot], next: String?) {
        let maxBytes = Self.maxListPageBytes
        let page = try await storeCall("list") {
            try await store.list(prefix: prefix, after: after, limit: limit + 1, maxBytes: maxBytes)
        }
        var count = 0
        var bytes = 0
        for record in page.prefix(limit) {
            bytes += record.encodedSizeBound
            if count > 0, bytes > maxBytes { break }
            count += 1
        }
        // The store stopped early (by count or by bytes) when more records may follow.
        let storeFull = page.count > limit || page.reduce(0) { $0 + $1.encodedSizeBound } > maxBytes
        let records = Array(page.prefix(count))
        return (records, count < page.count || storeFull ? records.last?.key : nil)
    }

    /// One page of `key`'s versions below `before`, newest first (Protocol.md 3.9): at most
    /// `limit`, and at most `maxListPageBytes` of data unless the first version alone is larger.
    /// Nil when the key never existed.
    public func history(of key: String, before: Int64?, limit: Int) async throws(RequestError) -> StoredHistory? {
        try await storeCall("history") {
            try await store.history(of: key, before: before, limit: limit, maxBytes: Self.maxListPageBytes)
        }
    }

    // MARK: Subscriptions

    /// Starts a subscription delivering to `sink`.
    ///
    /// The subscription buffers live changes until `activate` is called, so the caller can send
    /// the `subscribed` reply and the starting records first. With `since`, the changes after it
    /// are replayed; when that is impossible (log pruned, `since` ahead of the store, or `epoch`
    /// not this store's), `reset` is true and current snapshots are returned instead.
    ///
    /// With `progress`, the subscription gets a `progress` bookmark every `progress` while no
    /// update is sent to it (once `sendProgress` is called about once a second).
    public func subscribe(
        _ filter: SubscriptionFilter,
        since: Int64?,
        epoch: String?,
        progress: Duration? = nil,
        sink: any MessageSink
    ) async throws(RequestError) -> SubscriptionStart {
        try ensureAccepting()
        let id = hub.register(filter, sink: sink, progress: progress)
        do {
            if let since, epoch == nil || epoch == info.epoch {
                if let replay = try await store.changes(after: since, matching: filter) {
                    return SubscriptionStart(
                        id: id,
                        seq: replay.throughSeq,
                        reset: false,
                        snapshots: [],
                        replay: replay.changes
                    )
                }
            }
            let snapshot = try await store.snapshot(filter)
            return SubscriptionStart(
                id: id,
                seq: snapshot.seq,
                reset: since != nil,
                snapshots: snapshot.records,
                replay: []
            )
        } catch {
            hub.remove(id, ownedBy: sink)
            if error is StoreUnavailableError {
                throw RequestError(.unavailable, "subscribe failed: \(error); retry later")
            }
            logger.error("store read failed", metadata: ["verso.operation": "subscribe", "verso.error": "\(error)"])
            throw RequestError(.internal, "subscribe failed: \(error)")
        }
    }

    /// Switches a started subscription to live delivery (sending what it buffered meanwhile).
    public func activate(_ start: SubscriptionStart) {
        hub.activate(start.id, after: start.seq)
    }

    /// Sends the progress bookmarks that are due (see `subscribe`). Call about once a second.
    public func sendProgress() {
        hub.sendProgress(now: .now)
    }

    /// Sets (or, with a nil state, clears) a connection's presence on `key` and sends the change
    /// to the matching subscriptions of other connections (Protocol.md 5.1), on every server
    /// sharing the store. Nothing is stored.
    public func setPresence(_ presence: PresenceState, on key: String, by connection: ObjectIdentifier) {
        hub.setPresence(presence, on: key, by: .local(connection), now: .now)
        if let shared {
            let notice = PresenceNotice(server: shared.writerID, key: key, presence: presence)
            for text in PresenceNotice.broadcasts([notice]) { shared.broadcast(text) }
        }
    }

    /// How often a server tells the others sharing its store all of its connections' presence
    /// again, so that a server that started listening later, or lost a change, catches up.
    static let presenceRefresh: Duration = .seconds(5)
    /// Another server's presence not refreshed for this long is dropped (its server stopped).
    static let presenceExpiry: Duration = .seconds(15)

    /// Broadcasts this server's presence again and drops other servers' that went stale.
    private func refreshSharedPresence(_ shared: any SharedRecordStore) {
        let notices = hub.localPresence().map {
            PresenceNotice(server: shared.writerID, key: $0.key, presence: $0.presence)
        }
        for text in PresenceNotice.broadcasts(notices) { shared.broadcast(text) }
        hub.expireRemotePresence(before: .now - Self.presenceExpiry)
    }

    /// The presence set on `key`, one per connection, sorted by session.
    public func presence(on key: String) -> [PresenceState] {
        hub.presence(on: key)
    }

    /// Ends a subscription; false if `sink` has no subscription `id`.
    @discardableResult
    public func unsubscribe(_ id: Int64, sink: any MessageSink) -> Bool {
        hub.remove(id, ownedBy: sink)
    }
}
