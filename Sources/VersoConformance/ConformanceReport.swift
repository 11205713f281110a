import VersoCore

/// How one case went.
public struct CaseResult: Sendable {
    /// Whether the server met the rule, broke it, or could not be checked.
    public enum Status: String, Sendable {
        case passed, failed, skipped
    }

    /// The case's name, starting with its Protocol.md section.
    public let name: String
    public let status: Status
    /// What differed from Protocol.md (failed), or why the case could not run (skipped).
    public let detail: String?
    /// How long the case took.
    public let duration: Duration

    /// `PASS name`, `FAIL name: what differed` or `SKIP name: why`, on one line.
    public var line: String {
        let label =
            switch status {
            case .passed: "PASS"
            case .failed: "FAIL"
            case .skipped: "SKIP"
            }
        let detail = detail.map { ": " + $0.replacingNewlines() } ?? ""
        return "\(label) \(name)\(detail)"
    }

    var json: JSONValue {
        .object([
            "name": .string(name),
            "status": .string(status.rawValue),
            "detail": detail.map(JSONValue.string) ?? .null,
            "milliseconds": .integer(duration.milliseconds),
        ])
    }
}

/// The outcome of a run: every case's result, in the order they ran, and the totals.
public struct ConformanceReport: Sendable {
    /// The server's URL.
    public let url: String
    /// The prefix every key the run created starts with.
    public let prefix: String
    /// Every case's result in the order they ran, the cleanup's last.
    public let results: [CaseResult]
    /// How long the whole run took.
    public let duration: Duration

    /// How many results passed, failed, and were skipped.
    public var passed: Int { results.count(where: { $0.status == .passed }) }
    public var failed: Int { results.count(where: { $0.status == .failed }) }
    public var skipped: Int { results.count(where: { $0.status == .skipped }) }
    /// The results that failed.
    public var failures: [CaseResult] { results.filter { $0.status == .failed } }

    /// The closing line: exactly `N passed, N failed`.
    public var summaryLine: String { "\(passed) passed, \(failed) failed" }

    /// The report as one JSON object: `url`, `prefix`, `passed`, `failed`, `skipped`,
    /// `milliseconds` and `cases` (each with `name`, `status`, `detail`, `milliseconds`).
    public var json: JSONValue {
        .object([
            "url": .string(url),
            "prefix": .string(prefix),
            "passed": .integer(Int64(passed)),
            "failed": .integer(Int64(failed)),
            "skipped": .integer(Int64(skipped)),
            "milliseconds": .integer(duration.milliseconds),
            "cases": .array(results.map(\.json)),
        ])
    }
}

extension Duration {
    /// Whole milliseconds.
    var milliseconds: Int64 {
        components.seconds * 1000 + components.attoseconds / 1_000_000_000_000_000
    }
}

extension String {
    /// The text on one line, newlines shown as spaces.
    func replacingNewlines() -> String {
        String(map { $0.isNewline ? " " : $0 })
    }
}
