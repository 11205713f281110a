#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif
import Logging

/// Each WebSocket connection holds one file descriptor, and the usual soft limit (1,024) would
/// refuse connections long before memory runs out: raise the soft limit to the hard limit.
enum FileLimit {
    /// Raises the soft RLIMIT_NOFILE to the hard limit, logs the limit in force and returns it.
    @discardableResult
    static func raise(logger: Logger) -> Int {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return Int.max }
        if limit.rlim_cur < limit.rlim_max {
            var raised = limit
            raised.rlim_cur = limit.rlim_max
            if setrlimit(Int32(RLIMIT_NOFILE.rawValue), &raised) == 0 {
                limit = raised
            } else {
                logger.warning(
                    "could not raise the open-file limit",
                    metadata: ["verso.limit": "\(limit.rlim_cur)", "verso.hard_limit": "\(limit.rlim_max)"]
                )
            }
        }
        logger.info(
            "open-file limit",
            metadata: [
                "verso.limit": "\(limit.rlim_cur)",
                "verso.connections_at_most": "\(limit.rlim_cur > 64 ? limit.rlim_cur - 64 : 0)",
            ]
        )
        return limit.rlim_cur >= UInt64(Int.max) ? Int.max : Int(limit.rlim_cur)
    }
}
