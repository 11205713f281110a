import VersoClient
import VersoConformance
import VersoCore
import VersoTesting
import VersoWire

/// The whole suite, run once against a default local server and shared by the tests that look
/// at that run, with what the store holds under the suite's prefix afterwards.
actor WholeRun {
    struct Outcome: Sendable {
        let report: ConformanceReport
        /// Live records under the suite's prefix after the run, listed here, not by the runner.
        let liveKeys: [String]
        /// Every change ever made under the prefix, replayed from seq 0: the keys it created,
        /// and the keys whose last change is not a delete.
        let createdKeys: Set<String>
        let keysNotEndingDeleted: [String]
    }

    static let shared = WholeRun()

    private enum State {
        case idle
        case running([CheckedContinuation<Outcome, any Error>])
        case done(Result<Outcome, any Error>)
    }

    private var state = State.idle

    /// Runs the suite the first time; later callers wait for that run and share its outcome.
    func outcome() async throws -> Outcome {
        switch state {
        case .done(let result): return try result.get()
        case .running(var waiting):
            return try await withCheckedThrowingContinuation { continuation in
                waiting.append(continuation)
                state = .running(waiting)
            }
        case .idle:
            state = .running([])
            let result: Result<Outcome, any Error>
            do { result = .success(try await Self.run()) } catch { result = .failure(error) }
            // Waiters joined while the run was in flight: read the state again.
            if case .running(let waiting) = state {
                for continuation in waiting { continuation.resume(with: result) }
            }
            state = .done(result)
            return try result.get()
        }
    }

    private static func run() async throws -> Outcome {
        try await TestServer.with { server in
            let report = try await ConformanceRunner(url: server.url).run()
            return try await WireConnection.with(url: server.url) { wire in
                let live = try await liveKeys(under: report.prefix, wire: wire)
                let (created, notDeleted) = try await history(under: report.prefix, wire: wire)
                return Outcome(report: report, liveKeys: live, createdKeys: created, keysNotEndingDeleted: notDeleted)
            }
        }
    }

    /// The live keys under `prefix`, page by page.
    static func liveKeys(under prefix: String, wire: WireConnection) async throws -> [String] {
        var keys: [String] = []
        var after = JSONValue.null
        while true {
            let request: JSONValue = .object([
                "type": .string("list"), "prefix": .string(prefix), "after": after, "limit": .integer(1000),
            ])
            let page = try await wire.request(request.encodedString)
            guard page["type"]?.stringValue == "records", case .array(let records)? = page["records"] else {
                throw TestFailure("list \(prefix): \(page.encodedString)")
            }
            keys += records.compactMap { $0["key"]?.stringValue }
            guard let next = page["next"], next != .null else { return keys }
            after = next
        }
    }

    /// Replays every change under `prefix` since seq 0 (the server is this run's alone) and
    /// returns the keys created and those whose last change is not a delete. A marker key is
    /// written and deleted last, so its delete ends the replay.
    private static func history(under prefix: String, wire: WireConnection) async throws -> (Set<String>, [String]) {
        let marker = prefix + "~end-of-history"
        let subscribe: JSONValue = .object([
            "type": .string("subscribe"), "prefix": .string(prefix), "since": .integer(0),
        ])
        let subscribed = try await wire.request(subscribe.encodedString)
        guard subscribed["type"]?.stringValue == "subscribed", subscribed["reset"] == nil else {
            throw TestFailure("subscribe since 0: \(subscribed.encodedString)")
        }
        try await wire.send(
            JSONValue.object([
                "type": .string("put"), "key": .string(marker), "base": .integer(0), "data": .object([:]),
            ]).encodedString
        )
        try await wire.send(
            JSONValue.object(["type": .string("delete"), "key": .string(marker), "base": .integer(1)]).encodedString
        )
        var lastDeleted: [String: Bool] = [:]
        while true {
            let message = try await wire.next()
            guard message["type"]?.stringValue == "update", let key = message["key"]?.stringValue else { continue }
            if key == marker {
                if message["deleted"] == .bool(true) { break } else { continue }
            }
            lastDeleted[key] = message["deleted"] == .bool(true)
        }
        return (Set(lastDeleted.keys), lastDeleted.filter { !$0.value }.map(\.key).sorted())
    }
}
