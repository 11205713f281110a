#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// This process's limit on open file descriptors (RLIMIT_NOFILE), which bounds how many
/// connections it can hold: each takes one descriptor.
public enum OpenFileLimit {
    /// Descriptors the process needs besides its connections (standard streams, the event
    /// loops' epoll and eventfd descriptors, /proc reads).
    public static let reserve = 64

    /// The soft and hard limits now, or nil if they cannot be read.
    public static func current() -> (soft: UInt64, hard: UInt64)? {
        var limit = rlimit()
        guard getrlimit(resource, &limit) == 0 else { return nil }
        return (UInt64(limit.rlim_cur), UInt64(limit.rlim_max))
    }

    /// Raises the soft limit to the hard limit. Returns whether the OS accepted (or no raise
    /// was needed).
    @discardableResult
    public static func raiseToHardLimit() -> Bool {
        var limit = rlimit()
        guard getrlimit(resource, &limit) == 0 else { return false }
        guard limit.rlim_cur < limit.rlim_max else { return true }
        var raised = limit
        raised.rlim_cur = limit.rlim_max
        if setrlimit(resource, &raised) == 0 { return true }
        #if canImport(Darwin)
            // macOS refuses more than OPEN_MAX for an "unlimited" hard limit.
            raised.rlim_cur = rlim_t(OPEN_MAX)
            return setrlimit(resource, &raised) == 0
        #else
            return false
        #endif
    }

    /// Why `connections` connections cannot be opened under the current limit, or nil if
    /// they fit.
    public static func problem(connections: Int) -> String? {
        guard let (soft, hard) = current() else { return nil }
        return problem(connections: connections, soft: soft, hard: hard)
    }

    /// Why `connections` connections cannot be opened under the limits `soft` and `hard`, or
    /// nil if they fit.
    public static func problem(connections: Int, soft: UInt64, hard: UInt64) -> String? {
        let needed = UInt64(max(0, connections)) + UInt64(reserve)
        guard soft < needed else { return nil }
        return "\(connections) connections need about \(needed) open files, but this process may open only \(soft): "
            + "the OS refused to raise the open-file limit (RLIMIT_NOFILE) further (soft \(soft), hard \(hard)). "
            + "Raise the hard limit (ulimit -Hn as root, LimitNOFILE= for a systemd unit, "
            + "/etc/security/limits.conf) or ask for fewer connections."
    }

    #if canImport(Glibc)
        private static let resource = __rlimit_resource_t(RLIMIT_NOFILE.rawValue)
    #else
        private static let resource = RLIMIT_NOFILE
    #endif
}
