import Foundation
import Synchronization

/// Runs one worker per connection at once, prints progress, samples the server over the
/// measured window, and adds up what the workers measured.
enum LoadRunner {
    struct Outcome<R: Sendable>: Sendable {
        var stats = WorkerStats()
        var results: [R] = []
        var failures: [String] = []
        /// Seconds of the measured window (the warm-up excluded).
        var seconds: Double = 0
        /// The server at the start of the run, before any connection (for its baseline RSS).
        var atStart: ProcessSample?
        /// The server at the start and the end of the measured window.
        var before: ProcessSample?
        var after: ProcessSample?
        /// Operations counted between `before` and `after`.
        var sampledOps = 0
    }

    /// What the CPU sampler saw: the server and the op count at the start of the measured
    /// window and, if the window ended before the workers did, at its end.
    private struct Samples: Sendable {
        var before: ProcessSample?
        var opsBefore = 0
        var after: ProcessSample?
        var opsAfter = 0
    }

    private enum Child<R: Sendable>: Sendable {
        case worker(Result<(WorkerStats, R), any Error>)
        case samples(Samples)
        case progress
    }

    /// Runs `workers` workers (worker `index` gets its index) and the progress line; `span`
    /// says when the measured window starts and ends (by default, `window`'s).
    static func run<R: Sendable>(
        options: LoadOptions,
        workers: Int,
        window: RunWindow,
        span: MeasuredSpan? = nil,
        counters: LiveCounters,
        worker: @escaping @Sendable (Int) async throws -> (WorkerStats, R)
    ) async -> Outcome<R> {
        var outcome = Outcome<R>()
        if let problem = OpenFileLimit.problem(connections: workers) {
            outcome.failures.append(problem)
            outcome.stats.errors = 1
            return outcome
        }
        let span = span ?? MeasuredSpan(window)
        outcome.atStart = options.serverPID.flatMap(ProcessSample.read(pid:))
        let started = monotonicNanos()
        var samples = Samples()
        await withTaskGroup(of: Child<R>.self) { group in
            for index in 0..<workers {
                group.addTask {
                    do { return .worker(.success(try await worker(index))) } catch { return .worker(.failure(error)) }
                }
            }
            if let pid = options.serverPID {
                group.addTask { .samples(await sample(pid: pid, span: span, counters: counters)) }
            }
            if options.progress {
                group.addTask {
                    await progress(window: window, span: span, counters: counters)
                    return .progress
                }
            }
            var remaining = workers
            while remaining > 0, let child = await group.next() {
                switch child {
                case .worker(.success(let (stats, value))):
                    remaining -= 1
                    outcome.stats.add(stats)
                    outcome.results.append(value)
                case .worker(.failure(let error)):
                    remaining -= 1
                    outcome.stats.errors += 1
                    outcome.failures.append("\(error)")
                case .samples(let taken):
                    samples = taken
                case .progress:
                    break
                }
            }
            // The sampler and the progress line stop when cancelled; the sampler still reports.
            group.cancelAll()
            while let child = await group.next() {
                if case .samples(let taken) = child { samples = taken }
            }
        }
        let ended = monotonicNanos()
        if samples.before != nil, samples.after == nil {
            samples.after = options.serverPID.flatMap(ProcessSample.read(pid:))
            samples.opsAfter = counters.ops.load(ordering: .relaxed)
        }
        outcome.before = samples.before
        outcome.after = samples.after
        outcome.sampledOps = samples.opsAfter - samples.opsBefore
        let bounds = span.bounds ?? (window.measureStart, window.deadline)
        let windowEnd = window.ops == nil ? min(ended, bounds.end) : ended
        let windowStart = max(bounds.start, started)
        outcome.seconds = Double(windowEnd > windowStart ? windowEnd - windowStart : 0) / 1e9
        return outcome
    }

    /// Sleeps until `time` (monotonic nanoseconds) or for at most `limit` nanoseconds.
    private static func sleep(until time: UInt64, limit: UInt64 = 50_000_000) async throws {
        let now = monotonicNanos()
        guard time > now else { return }
        try await Task.sleep(nanoseconds: Swift.min(time - now, limit))
    }

    /// Samples the server when the measured window starts and when it ends; returns early
    /// (with what it has) when cancelled because the workers are done.
    private static func sample(pid: Int32, span: MeasuredSpan, counters: LiveCounters) async -> Samples {
        var samples = Samples()
        do {
            while span.isWarmingUp() {
                try await sleep(until: span.bounds?.start ?? .max)
            }
            samples.opsBefore = counters.ops.load(ordering: .relaxed)
            samples.before = ProcessSample.read(pid: pid)
            while let end = span.bounds?.end, monotonicNanos() < end {
                try await sleep(until: end)
            }
            samples.opsAfter = counters.ops.load(ordering: .relaxed)
            samples.after = ProcessSample.read(pid: pid)
        } catch {
            // Cancelled: the workers ended first.
        }
        return samples
    }

    /// Prints a line on stderr once a second until cancelled (the workers are done) or a
    /// minute past the run's deadline.
    private static func progress(window: RunWindow, span: MeasuredSpan, counters: LiveCounters) async {
        var last = 0
        var tick = 0
        while monotonicNanos() < (span.bounds?.end ?? window.deadline) + 60_000_000_000 {
            guard (try? await Task.sleep(for: .seconds(1))) != nil else { break }
            tick += 1
            let ops = counters.ops.load(ordering: .relaxed)
            let phase = span.isWarmingUp() ? " (warm-up)" : ""
            let line =
                "[\(tick)s]\(phase) \(ops - last) ops/s, \(ops) ops, \(counters.conflicts.load(ordering: .relaxed)) conflicts, \(counters.errors.load(ordering: .relaxed)) errors\n"
            FileHandle.standardError.write(Data(line.utf8))
            last = ops
        }
    }
}
