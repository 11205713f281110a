/// When one connection sends its requests. Closed loop (no rate): the next request goes as
/// soon as the last reply is in, and latency is timed from the actual send. Open loop (a
/// rate): the connection has a fixed timetable of intended send times, `connections / rate`
/// seconds apart; it waits for each, or sends at once if it is behind, and latency is timed
/// from the *intended* time, as wrk2 does, so a stall delays every request scheduled during
/// it and shows in the percentiles instead of hiding in fewer samples (coordinated omission).
public struct SendSchedule: Sendable {
    /// Nanoseconds between intended sends; 0 in a closed loop.
    public let interval: UInt64
    private var next: UInt64

    /// A schedule for connection `index` of `connections` sharing `rate` operations per second
    /// (nil: closed loop), starting at `start`. Connections are offset from each other by a
    /// fraction of the interval, so that together they send evenly.
    public init(rate: Double?, connections: Int, index: Int, start: UInt64 = monotonicNanos()) {
        guard let rate, rate > 0 else {
            interval = 0
            next = start
            return
        }
        interval = Swift.max(1, UInt64(1e9 * Double(Swift.max(1, connections)) / rate))
        next = start + interval * UInt64(index % Swift.max(1, connections)) / UInt64(Swift.max(1, connections))
    }

    /// Whether the schedule paces sends (open loop).
    public var isOpenLoop: Bool { interval > 0 }

    /// Waits for the next send time and returns the time latency is measured from: the
    /// intended time in an open loop, now in a closed one. Returns nil when the next intended
    /// time is at or after `deadline` (monotonic nanoseconds).
    public mutating func nextSend(deadline: UInt64) async throws -> UInt64? {
        guard isOpenLoop else {
            let now = monotonicNanos()
            return now < deadline ? now : nil
        }
        let intended = next
        guard intended < deadline else { return nil }
        next += interval
        let now = monotonicNanos()
        // Waits shorter than the timer's own granularity are not worth a sleep.
        if intended > now + 20_000 {
            try await Task.sleep(nanoseconds: intended - now)
        }
        return intended
    }
}
