import NIOCore
import Synchronization

/// The outboxes of one event loop that have messages to write, flushed together in one
/// event-loop task.
///
/// A change fanned out to a thousand subscribers would otherwise cost a thousand
/// `eventLoop.execute` calls (a closure, a lock and possibly a wake-up each); this costs one per
/// loop and per turn of it. The flushes of a pass share the loop's `FlushScratch`, so a pass
/// that writes small messages allocates nothing.
final class LoopFlushQueue: Sendable {
    private struct State {
        var outboxes: [Outbox] = []
        var scheduled = false
        /// Callers of `holdingFlushes` running now: while any is, `add` schedules no flush.
        var holds = 0
    }

    private let eventLoop: any EventLoop
    private let state = Mutex(State())
    private let scratch: NIOLoopBoundBox<FlushScratch>

    private init(eventLoop: any EventLoop) {
        self.eventLoop = eventLoop
        self.scratch = .makeBoxSendingValue(FlushScratch(), eventLoop: eventLoop)
    }

    /// Every loop's queue, by loop, and the same queues as a list (read once per batch by
    /// `holdingFlushes`: taking the array is a retain, where listing the dictionary's values
    /// allocated).
    private static let queues = Mutex<(byLoop: [ObjectIdentifier: LoopFlushQueue], all: [LoopFlushQueue])>(([:], []))

    /// The queue of `eventLoop`, the same for every channel on that loop.
    static func of(_ eventLoop: any EventLoop) -> LoopFlushQueue {
        queues.withLock { queues in
            let id = ObjectIdentifier(eventLoop)
            if let queue = queues.byLoop[id] { return queue }
            let queue = LoopFlushQueue(eventLoop: eventLoop)
            queues.byLoop[id] = queue
            queues.all.append(queue)
            return queue
        }
    }

    /// Has `outbox` flushed on the loop soon, with every other outbox added before that runs
    /// (once `holdingFlushes` returns, when one is running).
    func add(_ outbox: Outbox) {
        let schedule = state.withLock { state -> Bool in
            state.outboxes.append(outbox)
            guard !state.scheduled, state.holds == 0 || state.outboxes.count >= Self.heldOutboxLimit else {
                return false
            }
            state.scheduled = true
            return true
        }
        if schedule { eventLoop.execute { self.flushAll() } }
    }

    /// Most outboxes `add` leaves waiting for a flush while `holdingFlushes` runs: past them the
    /// loop starts writing (a change fanned out to many subscribers is written while the rest
    /// are queued, not after).
    static let heldOutboxLimit = 64

    /// Runs `body` (the delivery of one commit's acks and updates, from the writer's thread)
    /// with no flush scheduled by what it adds (unless `heldOutboxLimit` outboxes wait on one
    /// loop), then schedules one per loop that has outboxes to flush. So a batch of writes
    /// wakes each event loop once, rather than once per ack the loop's flush did not get to
    /// before the writer queued the next one.
    static func holdingFlushes(_ body: () -> Void) {
        let all = queues.withLock { $0.all }
        for queue in all { queue.state.withLock { $0.holds += 1 } }
        body()
        for queue in all {
            let schedule = queue.state.withLock { state -> Bool in
                state.holds -= 1
                guard !state.scheduled, state.holds == 0, !state.outboxes.isEmpty else { return false }
                state.scheduled = true
                return true
            }
            if schedule { queue.eventLoop.execute { queue.flushAll() } }
        }
    }

    private func flushAll() {
        let scratch = self.scratch.value
        // The list taken here and the one left for the next pass trade places, keeping their room.
        var outboxes: [Outbox] = []
        swap(&outboxes, &scratch.outboxes)
        state.withLock { state in
            state.scheduled = false
            swap(&state.outboxes, &outboxes)
        }
        for outbox in outboxes { outbox.flushOnLoop(scratch) }
        outboxes.removeAll(keepingCapacity: outboxes.capacity <= FlushScratch.keptCount)
        scratch.outboxes = outboxes
    }
}

/// What the flushes of one event loop reuse from pass to pass: the list of outboxes to flush,
/// a spare message queue and the buffer frames are encoded into. Touched only on that loop.
final class FlushScratch {
    /// Most entries an emptied list or queue keeps room for; a larger one is let go.
    static let keptCount = 1024
    /// Most bytes the frame buffer keeps once a flush has written more.
    static let keptFrameBytes = 256 << 10

    var outboxes: [Outbox] = []
    /// An empty queue an outbox takes in exchange for the one it flushes.
    var messages: [OutgoingMessage] = []
    var frames = ByteBuffer()
}
