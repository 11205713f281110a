import Synchronization

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

/// The measured window as the whole run sees it, for the CPU sampler and the progress line.
/// Most scenarios know it at the start; `fanout` learns it only once every subscriber is
/// ready, so it is published here when known (0 means "not yet").
public final class MeasuredSpan: Sendable {
    private let start = Atomic<UInt64>(0)
    private let end = Atomic<UInt64>(0)

    public init() {}

    /// A span already set to `window`.
    public convenience init(_ window: RunWindow) {
        self.init()
        publish(window)
    }

    /// Sets the span to `window`'s measured part; the first call wins.
    public func publish(_ window: RunWindow) {
        guard start.load(ordering: .acquiring) == 0 else { return }
        end.store(window.deadline, ordering: .releasing)
        _ = start.compareExchange(
            expected: 0,
            desired: Swift.max(1, window.measureStart),
            ordering: .acquiringAndReleasing
        )
    }

    /// Start and end in monotonic nanoseconds, or nil while not known.
    public var bounds: (start: UInt64, end: UInt64)? {
        let start = start.load(ordering: .acquiring)
        return start == 0 ? nil : (start, end.load(ordering: .acquiring))
    }

    /// Whether `time` is before the measured window (or the window is not known yet).
    public func isWarmingUp(at time: UInt64 = monotonicNanos()) -> Bool {
        guard let bounds else { return true }
        return time < bounds.start
    }
}
