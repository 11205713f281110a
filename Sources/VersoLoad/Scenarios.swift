import Histogram
import Synchronization
/// The load scenarios. Each returns a report; none throws for a failed connection or a wrong
/// count, which the report lists instead.
public enum Scenarios {
    /// Record data of about `size` bytes: `"p":"xxx…"` inside the object braces.
    static func padding(_ size: Int) -> String {
        String(repeating: "x", count: Swift.max(1, size - 8))
    }

    // The requests sent in a measured loop, built by concatenation (cheaper for the harness
    // than `Request.encoded`, whose every message the tests check these read back as). Keys and
    // member names are the harness's own: no character in them needs escaping.

    /// A put of `{` + `data` + `}` at `key` on `base`.
    static func put(key: String, base: Int64, data: String) -> String {
        #"{"type":"put","key":""# + key + #"","base":"# + String(base) + #","data":{"# + data + "}}"
    }

    /// A patch of `{` + `members` + `}` at `key` on `base`, with `"merge":"fields"` when `merge`.
    static func patch(key: String, base: Int64, members: String, merge: Bool = false) -> String {
        #"{"type":"patch","key":""# + key + #"","base":"# + String(base) + (merge ? #","merge":"fields""# : "")
            + #","patch":{"# + members + "}}"
    }

    /// A get of `key`.
    static func get(key: String) -> String {
        #"{"type":"get","key":""# + key + #""}"#
    }

    static func microseconds(_ start: UInt64, _ end: UInt64) -> UInt64 {
        Swift.max(1, (end &- start) / 1000)
    }

    // MARK: cas

    /// `cas`: every connection does compare-and-set puts, each with the version the last reply
    /// showed as its base: closed loop, or open loop at `options.rate` (see `SendSchedule`).
    /// Without `hot`, connection i owns keys i, i+C, i+2C, … of `keys` (at least one each) and
    /// never conflicts; with `hot` N, all share N keys, and a conflict's reply (which carries
    /// the current version) sets the base of the retry.
    public static func cas(_ options: LoadOptions) async -> LoadReport {
        let counters = LiveCounters()
        let window = RunWindow(options: options)
        let data = #""p":""# + padding(options.valueSize) + "\""
        let connections = options.connections
        let outcome = await LoadRunner.run(options: options, workers: connections, window: window, counters: counters) {
            index in
            let keys: [String]
            if options.hot > 0 {
                keys = (0..<options.hot).map { "load/\(options.runID)/hot/\($0)" }
            } else {
                keys = stride(from: index, to: Swift.max(options.keys, connections), by: connections).map {
                    "load/\(options.runID)/\($0)"
                }
            }
            let stats = try await LoadConnection.run(
                url: options.url(for: index),
                compression: options.compression,
                token: options.token
            ) { wire in
                try await casLoop(
                    &wire,
                    keys: keys,
                    data: data,
                    options: options,
                    index: index,
                    window: window,
                    counters: counters
                )
            }
            return (stats, ())
        }
        var report = LoadReport(scenario: "cas", latency: "put", options: options, outcome: outcome)
        report.setRate(target: options.rate, answered: outcome.stats.ops + outcome.stats.conflicts)
        report.extra["keys"] =
            options.hot > 0
            ? "\(options.hot) hot, shared" : "\(Swift.max(options.keys, connections)), own per connection"
        return report
    }

    /// One `cas` connection: compare-and-set puts on `keys` (random ones when `options.hot`
    /// is set, else in turn), each with the version the last reply showed as its base, until
    /// `window` closes; closed loop, or open loop at `options.rate` shared by
    /// `options.connections`.
    static func casLoop(
        _ wire: inout LoadWire,
        keys: [String],
        data: String,
        options: LoadOptions,
        index: Int,
        window: RunWindow,
        counters: LiveCounters
    ) async throws -> WorkerStats {
        var stats = WorkerStats()
        var versions = [Int64](repeating: 0, count: keys.count)
        var next = 0
        var schedule = SendSchedule(rate: options.rate, connections: options.connections, index: index)
        while window.mayStart(counters), let start = try await schedule.nextSend(deadline: window.deadline) {
            let slot = options.hot > 0 ? Int.random(in: 0..<keys.count) : next % keys.count
            next &+= 1
            var request = put(key: keys[slot], base: versions[slot], data: data)
            if options.idempotencyKeys {
                request.removeLast()
                request += #","idempotency_key":"\#(options.runID)-\#(index)-\#(next)"}"#
            }
            try await wire.send(request)
            let reply = try await wire.next()
            let end = monotonicNanos()
            let measured = window.measures(end)
            if measured { stats.latency.record(microseconds(start, end)) }
            switch ReplyScan.type(reply) ?? "" {
            case "ack":
                versions[slot] = ReplyScan.integer("version", in: reply) ?? versions[slot] + 1
                counters.ops.add(1, ordering: .relaxed)
                if measured { stats.ops += 1 }
            case "conflict":
                versions[slot] = ReplyScan.integer("version", in: reply) ?? versions[slot]
                counters.conflicts.add(1, ordering: .relaxed)
                if measured { stats.conflicts += 1 }
            default:
                counters.errors.add(1, ordering: .relaxed)
                stats.errors += 1
                if stats.errors == 1 { throw LoadError("unexpected reply to a put: \(reply.prefix(200))") }
            }
        }
        return stats
    }

