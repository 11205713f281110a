import Foundation

/// Runs one worker per connection at once, prints progress, and adds up what they measured.
enum LoadRunner {
    struct Outcome<R: Sendable>: Sendable {
        var stats = WorkerStats()
        var results: [R] = []
        var failures: [String] = []
        var totalOps = 0
        var seconds: Double = 0
        var before: ProcessSample?
        var after: ProcessSample?
    }

    static func run<R: Sendable>(
        options: LoadOptions,
        workers: Int,
        window: RunWindow,
        counters: LiveCounters,
        worker: @escaping @Sendable (Int) async throws -> (WorkerStats, R)
    ) async -> Outcome<R> {
        var outcome = Outcome<R>()
        outcome.before = options.serverPID.flatMap(ProcessSample.read(pid:))
        let started = monotonicNanos()
        await withTaskGroup(of: Result<(WorkerStats, R), any Error>?.self) { group in
            for index in 0..<workers {
                group.addTask {
                    do { return .success(try await worker(index)) } catch { return .failure(error) }
                }
            }
            if options.progress {
                group.addTask {
                    var last = 0
                    var tick = 0
                    // Stops when cancelled (the workers are done) or at the run's deadline.
                    while monotonicNanos() < window.deadline + 60_000_000_000 {
                        guard (try? await Task.sleep(for: .seconds(1))) != nil else { break }
                        tick += 1
                        let ops = counters.ops.load(ordering: .relaxed)
                        let line = "[\(tick)s] \(ops - last) ops/s, \(ops) ops, \(counters.conflicts.load(ordering: .relaxed)) conflicts, \(counters.errors.load(ordering: .relaxed)) errors\n"
                        FileHandle.standardError.write(Data(line.utf8))
                        last = ops
                    }
                    return nil
                }
            }
            var remaining = workers
            while remaining > 0, let result = await group.next() {
                guard let result else { continue }
                remaining -= 1
                switch result {
                case .success(let (stats, value)):
                    outcome.stats.add(stats)
                    outcome.results.append(value)
                case .failure(let error):
                    outcome.stats.errors += 1
                    outcome.failures.append("\(error)")
                }
            }
            group.cancelAll()
        }
        let ended = monotonicNanos()
        outcome.after = options.serverPID.flatMap(ProcessSample.read(pid:))
        outcome.totalOps = counters.ops.load(ordering: .relaxed)
        let windowEnd = window.ops == nil ? min(ended, window.deadline) : ended
        let windowStart = max(window.measureStart, started)
        outcome.seconds = Double(windowEnd > windowStart ? windowEnd - windowStart : 0) / 1e9
        return outcome
    }
}
