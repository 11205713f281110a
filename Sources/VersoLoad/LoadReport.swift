import Foundation

/// The figures of one run, as a table for people and as JSON for scripts.
public struct LoadReport: Sendable, Codable {
    public var scenario: String
    public var connections: Int
    public var compression: Bool
    public var seconds: Double
    /// Acknowledged writes (or deliveries) in the measured window.
    public var ops: Int
    public var opsPerSecond: Double
    public var conflicts: Int
    public var errors: Int
    /// Latency percentiles in microseconds: p50, p90, p99, p99.9, max.
    public var p50: UInt64
    public var p90: UInt64
    public var p99: UInt64
    public var p999: UInt64
    public var max: UInt64
    /// Every latency distribution of the run, the one above first (`mixed` adds `get`, `put`
    /// and `update`).
    public var latencies: [LatencySummary]
    /// The open-loop target, operations per second over all connections (`--rate`); nil for a
    /// closed-loop run.
    public var rateTarget: Double?
    /// Requests answered per second in the measured window, conflicts included (open loop).
    public var achievedRate: Double?
    /// Server CPU microseconds per operation over the measured window (warm-up excluded).
    public var serverCPUMicrosPerOp: Double?
    /// Server resident memory at the end, in bytes.
    public var serverRSSBytes: Int?
    /// Scenario-specific figures, in order.
    public var extra: [String: String] = [:]
    /// Why the run is wrong (counter mismatches, failed connections); empty when it is right.
    public var failures: [String] = []

    init<R>(scenario: String, latency: String, options: LoadOptions, outcome: LoadRunner.Outcome<R>) {
        self.scenario = scenario
        connections = options.connections
        compression = options.compression
        seconds = outcome.seconds
        ops = outcome.stats.ops
        opsPerSecond = outcome.seconds > 0 ? Double(outcome.stats.ops) / outcome.seconds : 0
        conflicts = outcome.stats.conflicts
        errors = outcome.stats.errors
        let summary = LatencySummary(name: latency, histogram: outcome.stats.latency)
        p50 = summary.p50
        p90 = summary.p90
        p99 = summary.p99
        p999 = summary.p999
        max = summary.max
        latencies = [summary]
        if let before = outcome.before, let after = outcome.after, outcome.sampledOps > 0 {
            serverCPUMicrosPerOp = (after.cpuSeconds - before.cpuSeconds) * 1e6 / Double(outcome.sampledOps)
        }
        serverRSSBytes = (outcome.after ?? options.serverPID.flatMap(ProcessSample.read(pid:)))?.rssBytes
        failures = Array(outcome.failures.prefix(20))
    }

    /// Records the open-loop target and the rate achieved, from `answered` requests in the
    /// measured window; does nothing for a closed-loop run (no target).
    mutating func setRate(target: Double?, answered: Int) {
        guard let target else { return }
        rateTarget = target
        achievedRate = seconds > 0 ? Double(answered) / seconds : 0
    }

    /// Whether the run completed without errors or failed checks.
    public var succeeded: Bool { errors == 0 && failures.isEmpty }

    static func milliseconds(_ micros: UInt64) -> String {
        String(format: "%.3f", Double(micros) / 1000)
    }

    /// Every figure as (name, value), in the order the table shows them.
    public var rows: [(name: String, value: String)] {
        var rows: [(name: String, value: String)] = [
            ("scenario", scenario),
            ("connections", "\(connections)"),
            ("compression", compression ? "permessage-deflate" : "off"),
            ("measured seconds", String(format: "%.2f", seconds)),
            ("ops", "\(ops)"),
            ("ops/s", String(format: "%.0f", opsPerSecond)),
        ]
        if let rateTarget { rows.append(("rate target ops/s", String(format: "%.0f", rateTarget))) }
        if let achievedRate { rows.append(("achieved ops/s", String(format: "%.0f", achievedRate))) }
        rows += [
            ("latency", latencies.first?.name ?? ""),
            ("p50 ms", Self.milliseconds(p50)),
            ("p90 ms", Self.milliseconds(p90)),
            ("p99 ms", Self.milliseconds(p99)),
            ("p99.9 ms", Self.milliseconds(p999)),
            ("max ms", Self.milliseconds(max)),
            ("conflicts", "\(conflicts)"),
            ("errors", "\(errors)"),
        ]
        if let serverCPUMicrosPerOp { rows.append(("server CPU µs/op", String(format: "%.1f", serverCPUMicrosPerOp))) }
        if let serverRSSBytes {
            rows.append(("server RSS MiB", String(format: "%.1f", Double(serverRSSBytes) / 1_048_576)))
        }
        for other in latencies.dropFirst() {
            let figures = [other.p50, other.p90, other.p99, other.p999, other.max].map(Self.milliseconds)
            rows.append(("\(other.name) p50/90/99/99.9/max ms", figures.joined(separator: " / ")))
        }
        for key in extra.keys.sorted() { rows.append((key, extra[key]!)) }
        for failure in failures { rows.append(("FAILED", failure)) }
        return rows
    }

    /// A two-column table of every figure.
    public var table: String {
        let rows = rows
        let width = rows.map(\.name.count).max() ?? 0
        return rows.map { $0.name.padding(toLength: width, withPad: " ", startingAt: 0) + "  " + $0.value }.joined(
            separator: "\n"
        )
    }

    /// The report as JSON.
    public func json() throws -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        return try encoder.encode(self)
    }
}
