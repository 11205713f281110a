import Histogram
import Synchronization

/// What one worker measured; workers keep their own and the run adds them up at the end.
public struct WorkerStats: Sendable {
    /// Round-trip (or delivery) latencies in microseconds.
    public var latency = Histogram<UInt64>(lowestDiscernibleValue: 1, highestTrackableValue: 3_600_000_000, numberOfSignificantValueDigits: .three)
    /// Acknowledged writes (or deliveries) in the measured window.
    public var ops = 0
    public var conflicts = 0
    public var errors = 0

    public init() {}

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

/// When workers stop: after `--ops` operations, or at a deadline (warm-up plus duration).
public struct RunWindow: Sendable {
    /// Start of the measured window (the end of the warm-up), monotonic nanoseconds.
    public let measureStart: UInt64
    /// Deadline, monotonic nanoseconds; also bounds an `--ops` run.
    public let deadline: UInt64
    /// How many operations in all, or nil for a timed run.
    public let ops: Int?

    public init(options: LoadOptions, now: UInt64 = monotonicNanos()) {
        measureStart = now + UInt64(options.warmup * 1e9)
        // An --ops run still stops after 10 minutes, so no run can hang on a stuck server.
        deadline = measureStart + UInt64((options.ops == nil ? options.duration : 600) * 1e9)
        ops = options.ops
    }

    /// Whether a worker may start another operation; claims it in an `--ops` run.
    @inline(__always)
    public func mayStart(_ counters: LiveCounters) -> Bool {
        if monotonicNanos() >= deadline { return false }
        guard let ops else { return true }
        return counters.claimed.wrappingAdd(1, ordering: .relaxed).newValue <= ops
    }

    /// Whether a result finished at `time` counts (it is past the warm-up).
    @inline(__always)
    public func measures(_ time: UInt64) -> Bool { time >= measureStart }
}
