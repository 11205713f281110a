import Histogram
import Synchronization

/// What one worker measured; workers keep their own and the run adds them up at the end.
public struct WorkerStats: Sendable {
    /// Round-trip (or delivery) latencies in microseconds.
    public var latency = WorkerStats.histogram()
    /// Acknowledged writes (or deliveries) in the measured window.
    public var ops = 0
    public var conflicts = 0
    public var errors = 0

    public init() {}

    /// An empty latency histogram: microseconds from 1 µs to an hour, 3 significant digits.
    public static func histogram() -> Histogram<UInt64> {
        Histogram<UInt64>(
            lowestDiscernibleValue: 1,
            highestTrackableValue: 3_600_000_000,
            numberOfSignificantValueDigits: .three
        )
    }

    public mutating func add(_ other: WorkerStats) {
        latency.add(other.latency)
        ops += other.ops
        conflicts += other.conflicts
        errors += other.errors
    }
}

/// Counters every worker bumps as it goes, for the once-a-second progress line and for
/// `--ops`, which workers claim one at a time so the run stops after exactly that many.
public final class LiveCounters: Sendable {
    public let ops = Atomic<Int>(0)
    public let conflicts = Atomic<Int>(0)
    public let errors = Atomic<Int>(0)
    let claimed = Atomic<Int>(0)
    public init() {}
}
