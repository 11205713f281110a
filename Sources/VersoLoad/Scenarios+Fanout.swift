import Synchronization

extension Scenarios {
    /// Lets the writers of `fanout` start once every subscriber is subscribed, and tells the
    /// subscribers when that was.
    final class FanoutGate: Sendable {
        let subscribed = Atomic<Int>(0)
        let startedAt = Atomic<UInt64>(0)
        let expected: Int
        init(expected: Int) { self.expected = expected }

        /// Waits (polling every 5 ms, at most `limit` nanoseconds) until every subscriber is
        /// ready; returns the common start time.
        func waitForSubscribers(limit: UInt64) async throws -> UInt64 {
            let giveUp = monotonicNanos() + limit
            while subscribed.load(ordering: .acquiring) < expected {
                guard monotonicNanos() < giveUp else { throw LoadError("fanout: subscribers were not ready in time") }
                try await Task.sleep(for: .milliseconds(5))
            }
            _ = startedAt.compareExchange(expected: 0, desired: monotonicNanos(), ordering: .acquiringAndReleasing)
            return startedAt.load(ordering: .acquiring)
        }
    }

    /// `fanout`: `writers` connections each do closed-loop puts on a key of their own, stamping
    /// the send time into the data; `subscribers` connections per key subscribe to it and
    /// measure write-to-delivery latency of every update. Writers start once all subscribers
    /// are subscribed; after the run each writer sends a last put marked `"z":1`, which ends
    /// its subscribers.
    public static func fanout(_ options: LoadOptions, writers: Int, subscribers: Int) async -> LoadReport {
        let counters = LiveCounters()
        let writes = LiveCounters()
        let gate = FanoutGate(expected: writers * subscribers)
        // The runner's own window only bounds the progress line; the writers set the real one.
        let connectAllowance: UInt64 = 120_000_000_000
        let outer = RunWindow(options: options, now: monotonicNanos() + connectAllowance)
        let data = #""p":""# + padding(options.valueSize - 24) + "\""
        let keys = (0..<writers).map { "load/\(options.runID)/fanout/\($0)" }
        let warmup = UInt64(options.warmup * 1e9)
        let outcome = await LoadRunner.run(options: options, workers: writers + writers * subscribers, window: outer, counters: counters) { (index: Int) async throws -> (WorkerStats, Int) in
            if index >= writers {
                let key = keys[(index - writers) % writers]
                return try await LoadConnection.run(url: options.url, compression: options.compression) { wire in
                    var stats = WorkerStats()
                    try await wire.subscribe(to: key, scenario: "fanout")
                    gate.subscribed.add(1, ordering: .releasing)
                    // Ends at the writer's marked last put, or when the connection ends.
                    while true {
                        let message = try await wire.next()
                        let now = monotonicNanos()
                        guard ReplyScan.type(message) == "update" else { continue }
                        if message.contains(#""z":1"#) { break }
                        guard let sent = ReplyScan.integer("t", in: message) else { continue }
                        let start = gate.startedAt.load(ordering: .relaxed)
                        counters.ops.add(1, ordering: .relaxed)
                        if now >= start + warmup {
                            stats.ops += 1
                            stats.latency.record(microseconds(UInt64(sent), now))
                        }
                    }
                    return (stats, 0)
                }
            }
            return try await LoadConnection.run(url: options.url, compression: options.compression) { wire in
                let start = try await gate.waitForSubscribers(limit: connectAllowance)
                let window = RunWindow(options: options, now: start)
                var version: Int64 = 0
                var acknowledged = 0
                while window.mayStart(writes) {
                    try await wire.send(put(key: keys[index], base: version, data: data + #","t":"# + String(monotonicNanos())))
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
        var report = LoadReport(scenario: "fanout", options: options, outcome: outcome)
        report.connections = writers + writers * subscribers
        let writesMeasured = outcome.results.reduce(0, +)
        if options.ops == nil {
            report.seconds = options.duration
            report.opsPerSecond = Double(report.ops) / options.duration
        }
        report.extra["writers"] = "\(writers)"
        report.extra["subscribers per key"] = "\(subscribers)"
        report.extra["writes measured"] = "\(writesMeasured)"
        report.extra["writes/s"] = String(Int(Double(writesMeasured) / report.seconds))
        report.extra["deliveries expected"] = "\(writesMeasured * subscribers)"
        if let cpu = report.serverCPUMicrosPerOp {
            report.extra["server CPU µs per delivery"] = String(format: "%.2f", cpu)
        }
        report.serverCPUMicrosPerOp = nil
        return report
    }
}
