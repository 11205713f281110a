import Foundation
import Histogram
import Synchronization

extension Scenarios {
    /// `fanout`: `writers` connections each do puts on a key of their own (closed loop, or
    /// open loop at `options.rate` writes per second in all), stamping the send time (the
    /// intended one in an open loop) into the data; `subscribers` connections per key subscribe to it and
    /// measure write-to-delivery latency of every update. Writers start once all subscribers
    /// are subscribed; after the run each writer sends a last put marked `"z":1`, which ends
    /// its subscribers.
    public static func fanout(_ options: LoadOptions, writers: Int, subscribers: Int) async -> LoadReport {
        let counters = LiveCounters()
        let writes = LiveCounters()
        let gate = SubscriberGate(scenario: "fanout", expected: writers * subscribers, writers: writers)
        // The runner's own window only bounds the progress line; the writers set the real one.
        let connectAllowance: UInt64 = 120_000_000_000
        let outer = RunWindow(options: options, now: monotonicNanos() + connectAllowance)
        let data = #""p":""# + padding(options.valueSize - 24) + "\""
        let keys = (0..<writers).map { "load/\(options.runID)/fanout/\($0)" }
        let warmup = UInt64(options.warmup * 1e9)
        let span = MeasuredSpan()
        let outcome = await LoadRunner.run(
            options: options,
            workers: writers + writers * subscribers,
            window: outer,
            span: span,
            counters: counters
        ) { (index: Int) async throws -> (WorkerStats, Int) in
            if index >= writers {
                let key = keys[(index - writers) % writers]
                return try await gate.subscriber(options, limit: connectAllowance) { wire in
                    var stats = WorkerStats()
                    try await wire.subscribe(to: key, scenario: "fanout")
                    guard gate.markSubscribed() else { return (stats, 0) }
                    // Ends at the writer's marked last put, or when the connection ends.
                    while true {
                        let message = try await wire.next()
                        let now = monotonicNanos()
                        guard ReplyScan.type(message) == "update" else { continue }
                        if message.contains(#""z":1"#) { break }
                        guard let sent = ReplyScan.integer("t", in: message) else { continue }
                        gate.recordDelivery(sent: sent, at: now, warmup: warmup, into: &stats, counters: counters)
                    }
                    return (stats, 0)
                }
            }
            return try await gate.writer(index, options) { wire in
                let start: UInt64
                do {
                    start = try await gate.waitForSubscribers(limit: connectAllowance)
                } catch {
                    // The marked last put ends the subscribers that did subscribe.
                    try? await wire.send(put(key: keys[index], base: 0, data: data + #","t":0,"z":1"#))
                    _ = try? await wire.next()
                    throw error
                }
                let window = RunWindow(options: options, now: start)
                span.publish(window)
                var version: Int64 = 0
                var acknowledged = 0
                var schedule = SendSchedule(rate: options.rate, connections: writers, index: index, start: start)
                while window.mayStart(writes), let sent = try await schedule.nextSend(deadline: window.deadline) {
                    try await wire.send(put(key: keys[index], base: version, data: data + #","t":"# + String(sent)))
                    let reply = try await wire.next()
                    guard ReplyScan.type(reply) == "ack", let acked = ReplyScan.integer("version", in: reply) else {
                        throw LoadError("fanout: unexpected reply to a put: \(reply.prefix(200))")
                    }
                    version = acked
                    if window.measures(monotonicNanos()) { acknowledged += 1 }
                }
                try await wire.send(put(key: keys[index], base: version, data: data + #","t":0,"z":1"#))
                _ = try await wire.next()
                return (WorkerStats(), acknowledged)
            }
        }
        var report = LoadReport(scenario: "fanout", latency: "delivery", options: options, outcome: outcome)
        report.connections = writers + writers * subscribers
        let writesMeasured = outcome.results.reduce(0, +)
        report.setRate(target: options.rate, answered: writesMeasured)
        report.extra["writers"] = "\(writers)"
        report.extra["subscribers per key"] = "\(subscribers)"
        report.extra["writes measured"] = "\(writesMeasured)"
        report.extra["writes/s"] =
            report.seconds > 0 ? String(format: "%.0f", Double(writesMeasured) / report.seconds) : "0"
        report.extra["deliveries expected"] = "\(writesMeasured * subscribers)"
        if let cpu = report.serverCPUMicrosPerOp {
            report.extra["server CPU µs per delivery"] = String(format: "%.2f", cpu)
        }
        report.serverCPUMicrosPerOp = nil
        return report
    }
}
