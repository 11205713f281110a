import NIOCore

/// Runs a task's nonisolated code on one event loop: a load worker that prefers its
/// connection's loop writes to its channel without a hop to another thread, and a reply
/// resumes it on the thread that read it, without waking a thread of the global pool.
final class EventLoopTaskExecutor: TaskExecutor {
    let eventLoop: any EventLoop

    init(_ eventLoop: any EventLoop) { self.eventLoop = eventLoop }

    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        eventLoop.execute { job.runSynchronously(on: self.asUnownedTaskExecutor()) }
    }
}
