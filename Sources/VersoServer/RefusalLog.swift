import Logging
import NIOCore
import Synchronization

/// Logs one kind of refusal (a foreign origin, a bad token, the connection limit) at most once
/// per interval, with the number of refusals left unlogged since the last line: a flood of
/// refused connections shows in the log without flooding it.
final class RefusalLog: Sendable {
    private let interval: UInt64
    /// When a line was last written (uptime nanoseconds; 0: never).
    private let lastLogged = Atomic<UInt64>(0)
    private let unlogged = Atomic<Int>(0)

    init(interval: TimeAmount = .seconds(1)) {
        self.interval = UInt64(max(1, interval.nanoseconds))
    }

    /// Writes the line for one refusal through `log` (given how many refusals went unlogged
    /// before it), or only counts the refusal when a line was written within the interval.
    func record(_ log: (_ unloggedBefore: Int) -> Void) {
        let now = NIODeadline.now().uptimeNanoseconds
        let last = lastLogged.load(ordering: .relaxed)
        guard last == 0 || now >= last + interval,
            lastLogged.compareExchange(expected: last, desired: max(now, 1), ordering: .relaxed).exchanged
        else {
            unlogged.wrappingAdd(1, ordering: .relaxed)
            return
        }
        log(unlogged.exchange(0, ordering: .relaxed))
    }
}

extension Logger.Metadata {
    /// `metadata` with `verso.unlogged_refusals` when some refusals went unlogged before this line.
    static func refusal(_ metadata: Logger.Metadata, unloggedBefore: Int) -> Logger.Metadata {
        guard unloggedBefore > 0 else { return metadata }
        return metadata.merging(["verso.unlogged_refusals": "\(unloggedBefore)"]) { first, _ in first }
    }
}
