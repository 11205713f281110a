import VersoCore
import VersoClient
import VersoWire

/// Selects cases by name: a case is selected when its name contains the pattern or the pattern,
/// read as a regular expression, matches part of it.
public struct CaseFilter: Sendable {
    public let pattern: String

    /// A filter for `pattern`, a substring or a regular expression.
    public init(_ pattern: String) {
        self.pattern = pattern
    }

    /// Whether the case named `name` is selected.
    public func matches(_ name: String) -> Bool {
        if name.contains(pattern) { return true }
        guard let regex = try? Regex(pattern) else { return false }
        return (try? regex.firstMatch(in: name)) != nil
    }
}

/// Runs conformance cases one after another against one server, each under its own key
/// prefix, then deletes every live key the run created.
public struct ConformanceRunner: Sendable {
    /// The name of the result that reports the final cleanup.
    public static let cleanupCaseName = "cleanup: every key the suite created is deleted at the end"

    /// The server under test.
    public let address: ServerAddress
    /// The cases that will run, in order.
    public let cases: [ConformanceCase]
    /// Every key the run creates starts with this: `conformance/<random>/` unless given.
    public let prefix: String
    /// How long one case may take before it is reported as failed.
    public var caseTimeout: Duration = .seconds(60)
    /// The tokens to present to a server started with `--auth`.
    public let tokens: SuiteTokens

    /// A runner for `cases` (by default the whole suite) against the server at `url`, keeping
    /// only the cases `only` selects (see `CaseFilter`).
    public init(
        url: String,
        only pattern: String? = nil,
        cases: [ConformanceCase] = ConformanceSuite.cases,
        prefix: String? = nil,
        tokens: SuiteTokens = SuiteTokens()
    ) throws(ConformanceError) {
        address = try ServerAddress(url)
        self.tokens = tokens
        if let pattern {
            let filter = CaseFilter(pattern)
            self.cases = cases.filter { filter.matches($0.name) }
            if self.cases.isEmpty { throw .noCaseMatches(pattern) }
        } else {
            self.cases = cases
        }
        self.prefix = prefix ?? "conformance/\(String(UInt64.random(in: 0 ... .max), radix: 36))/"
    }

    /// Checks the server answers, runs every case, cleans up, and reports. `progress` gets each
    /// result as soon as it is known (the cleanup's last).
    public func run(progress: (CaseResult) -> Void = { _ in }) async throws(ConformanceError) -> ConformanceReport {
        let start = ContinuousClock.now
        do {
            _ = try await WireConnection.with(url: address.url, compression: false, token: tokens.primary) {
                try await Peer($0).hello()
            }
        } catch {
            throw .unreachable(address.url, error)
        }
        // A server with --auth accepts a connection without a token but refuses its requests:
        // say so now, not in every case.
        let probe: JSONValue
        do {
            probe = try await WireConnection.with(url: address.url, compression: false, token: tokens.primary) { wire in
                try await Peer(wire).request(#"{"type":"list","prefix":\#(quoted(prefix)),"limit":1}"#)
            }
        } catch {
            throw .unreachable(address.url, error)
        }
        if probe.type == "error", let code = probe["code"]?.str, code == "unauthorized" || code == "forbidden" {
            throw .refused(address.url, "\(code): \(probe["message"]?.str ?? "")")
        }
        var results: [CaseResult] = []
        for (index, conformanceCase) in cases.enumerated() {
            let context = CaseContext(address: address, prefix: "\(prefix)\(index + 1)/", tokens: tokens)
            let result = await run(conformanceCase, in: context)
            progress(result)
            results.append(result)
        }
        let cleanup = await cleanUp()
        progress(cleanup)
        results.append(cleanup)
        return ConformanceReport(
            url: address.url,
            prefix: prefix,
            results: results,
            duration: ContinuousClock.now - start
        )
    }

    private func run(_ conformanceCase: ConformanceCase, in context: CaseContext) async -> CaseResult {
        let start = ContinuousClock.now
        let timeout = caseTimeout
        let outcome = await withTaskGroup(of: (CaseResult.Status, String?)?.self) { group in
            group.addTask {
                do {
                    try await conformanceCase.body(context)
                    return (.passed, nil)
                } catch let skip as ConformanceSkip {
                    return (.skipped, skip.reason)
                } catch let failure as ConformanceFailure {
                    return (.failed, failure.description)
                } catch {
                    return (.failed, "\(error)")
                }
            }
            group.addTask {
                // A time limit, not a stand-in for a condition: the case's own waits end first.
                try? await Task.sleep(for: timeout)
                return Task.isCancelled ? nil : (.failed, "the case did not finish within \(timeout)")
            }
            let first = await group.next() ?? nil
            group.cancelAll()
            return first ?? (.failed, "the case was cancelled")
        }
        return CaseResult(
            name: conformanceCase.name,
            status: outcome.0,
            detail: outcome.1,
            duration: ContinuousClock.now - start
        )
    }

    private func cleanUp() async -> CaseResult {
        let start = ContinuousClock.now
        do {
            let left = try await WireConnection.with(url: address.url, token: tokens.primary) { wire in
                let peer = Peer(wire)
                try await Self.deleteAll(under: prefix, peer: peer)
                return try await Self.liveRecords(under: prefix, peer: peer).map(\.key)
            }
            let detail =
                left.isEmpty
                ? nil : "\(left.count) keys under \(prefix) are still live: \(left.prefix(5).joined(separator: ", "))"
            return CaseResult(
                name: Self.cleanupCaseName,
                status: left.isEmpty ? .passed : .failed,
                detail: detail,
                duration: ContinuousClock.now - start
            )
        } catch {
            return CaseResult(
                name: Self.cleanupCaseName,
                status: .failed,
                detail: "could not clean up \(prefix): \(error)",
                duration: ContinuousClock.now - start
            )
        }
    }

    /// Every live record under `prefix`, in key order, read page by page.
    static func liveRecords(under prefix: String, peer: Peer) async throws -> [(key: String, version: Int64)] {
        var records: [(key: String, version: Int64)] = []
        var after = "null"
        while true {
            let page = try expectType(
                try await peer.request(#"{"type":"list","prefix":\#(quoted(prefix)),"after":\#(after),"limit":1000}"#),
                "records",
                "list \(prefix)"
            )
            for record in page["records"]?.array ?? [] {
                if let key = record["key"]?.str, let version = record["version"]?.int { records.append((key, version)) }
            }
            guard let next = page["next"]?.str else { return records }
            after = quoted(next)
        }
    }

    /// Deletes every live record under `prefix`: in txns of up to 500, one by one when a txn
    /// meets a conflict (someone else wrote meanwhile), until none is left.
    static func deleteAll(under prefix: String, peer: Peer) async throws {
        for _ in 0..<10 {
            let records = try await liveRecords(under: prefix, peer: peer)
            if records.isEmpty { return }
            for start in stride(from: 0, to: records.count, by: 500) {
                let batch = records[start..<min(start + 500, records.count)]
                let ops = batch.map { #"{"op":"delete","key":\#(quoted($0.key)),"base":\#($0.version)}"# }
                let reply = try await peer.request(#"{"type":"txn","ops":[\#(ops.joined(separator: ","))]}"#)
                guard reply.type != "ack" else { continue }
                for record in batch {
                    _ = try await peer.request(
                        #"{"type":"delete","key":\#(quoted(record.key)),"base":\#(record.version)}"#
                    )
                }
            }
        }
    }
}
