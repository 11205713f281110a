import Histogram
import Synchronization
import VersoCore

extension Scenarios {
    /// `subflood`: `options.connections` idle connections each hold `subscriptions` prefix
    /// subscriptions on prefixes no write touches, while `writers` connections do
    /// compare-and-set puts on keys of their own (closed loop, or open loop at `options.rate`):
    /// put latency and writes per second. Run it with `subscriptions` 0 for the baseline: what
    /// the same writes cost when the server routes each change past many subscriptions that
    /// do not match it. Writers start once every idle connection holds its subscriptions; the
    /// idle connections stay until the last writer is done.
    public static func subflood(_ options: LoadOptions, writers: Int, subscriptions: Int) async -> LoadReport {
        let counters = LiveCounters()
        let idle = options.connections
        let gate = SubscriberGate(scenario: "subflood", expected: idle, writers: writers)
        let writersLeft = Atomic<Int>(writers)
        let connectAllowance: UInt64 = 120_000_000_000
        let outer = RunWindow(options: options, now: monotonicNanos() + connectAllowance)
        let data = #""p":""# + padding(options.valueSize) + "\""
        let span = MeasuredSpan()
        let outcome = await LoadRunner.run(
            options: options,
            workers: idle + writers,
            window: outer,
            span: span,
            counters: counters
        ) { (index: Int) async throws -> (WorkerStats, Int) in
            if index < idle {
                return try await gate.subscriber(options, limit: connectAllowance) { wire in
                    // Sent all at once, then every reply read: they come in request order.
                    for sub in 0..<subscriptions {
                        let prefix = "load/\(options.runID)/idle/\(index)/\(sub)/"
                        try await wire.send(Request.subscribe(.prefix(prefix), since: nil, epoch: nil).encoded())
                    }
                    for _ in 0..<subscriptions {
                        let reply = try await wire.next()
                        guard ReplyScan.type(reply) == "subscribed" else {
                            throw LoadError("subflood: subscribe failed: \(reply.prefix(200))")
                        }
                    }
                    guard gate.markSubscribed() else { return (WorkerStats(), 0) }
                    while writersLeft.load(ordering: .acquiring) > 0 {
                        try await Task.sleep(for: .milliseconds(20))
                    }
                    return (WorkerStats(), 0)
                }
            }
            defer { writersLeft.subtract(1, ordering: .releasing) }
            let writer = index - idle
            let key = "load/\(options.runID)/subflood/\(writer)"
            return try await gate.writer(writer, options) { wire in
                let start = try await gate.waitForSubscribers(limit: connectAllowance)
                let window = RunWindow(options: options, now: start)
                span.publish(window)
                var stats = WorkerStats()
                var version: Int64 = 0
                var schedule = SendSchedule(rate: options.rate, connections: writers, index: writer, start: start)
                while window.mayStart(counters), let sent = try await schedule.nextSend(deadline: window.deadline) {
                    try await wire.send(put(key: key, base: version, data: data))
                    let reply = try await wire.next()
                    let end = monotonicNanos()
                    guard ReplyScan.type(reply) == "ack", let acked = ReplyScan.integer("version", in: reply) else {
                        throw LoadError("subflood: unexpected reply to a put: \(reply.prefix(200))")
                    }
                    version = acked
                    counters.ops.add(1, ordering: .relaxed)
                    if window.measures(end) {
                        stats.ops += 1
                        stats.latency.record(microseconds(sent, end))
                    }
                }
                return (stats, 0)
            }
        }
        var report = LoadReport(scenario: "subflood", latency: "put", options: options, outcome: outcome)
        report.connections = idle + writers
        report.setRate(target: options.rate, answered: outcome.stats.ops)
        report.extra["idle connections"] = "\(idle)"
        report.extra["prefix subscriptions held"] = "\(idle * subscriptions)"
        report.extra["writers"] = "\(writers)"
        return report
    }
}
