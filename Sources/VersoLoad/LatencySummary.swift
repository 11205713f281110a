import Foundation
import Histogram

/// One point of a percentile curve.
public struct PercentilePoint: Sendable, Codable, Equatable {
    /// The percentile, in [0, 100).
    public var percentile: Double
    /// The latency at that percentile, in microseconds.
    public var micros: UInt64
}

/// One latency distribution of a run (say, `get` round trips): its percentiles and its
/// percentile curve, as HdrHistogram's plots show it.
public struct LatencySummary: Sendable, Codable {
    /// What was timed: `put`, `get`, `delivery`, …
    public var name: String
    /// How many latencies were recorded.
    public var count: UInt64
    /// Percentiles in microseconds.
    public var p50: UInt64
    public var p90: UInt64
    public var p99: UInt64
    public var p999: UInt64
    public var max: UInt64
    /// The percentile curve: `pointsPerDecade` points per decade of 1/(1-p), from p = 0 to the
    /// decade that holds the last recorded value (at most 1 - 10⁻⁶). Empty when nothing was recorded.
    public var curve: [PercentilePoint]

    /// Points of the curve in each decade of 1/(1-p) (0–90 %, 90–99 %, …).
    public static let pointsPerDecade = 8

    /// Summarizes `histogram`, whose values are microseconds.
    public init(name: String, histogram: Histogram<UInt64>) {
        self.name = name
        count = histogram.totalCount
        guard count > 0 else {
            p50 = 0; p90 = 0; p99 = 0; p999 = 0; max = 0; curve = []
            return
        }
        p50 = histogram.valueAtPercentile(50)
        p90 = histogram.valueAtPercentile(90)
        p99 = histogram.valueAtPercentile(99)
        p999 = histogram.valueAtPercentile(99.9)
        max = histogram.max
        // Enough decades that the last point's 1 - p is below 1 / count: the maximum.
        var decades = 1
        while decades < 6, pow(10, Double(decades)) <= Double(count) { decades += 1 }
        curve = (0...(decades * Self.pointsPerDecade)).map { step in
            let percentile = 100 * (1 - 1 / pow(10, Double(step) / Double(Self.pointsPerDecade)))
            return PercentilePoint(percentile: percentile, micros: histogram.valueAtPercentile(percentile))
        }
    }
}
