import Foundation
import Histogram
import Synchronization
import VersoCore

extension Scenarios {
    /// `presence`: `subscribers` connections subscribe to one record and `presenters` other
    /// connections change their presence on it, each at the protocol's limit of 10 changes a
    /// second (Protocol.md 5.1), stamping the send time into the state; every subscriber
    /// measures change-to-delivery latency of every presence message. Presenters start once all
    /// subscribers are subscribed; after the run each sets a last state marked `"z":1` (or
    /// closes, which clears it), which ends the subscribers once every presenter has done so.
    public static func presence(_ options: LoadOptions, presenters: Int, subscribers: Int) async -> LoadReport {
        let counters = LiveCounters()
        let changes = LiveCounters()
        let gate = SubscriberGate(scenario: "presence", expected: subscribers, writers: presenters)
        let connectAllowance: UInt64 = 120_000_000_000
        let outer = RunWindow(options: options, now: monotonicNanos() + connectAllowance)
        let key = "load/\(options.runID)/presence"
        let warmup = UInt64(options.warmup * 1e9)
        let span = MeasuredSpan()
        let interval = 1_000_000_000 / UInt64(RequestLimits.presenceChangesPerSecond)
        @Sendable func change(_ state: String) -> String {
            #"{"type":"presence","key":"\#(key)","state":{\#(state)}}"#
        }
        let outcome = await LoadRunner.run(
            options: options,
            workers: presenters + subscribers,
            window: outer,
            span: span,
            counters: counters
        ) { (index: Int) async throws -> (WorkerStats, Int) in
            if index >= presenters {
                return try await gate.subscriber(options, limit: connectAllowance) { wire in
                    var stats = WorkerStats()
                    try await wire.subscribe(to: key, scenario: "presence")
                    guard gate.markSubscribed() else { return (stats, 0) }
                    var finished = Set<Substring>()
                    while finished.count < presenters {
                        let message = try await wire.next()
                        let now = monotonicNanos()
                        guard ReplyScan.type(message) == "presence" else { continue }
                        if message.contains(#""z":1"#) || message.contains(#""state":null"#) {
                            if let session = ReplyScan.string("session", in: message) { finished.insert(session) }
                            continue
                        }
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
                    try? await wire.send(change(#""z":1"#))
                    _ = try? await wire.next()
                    throw error
                }
                let window = RunWindow(options: options, now: start)
                span.publish(window)
                // Spread the presenters over the interval, each at its limit.
                var next = start + interval * UInt64(index) / UInt64(presenters)
                var measured = 0
                while window.mayStart(changes), next < window.deadline {
                    let now = monotonicNanos()
                    if next > now { try await Task.sleep(for: .nanoseconds(Int64(next - now))) }
                    let sent = monotonicNanos()
                    try await wire.send(change(#""t":\#(sent),"n":\#(index)"#))
                    let reply = try await wire.next()
                    guard ReplyScan.type(reply) == "presence" else {
                        throw LoadError("presence: unexpected reply to a presence change: \(reply.prefix(200))")
                    }
                    changes.ops.add(1, ordering: .relaxed)
                    if window.measures(sent) { measured += 1 }
                    next += interval
                }
                try await wire.send(change(#""z":1"#))
                _ = try await wire.next()
                return (WorkerStats(), measured)
            }
        }
        var report = LoadReport(scenario: "presence", latency: "delivery", options: options, outcome: outcome)
        report.connections = presenters + subscribers
        let changesMeasured = outcome.results.reduce(0, +)
        report.extra["presenters"] = "\(presenters)"
        report.extra["subscribers"] = "\(subscribers)"
        report.extra["presence changes measured"] = "\(changesMeasured)"
        report.extra["deliveries expected"] = "\(changesMeasured * subscribers)"
        if let cpu = report.serverCPUMicrosPerOp {
            report.extra["server CPU µs per delivery"] = String(format: "%.2f", cpu)
        }
        report.serverCPUMicrosPerOp = nil
        return report
    }
}
