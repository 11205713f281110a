import Dispatch
import Synchronization
import NIOWebSocket

/// The open WebSocket connections, so shutdown can close every one of them, and the bytes they
/// hold for their clients, so the server's memory for them has a bound.
///
/// Each `Outbox` counts what it holds (queued, held, being written, or read for an answer and
/// not yet queued) in one atomic total as it changes. When that total, less what connections
/// already closing will free, passes `maxQueuedBytes`, the outboxes holding the most are closed
/// with 1008 until it is back under: the pass runs only then, on the registry's own queue (never
/// on the caller's path, which may be a writer publishing under the subscription hub's lock), so
/// the accounting costs two atomic additions per message.
final class ConnectionRegistry: Sendable {
    private struct State {
        var outboxes: [ObjectIdentifier: Outbox] = [:]
        var closing: (WebSocketErrorCode, String)?
    }

    private let state = Mutex(State())
    /// Most bytes all connections together may hold for their clients.
    let maxQueuedBytes: Int
    private let total = Atomic<Int>(0)
    /// The part of `total` held by outboxes that are closing (and will free it).
    private let closingTotal = Atomic<Int>(0)
    /// Whether a shedding pass is queued or running.
    private let shedding = Atomic<Bool>(false)
    private let shedQueue = DispatchQueue(label: "verso.connection-registry.shed")
    private let slowCloses = Atomic<Int>(0)

    init(maxQueuedBytes: Int = .max) {
        self.maxQueuedBytes = maxQueuedBytes
    }

    /// Adds a connection; when shutdown has begun it is asked to close at once.
    func add(_ outbox: Outbox) {
        let closing = state.withLock { state -> (WebSocketErrorCode, String)? in
            state.outboxes[ObjectIdentifier(outbox)] = outbox
            return state.closing
        }
        if let (code, reason) = closing { outbox.requestClose(code, reason: reason) }
    }

    /// Connections open now.
    var count: Int { state.withLock { $0.outboxes.count } }

    /// The most bytes waiting unread for any one client now (for metrics: it walks every
    /// connection).
    var largestUnread: Int {
        let outboxes = state.withLock { Array($0.outboxes.values) }
        return outboxes.reduce(0) { max($0, $1.unreadBytes) }
    }

    func remove(_ outbox: Outbox) {
        state.withLock { state in
            state.outboxes[ObjectIdentifier(outbox)] = nil
        }
        outbox.detach()
    }

    /// Asks every connection, present and future, to close with `code`; returns the ones open now.
    @discardableResult
    func closeAll(_ code: WebSocketErrorCode, reason: String) -> Set<ObjectIdentifier> {
        let outboxes = state.withLock { state -> [ObjectIdentifier: Outbox] in
            state.closing = (code, reason)
            return state.outboxes
        }
        for outbox in outboxes.values { outbox.requestClose(code, reason: reason) }
        return Set(outboxes.keys)
    }

    /// Asks the connections open now to close with `code` (later ones are not affected).
    func closeOpen(_ code: WebSocketErrorCode, reason: String) {
        let outboxes = state.withLock { $0.outboxes }
        for outbox in outboxes.values { outbox.requestClose(code, reason: reason) }
    }

    /// Whether any of `connections` is still open.
    func containsAny(of connections: Set<ObjectIdentifier>) -> Bool {
        state.withLock { state in connections.contains { state.outboxes[$0] != nil } }
    }

    // MARK: Bytes held for clients

    /// Bytes all connections hold for their clients now.
    var queuedBytes: Int { total.load(ordering: .relaxed) }

    /// Connections closed with 1008 so far, by either queue limit.
    var slowConnectionsClosed: Int { slowCloses.load(ordering: .relaxed) }

    /// Adds an outbox's change in bytes held (and in bytes held while closing); true when the
    /// total is now over the limit, and the caller must call `shedOverLimit` (outside its lock).
    func count(_ delta: Int, closing closingDelta: Int) -> Bool {
        if closingDelta != 0 { closingTotal.wrappingAdd(closingDelta, ordering: .relaxed) }
        guard delta != 0 else { return false }
        let now = total.wrappingAdd(delta, ordering: .relaxed).newValue
        return delta > 0 && now - closingTotal.load(ordering: .relaxed) > maxQueuedBytes
    }

    /// Counts a connection closed with 1008 by its own limit.
    func countSlowClose() {
        slowCloses.wrappingAdd(1, ordering: .relaxed)
    }

    /// Queues a pass that closes the connections holding the most bytes with 1008 until the
    /// total, less what closing connections will free, is within `maxQueuedBytes`. Returns at
    /// once; one pass is queued or running at a time, and a pass rechecks the total when done.
    func shedOverLimit() {
        guard shedding.compareExchange(expected: false, desired: true, ordering: .acquiring).exchanged else { return }
        shedQueue.async { [self] in
            while true {
                shedOnce()
                shedding.store(false, ordering: .releasing)
                // A total that went over while this pass ran found `shedding` set and returned.
                guard excess > 0,
                    shedding.compareExchange(expected: false, desired: true, ordering: .acquiring).exchanged
                else { return }
            }
        }
    }

    private var excess: Int {
        total.load(ordering: .relaxed) - closingTotal.load(ordering: .relaxed) - maxQueuedBytes
    }

    private func shedOnce() {
        while true {
            var excess = self.excess
            guard excess > 0 else { return }
            let outboxes = state.withLock { Array($0.outboxes.values) }
            let largest = outboxes.map { ($0, $0.openBytes) }.filter { $0.1 > 0 }.sorted { $0.1 > $1.1 }
            var closedAny = false
            for (outbox, bytes) in largest where excess > 0 {
                let reason =
                    "server memory limit: more than \(maxQueuedBytes) bytes queued for all clients, the most for this one"
                if outbox.shed(reason: reason) {
                    slowCloses.wrappingAdd(1, ordering: .relaxed)
                    excess -= bytes
                    closedAny = true
                }
            }
            if !closedAny { return }
        }
    }
}
