import Synchronization
import VersoCore

/// Feeds the subscription hub strictly in seq order when several servers write one shared
/// store (Protocol.md section 5's guarantees, on every server).
///
/// This server's own commits arrive from its writer after their acks were queued
/// (`committedLocally`); everyone else's are read from the shared log by the engine's follower
/// (`RecordEngine.runFollower`, one task).
/// A seq is published once, after every seq before it. A change of this server's read from the
/// log before its writer reported it waits for that report, so a writing connection still gets
/// its ack before the update.
final class ChangeSequencer: Sendable {
    private struct State {
        /// The last seq published to the hub.
        var published: Int64
        /// Own commits not yet published (a seq before them is not), by seq.
        var pending: [Int64: [Change]] = [:]
        /// The follower stopped at a seq of ours its writer had not reported yet.
        var followerWaits = false
    }

    private let hub: SubscriptionHub
    private let state: Mutex<State>
    /// Rung when an own commit waits for seqs before it, so the follower reads them now.
    let doorbell = Doorbell()

    init(hub: SubscriptionHub, published: Int64) {
        self.hub = hub
        self.state = Mutex(State(published: published))
    }

    /// The last seq published to the hub.
    var publishedSeq: Int64 { state.withLock { $0.published } }

    /// Publishes an own commit's changes (one or more seqs, in order) once every seq before
    /// them is published; returns the last seq published.
    @discardableResult
    func committedLocally(_ changes: [Change]) -> Int64 {
        let (published, waiting) = state.withLock { state -> (Int64, Bool) in
            var start = changes.startIndex
            while start < changes.endIndex {
                let seq = changes[start].seq
                let end = changes[start...].firstIndex { $0.seq != seq } ?? changes.endIndex
                if seq > state.published { state.pending[seq] = Array(changes[start..<end]) }
                start = end
            }
            publishPending(&state)
            defer { state.followerWaits = false }
            return (state.published, !state.pending.isEmpty || state.followerWaits)
        }
        if waiting { doorbell.ring() }
        return published
    }

    /// Publishes the pending own commits that follow the published seq.
    private func publishPending(_ state: inout State) {
        while let next = state.pending.removeValue(forKey: state.published + 1) {
            hub.publish(next)
            state.published += 1
        }
    }

    /// What `publish(window:)` found.
    enum WindowResult: Equatable {
        /// Published what it could; `published` is the last seq now published.
        case advanced(published: Int64)
        /// The log no longer holds the seqs after the published one: subscribers cannot be
        /// brought up to date change by change. The published seq moved to the log's end.
        case fellBehind(published: Int64, lastSeq: Int64)
    }

    /// Publishes the changes of `window` (read after the published seq) in seq order, stopping
    /// at a seq of this server's writer (`me`) that it has not reported yet.
    func publish(_ window: LogWindow, me: Int64) -> WindowResult {
        state.withLock { state in
            publishPending(&state)
            if window.prunedThrough > state.published {
                // Seqs after ours are gone: nothing can fill the gap.
                state.published = max(state.published, window.lastSeq)
                state.pending = state.pending.filter { $0.key > state.published }
                return .fellBehind(published: state.published, lastSeq: window.lastSeq)
            }
            var index = window.changes.startIndex
            while index < window.changes.endIndex {
                let seq = window.changes[index].change.seq
                let end = window.changes[index...].firstIndex { $0.change.seq != seq } ?? window.changes.endIndex
                defer { index = end }
                if seq <= state.published { continue }
                guard seq == state.published + 1 else { break }
                if window.changes[index].writer == me {
                    // Ours: published from the writer's report, never from the log.
                    guard let own = state.pending.removeValue(forKey: seq) else {
                        state.followerWaits = true
                        break
                    }
                    hub.publish(own)
                } else {
                    hub.publish(window.changes[index..<end].map(\.change))
                }
                state.published = seq
                publishPending(&state)
            }
            return .advanced(published: state.published)
        }
    }
}

/// Wakes one waiting task, or the next one to wait; a ring while nobody waits is kept.
final class Doorbell: Sendable {
    private struct State {
        var rung = false
        var waiter: CheckedContinuation<Void, Never>?
    }

    private let state = Mutex(State())

    func ring() {
        let waiter = state.withLock { state -> CheckedContinuation<Void, Never>? in
            guard let waiter = state.waiter else {
                state.rung = true
                return nil
            }
            state.waiter = nil
            return waiter
        }
        waiter?.resume()
    }

    /// Returns once rung (at once when rung since the last wait) or after `timeout`.
    func wait(timeout: Duration) async {
        let timer = Task { [self] in
            try? await Task.sleep(for: timeout)
            if !Task.isCancelled { ring() }
        }
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let now = state.withLock { state -> Bool in
                if state.rung {
                    state.rung = false
                    return true
                }
                state.waiter = continuation
                return false
            }
            if now { continuation.resume() }
        }
        timer.cancel()
    }
}
