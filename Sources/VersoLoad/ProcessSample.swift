import Foundation

/// CPU time and memory of a process on Linux, from /proc/PID/stat and /proc/PID/status.
public struct ProcessSample: Sendable {
    /// User plus system CPU seconds.
    public let cpuSeconds: Double
    /// Resident set size in bytes.
    public let rssBytes: Int

    /// Reads the process's figures now, or nil if /proc does not have them.
    public static func read(pid: Int32) -> ProcessSample? {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
            let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
            let close = stat.lastIndex(of: ")")
        else { return nil }
        // Fields after the command name (which may hold spaces) start with field 3, the state;
        // utime and stime are fields 14 and 15.
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        guard fields.count > 12, let utime = Double(fields[11]), let stime = Double(fields[12]) else { return nil }
        let ticks = Double(sysconf(Int32(_SC_CLK_TCK)))
        var rss = 0
        for line in status.split(separator: "\n") where line.hasPrefix("VmRSS:") {
            rss = (Int(line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first ?? "") ?? 0) * 1024
        }
        return ProcessSample(cpuSeconds: (utime + stime) / ticks, rssBytes: rss)
    }
}
