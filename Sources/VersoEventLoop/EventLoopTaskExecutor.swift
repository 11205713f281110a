import NIOCore

/// Runs a task's nonisolated code on one event loop.
///
/// A task that prefers its channel's loop (`withTaskExecutorPreference`) writes to that channel
/// without a hop to another thread, and is resumed by an incoming message on the thread that
/// read it, without waking a thread of the global pool. Its work then shares the loop with the
/// channel's I/O, so it must not block.
public final class EventLoopTaskExecutor: TaskExecutor {
    public let eventLoop: any EventLoop

    public init(_ eventLoop: any EventLoop) { self.eventLoop = eventLoop }

    public func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        eventLoop.execute { job.runSynchronously(on: self.asUnownedTaskExecutor()) }
    }
}
