import NIOCore
import Synchronization

/// The outboxes of one event loop that have messages to write, flushed together in one
/// event-loop task.
///
/// A change fanned out to a thousand subscribers would otherwise cost a thousand
/// `eventLoop.execute` calls (a closure, a lock and possibly a wake-up each); this costs one per
/// loop and per turn of it.
final class LoopFlushQueue: Sendable {
    private struct State {
        var outboxes: [Outbox] = []
        var scheduled = false
    }

    private let eventLoop: any EventLoop
    private let state = Mutex(State())

    private init(eventLoop: any EventLoop) {
        self.eventLoop = eventLoop
    }

    private static let queues = Mutex<[ObjectIdentifier: LoopFlushQueue]>([:])

    /// The queue of `eventLoop`, the same for every channel on that loop.
    static func of(_ eventLoop: any EventLoop) -> LoopFlushQueue {
        queues.withLock { queues in
            let id = ObjectIdentifier(eventLoop)
            if let queue = queues[id] { return queue }
            let queue = LoopFlushQueue(eventLoop: eventLoop)
            queues[id] = queue
            return queue
        }
    }

    /// Has `outbox` flushed on the loop soon, with every other outbox added before that runs.
    func add(_ outbox: Outbox) {
        let schedule = state.withLock { state -> Bool in
            state.outboxes.append(outbox)
            defer { state.scheduled = true }
            return !state.scheduled
        }
        if schedule { eventLoop.execute { self.flushAll() } }
    }

    private func flushAll() {
        let outboxes = state.withLock { state -> [Outbox] in
            state.scheduled = false
            defer { state.outboxes = [] }
            return state.outboxes
        }
        for outbox in outboxes { outbox.flushOnLoop() }
    }
}
