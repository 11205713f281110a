import Foundation
import Histogram
import Synchronization
import VersoCore

extension Scenarios {
    /// What one `mixed` connection measured besides the common figures.
    struct MixedStats: Sendable {
        var get = WorkerStats.histogram()
        var put = WorkerStats.histogram()
        /// Write-to-delivery latency of the updates this connection received.
        var update = WorkerStats.histogram()
        var gets = 0
        var notFound = 0
        var acks = 0
        var updates = 0
        /// Broken protocol rules seen (at most 20).
        var problems: [String] = []
        /// The last version seen per subscribed key, from snapshots and updates.
        var seen: [String: Int64] = [:]

        mutating func problem(_ text: String) {
            if problems.count < 20 { problems.append(text) }
        }

        /// Takes a subscription message (`snapshot` with `sub`, or `update`) that arrived at
        /// `now`: checks that each key's versions only go up (Protocol.md section 5, guarantee
        /// 1) and times an update from the writer's stamp.
        mutating func observe(_ message: String, at now: UInt64, window: RunWindow) {
            guard let key = ReplyScan.string("key", in: message),
                let version = ReplyScan.integer("version", in: message)
            else {
                problem("a subscription message without key or version: \(message.prefix(200))")
                return
            }
            let name = String(key)
            if let last = seen[name], version <= last {
                problem("\(name): version \(version) delivered after version \(last)")
            }
            seen[name] = version
            guard ReplyScan.type(message) == "update", window.measures(now) else { return }
            updates += 1
            if let sent = ReplyScan.integer("t", in: message), sent > 0 {
                update.record(microseconds(UInt64(sent), now))
            }
        }

        mutating func add(_ other: MixedStats) {
            get.add(other.get)
            put.add(other.put)
            update.add(other.update)
            gets += other.gets
            notFound += other.notFound
            acks += other.acks
            updates += other.updates
            for text in other.problems { problem(text) }
        }
    }

    /// `mixed`: every connection subscribes to `subscriptions` random keys of `options.keys`
    /// shared keys, then makes requests on random keys, each a `get` with probability
    /// `readPercent` % and otherwise a `put` whose base is the last version this connection
    /// saw for the key (from a snapshot, an ack or a conflict's reply), closed loop or open
    /// loop at `options.rate`. Times gets, puts and the delivery of updates (from the
    /// writer's send stamp), and checks that no request is refused, that each ack makes
    /// version base + 1, and that subscribed keys' versions arrive in order.
    public static func mixed(_ options: LoadOptions, readPercent: Int, subscriptions: Int) async -> LoadReport {
        let counters = LiveCounters()
        let window = RunWindow(options: options)
        let keys = (0..<Swift.max(1, options.keys)).map { "load/\(options.runID)/mixed/\($0)" }
        let subscribed = Swift.min(Swift.max(0, subscriptions), keys.count)
        let data = #""p":""# + padding(options.valueSize - 24) + #"","t":"#
        let connections = options.connections
        let outcome = await LoadRunner.run(options: options, workers: connections, window: window, counters: counters) {
            index in
            try await LoadConnection.run(
                url: options.url(for: index),
                compression: options.compression,
                token: options.token
            ) {
                wire in
                var stats = WorkerStats()
                var mixed = MixedStats()
                var known: [Int: Int64] = [:]
                if subscribed > 0 {
                    var chosen = Set<Int>()
                    while chosen.count < subscribed { chosen.insert(Int.random(in: 0..<keys.count)) }
                    let filter = SubscriptionFilter.keys(Set(chosen.map { BytewiseString(keys[$0]) }))
                    try await wire.send(Request.subscribe(filter, since: nil, epoch: nil).encoded())
                    let reply = try await wire.next()
                    guard ReplyScan.type(reply) == "subscribed" else {
                        throw LoadError("mixed: subscribe failed: \(reply.prefix(200))")
                    }
                }
                var schedule = SendSchedule(rate: options.rate, connections: connections, index: index)
                while window.mayStart(counters), let start = try await schedule.nextSend(deadline: window.deadline) {
                    let slot = Int.random(in: 0..<keys.count)
                    let read = Int.random(in: 0..<100) < readPercent
                    let base = known[slot] ?? 0
                    if read {
                        try await wire.send(get(key: keys[slot]))
                    } else {
                        try await wire.send(put(key: keys[slot], base: base, data: data + String(start)))
                    }
                    // The reply comes after any subscription messages sent before it.
                    var reply = try await wire.next()
                    while ReplyScan.isSubscriptionMessage(reply) {
                        mixed.observe(reply, at: monotonicNanos(), window: window)
                        reply = try await wire.next()
                    }
                    let end = monotonicNanos()
                    let measured = window.measures(end)
                    let latency = microseconds(start, end)
                    counters.ops.add(1, ordering: .relaxed)
                    if measured {
                        stats.ops += 1
                        stats.latency.record(latency)
                    }
                    switch (read, ReplyScan.type(reply) ?? "") {
                    case (true, "snapshot"):
                        known[slot] = ReplyScan.integer("version", in: reply) ?? base
                        if measured { mixed.gets += 1; mixed.get.record(latency) }
                    case (true, "error") where reply.contains(#""code":"not_found""#):
                        known[slot] = ReplyScan.integer("version", in: reply) ?? 0
                        if measured { mixed.gets += 1; mixed.notFound += 1; mixed.get.record(latency) }
                    case (false, "ack"):
                        let version = ReplyScan.integer("version", in: reply)
                        if version != base + 1 {
                            mixed.problem(
                                "\(keys[slot]): a put on base \(base) was acknowledged as version \(version.map(String.init) ?? "none")"
                            )
                        }
                        known[slot] = version ?? base + 1
                        if measured { mixed.acks += 1; mixed.put.record(latency) }
                    case (false, "conflict"):
                        let version = ReplyScan.integer("version", in: reply)
                        if version == nil || version == base {
                            mixed.problem(
                                "\(keys[slot]): a conflict on base \(base) shows version \(version.map(String.init) ?? "none")"
                            )
                        }
                        known[slot] = version ?? base
                        counters.conflicts.add(1, ordering: .relaxed)
                        if measured { stats.conflicts += 1; mixed.put.record(latency) }
                    default:
                        counters.errors.add(1, ordering: .relaxed)
                        throw LoadError("mixed: unexpected reply to a \(read ? "get" : "put"): \(reply.prefix(200))")
                    }
                }
                return (stats, mixed)
            }
        }
        var mixed = MixedStats()
        for result in outcome.results { mixed.add(result) }
        var report = LoadReport(scenario: "mixed", latency: "get+put", options: options, outcome: outcome)
        report.latencies += [
            LatencySummary(name: "get", histogram: mixed.get),
            LatencySummary(name: "put", histogram: mixed.put),
            LatencySummary(name: "update", histogram: mixed.update),
        ]
        report.setRate(target: options.rate, answered: outcome.stats.ops)
        report.failures += mixed.problems
        report.extra["read percent"] = "\(readPercent)"
        report.extra["keys"] = "\(keys.count), shared"
        report.extra["subscribed keys per connection"] = "\(subscribed)"
        report.extra["gets"] = "\(mixed.gets)"
        report.extra["gets not found"] = "\(mixed.notFound)"
        report.extra["puts acknowledged"] = "\(mixed.acks)"
        report.extra["updates delivered"] = "\(mixed.updates)"
        report.extra["updates/s"] =
            report.seconds > 0 ? String(format: "%.0f", Double(mixed.updates) / report.seconds) : "0"
        return report
    }
}
