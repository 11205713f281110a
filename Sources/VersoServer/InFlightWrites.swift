import Synchronization
import VersoEngine

/// One connection's writes queued in the engine and not yet answered.
///
/// A client may send writes without waiting for their acks (they then share group commits),
/// but every other reply must still come in request order and see those writes: such a
/// request first waits until the count is zero. The count is also capped, so a pipelining
/// client cannot queue writes without bound.
final class InFlightWrites: Sendable {
    /// Who the engine takes these writes from: they take turns with other connections' writes.
    let client: WriteClient
    private struct State {
        var count = 0
        /// The connection's reader, waiting for the count to drop below `limit`.
        var waiter: (limit: Int, continuation: CheckedContinuation<Void, Never>)?
    }

    private let state = Mutex(State())

    init(client: WriteClient) {
        self.client = client
    }

    /// A write was queued.
    func begin() {
        state.withLock { $0.count += 1 }
    }

    /// Counts a write about to be queued when fewer than `limit` are in flight, without waiting;
    /// false (counting nothing) when the limit is reached.
    func begin(ifBelow limit: Int) -> Bool {
        state.withLock { state in
            guard state.count < limit else { return false }
            state.count += 1
            return true
        }
    }

    /// A queued write was answered (or turned out not to be queued).
    func end() {
        let waiter = state.withLock { state -> CheckedContinuation<Void, Never>? in
            state.count -= 1
            guard let waiter = state.waiter, state.count < waiter.limit else { return nil }
            state.waiter = nil
            return waiter.continuation
        }
        waiter?.resume()
    }

    /// Returns once fewer than `limit` writes are in flight (`limit` 1: none). Only the
    /// connection's reader waits, so there is at most one waiter.
    func wait(untilBelow limit: Int) async {
        if state.withLock({ $0.count < limit }) { return }
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let ready = state.withLock { state -> Bool in
                if state.count < limit { return true }
                state.waiter = (limit, continuation)
                return false
            }
            if ready { continuation.resume() }
        }
    }
}
