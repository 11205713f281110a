import Dispatch

/// Runs a task's nonisolated code on one serial dispatch queue, and tells whether the caller
/// is on that queue already.
///
/// The SQLite writer's queue is one: the engine's writer task prefers it
/// (`RecordStore.writerExecutor`), so a batch is taken, committed and answered on that one
/// thread, with no hop to the queue and back per commit. Work on the queue runs one job at a
/// time, the task's jobs and other blocks alike, which is what keeps the writer connection to
/// one thread at a time.
final class SerialQueueExecutor: TaskExecutor {
    let queue: DispatchQueue
    private let key = DispatchSpecificKey<Void>()

    init(label: String) {
        queue = DispatchQueue(label: label)
        queue.setSpecific(key: key, value: ())
    }

    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        queue.async { job.runSynchronously(on: self.asUnownedTaskExecutor()) }
    }

    /// Whether the calling code runs on the queue (a block or a job of it).
    var isCurrent: Bool { DispatchQueue.getSpecific(key: key) != nil }
}
