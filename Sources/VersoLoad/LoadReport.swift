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
    /// Server CPU microseconds per acknowledged operation (all of the run, warm-up included).
    public var serverCPUMicrosPerOp: Double?
    /// Server resident memory at the end, in bytes.
    public var serverRSSBytes: Int?
    /// Scenario-specific figures, in order.
    public var extra: [String: String] = [:]
    /// Why the run is wrong (counter mismatches, failed connections); empty when it is right.
    public var failures: [String] = []

    init<R>(scenario: String, options: LoadOptions, outcome: LoadRunner.Outcome<R>) {
        self.scenario = scenario
        connections = options.connections
        compression = options.compression
        seconds = outcome.seconds
        ops = outcome.stats.ops
        opsPerSecond = outcome.seconds > 0 ? Double(outcome.stats.ops) / outcome.seconds : 0
        conflicts = outcome.stats.conflicts
        errors = outcome.stats.errors
        let latency = outcome.stats.latency
        let empty = latency.totalCount == 0
        p50 = empty ? 0 : latency.valueAtPercentile(50)
        p90 = empty ? 0 : latency.valueAtPercentile(90)
        p99 = empty ? 0 : latency.valueAtPercentile(99)
        p999 = empty ? 0 : latency.valueAtPercentile(99.9)
        max = empty ? 0 : latency.max
        if let before = outcome.before, let after = outcome.after {
            if outcome.totalOps > 0 {
                serverCPUMicrosPerOp = (after.cpuSeconds - before.cpuSeconds) * 1e6 / Double(outcome.totalOps)
            }
            serverRSSBytes = after.rssBytes
        }
        failures = Array(outcome.failures.prefix(20))
    }

    /// Whether the run completed without errors or failed checks.
    public var succeeded: Bool { errors == 0 && failures.isEmpty }

    private static func milliseconds(_ micros: UInt64) -> String {
        String(format: "%.3f", Double(micros) / 1000)
    }

    /// A two-column table of every figure.
    public var table: String {
        var rows: [(String, String)] = [
            ("scenario", scenario),
            ("connections", "\(connections)"),
            ("compression", compression ? "permessage-deflate" : "off"),
            ("measured seconds", String(format: "%.2f", seconds)),
            ("ops", "\(ops)"),
            ("ops/s", String(format: "%.0f", opsPerSecond)),
            ("p50 ms", Self.milliseconds(p50)),
            ("p90 ms", Self.milliseconds(p90)),
            ("p99 ms", Self.milliseconds(p99)),
            ("p99.9 ms", Self.milliseconds(p999)),
            ("max ms", Self.milliseconds(max)),
            ("conflicts", "\(conflicts)"),
            ("errors", "\(errors)"),
        ]
        if let serverCPUMicrosPerOp { rows.append(("server CPU µs/op", String(format: "%.1f", serverCPUMicrosPerOp))) }
        if let serverRSSBytes { rows.append(("server RSS MiB", String(format: "%.1f", Double(serverRSSBytes) / 1_048_576))) }
        for key in extra.keys.sorted() { rows.append((key, extra[key]!)) }
        for failure in failures { rows.append(("FAILED", failure)) }
        let width = rows.map(\.0.count).max() ?? 0
        return rows.map { $0.0.padding(toLength: width, withPad: " ", startingAt: 0) + "  " + $0.1 }.joined(separator: "\n")
    }

    /// The report as JSON.
    public func json() throws -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        return try encoder.encode(self)
    }
}
