import Foundation
import Histogram
import Synchronization
extension Scenarios {
    /// `connections`: opens `connections` idle connections, each subscribed to one shared key,
    /// reads the server's RSS (with `serverPID`) before and once all are subscribed, then makes
    /// one change to the key and measures how long it takes to reach every connection.
    public static func connections(_ options: LoadOptions) async -> LoadReport {
        let counters = LiveCounters()
        let count = options.connections
        let gate = SubscriberGate(scenario: "connections", expected: count, writers: 1)
        let connectAllowance: UInt64 = 120_000_000_000
        let outer = RunWindow(options: options, now: monotonicNanos() + connectAllowance)
        let key = "load/\(options.runID)/idle"
        let data = #""p":""# + padding(options.valueSize - 24) + "\""
        let outcome = await LoadRunner.run(options: options, workers: count + 1, window: outer, counters: counters) {
            (index: Int) async throws -> (WorkerStats, Int) in
            if index < count {
                return try await gate.subscriber(options, limit: connectAllowance) { wire in
                    var stats = WorkerStats()
                    try await wire.subscribe(to: key, scenario: "connections")
                    guard gate.markSubscribed() else { return (stats, 0) }
                    // Ends at the one change, or when the connection ends.
                    while true {
                        let message = try await wire.next()
                        let now = monotonicNanos()
                        guard ReplyScan.type(message) == "update", let sent = ReplyScan.integer("t", in: message)
                        else { continue }
                        stats.ops = 1
                        stats.latency.record(microseconds(UInt64(sent), now))
                        counters.ops.add(1, ordering: .relaxed)
                        return (stats, 0)
                    }
                }
            }
            return try await gate.writer(0, options) { wire in
                // If a subscriber failed, the change still goes out, to end those that subscribed.
                var waitFailure: (any Error)?
                do { _ = try await gate.waitForSubscribers(limit: connectAllowance) } catch { waitFailure = error }
                let rss = options.serverPID.flatMap(ProcessSample.read(pid:))?.rssBytes ?? 0
                try await wire.send(put(key: key, base: 0, data: data + #","t":"# + String(monotonicNanos())))
                let reply = try await wire.next()
                guard ReplyScan.type(reply) == "ack" else {
                    throw LoadError("connections: unexpected reply to the put: \(reply.prefix(200))")
                }
                if let waitFailure { throw waitFailure }
                return (WorkerStats(), rss)
            }
        }
        var report = LoadReport(scenario: "connections", latency: "delivery", options: options, outcome: outcome)
        report.extra["deliveries expected"] = "\(count)"
        report.extra["time to deliver to all ms"] = String(format: "%.3f", Double(report.max) / 1000)
        report.opsPerSecond = report.max > 0 ? Double(report.ops) / (Double(report.max) / 1e6) : 0
        if report.ops != count { report.failures.append("the change reached \(report.ops) of \(count) connections") }
        if let before = outcome.atStart, let subscribed = outcome.results.max(), subscribed > 0 {
            report.extra["server RSS before MiB"] = String(format: "%.1f", Double(before.rssBytes) / 1_048_576)
            report.extra["server RSS all subscribed MiB"] = String(format: "%.1f", Double(subscribed) / 1_048_576)
            report.extra["server RSS per connection KiB"] = String(
                format: "%.1f",
                Double(subscribed - before.rssBytes) / 1024 / Double(count)
            )
        }
        report.serverCPUMicrosPerOp = nil
        return report
    }
}