    // MARK: counter

    /// `counter`: `connections` clients each make `ops` increments (default 100) of a counter
    /// on `hot` keys (default 1): get, then put with that version as base and the count plus
    /// one, again from the get on conflict. Then checks that the counts add up to exactly
    /// clients × increments and that no acknowledged (key, version) was given twice.
    public static func counter(_ options: LoadOptions) async -> LoadReport {
        let counters = LiveCounters()
        var timing = options
        timing.warmup = 0
        timing.ops = nil
        timing.duration = 600
        let window = RunWindow(options: timing)
        let increments = options.ops ?? 100
        let hot = Swift.max(1, options.hot)
        let keys = (0..<hot).map { "load/\(options.runID)/counter/\($0)" }
        let data = #","p":""# + padding(options.valueSize) + "\""
        let outcome = await LoadRunner.run(
            options: options,
            workers: options.connections,
            window: window,
            counters: counters
        ) { index in
            try await LoadConnection.run(
                url: options.url(for: index),
                compression: options.compression,
                token: options.token
            ) {
                wire in
                var stats = WorkerStats()
                var acked: [(Int, Int64)] = []
                for increment in 0..<increments {
                    let slot = (index + increment) % hot
                    var done = false
                    // Each attempt follows a change by another client, so this bound is never
                    // reached unless the server loses acknowledged writes.
                    for _ in 0..<1_000_000 where !done {
                        guard monotonicNanos() < window.deadline else { throw LoadError("counter: out of time") }
                        let start = monotonicNanos()
                        try await wire.send(get(key: keys[slot]))
                        let snapshot = try await wire.next()
                        let base: Int64
                        let count: Int64
                        switch ReplyScan.type(snapshot) ?? "" {
                        case "snapshot":
                            guard let version = ReplyScan.integer("version", in: snapshot),
                                let n = ReplyScan.integer("n", in: snapshot)
                            else { throw LoadError("counter: bad snapshot \(snapshot.prefix(200))") }
                            base = version
                            count = n
                        case "error" where snapshot.contains(#""code":"not_found""#):
                            base = 0
                            count = 0
                        default:
                            throw LoadError("counter: unexpected reply to a get: \(snapshot.prefix(200))")
                        }
                        try await wire.send(put(key: keys[slot], base: base, data: #""n":"# + String(count + 1) + data))
                        let reply = try await wire.next()
                        stats.latency.record(microseconds(start, monotonicNanos()))
                        switch ReplyScan.type(reply) ?? "" {
                        case "ack":
                            guard let version = ReplyScan.integer("version", in: reply) else {
                                throw LoadError("counter: ack without version")
                            }
                            acked.append((slot, version))
                            stats.ops += 1
                            counters.ops.add(1, ordering: .relaxed)
                            done = true
                        case "conflict":
                            stats.conflicts += 1
                            counters.conflicts.add(1, ordering: .relaxed)
                        default:
                            throw LoadError("counter: unexpected reply to a put: \(reply.prefix(200))")
                        }
                    }
                    if !done { throw LoadError("counter: increment never acknowledged") }
                }
                return (stats, acked)
            }
        }
        var report = LoadReport(scenario: "counter", latency: "get+put", options: options, outcome: outcome)
        let expected = options.connections * increments
        report.extra["expected count"] = "\(expected)"
        // Every acknowledged (key, version) must be unique, and each key's versions 1…n.
        var versionsByKey = [Set<Int64>](repeating: [], count: hot)
        var acknowledged = 0
        for acked in outcome.results {
            for (slot, version) in acked {
                acknowledged += 1
                if !versionsByKey[slot].insert(version).inserted {
                    report.failures.append("\(keys[slot]) version \(version) acknowledged twice")
                }
            }
        }
        report.extra["acknowledged"] = "\(acknowledged)"
        if acknowledged != expected {
            report.failures.append("acknowledged \(acknowledged) increments, expected \(expected)")
        }
        let ackedCounts = versionsByKey.map(\.count)
        do {
            let total = try await LoadConnection.run(
                url: options.url,
                compression: options.compression,
                token: options.token
            ) { wire in
                var total: Int64 = 0
                var problems: [String] = []
                for (slot, key) in keys.enumerated() {
                    try await wire.send(get(key: key))
                    let reply = try await wire.next()
                    let version = ReplyScan.integer("version", in: reply) ?? 0
                    total += ReplyScan.type(reply) == "snapshot" ? (ReplyScan.integer("n", in: reply) ?? 0) : 0
                    if version != Int64(ackedCounts[slot]) {
                        problems.append(
                            "\(key) is at version \(version) after \(ackedCounts[slot]) acknowledged increments"
                        )
                    }
                }
                return (total, problems)
            }
            report.extra["final count"] = "\(total.0)"
            report.failures += total.1
            if total.0 != Int64(expected) { report.failures.append("final count \(total.0), expected \(expected)") }
        } catch {
            report.failures.append("could not read the counters back: \(error)")
        }
        return report
    }
}
