import Foundation
import Testing
import VersoClient
@testable import VersoConformance
import VersoCore
import VersoServer
import VersoTesting
import VersoWire

@Suite("The conformance suite against local servers")
struct ConformanceSuiteTests {
    /// The cases that must skip against a server with tokens: no client can provoke them, or
    /// (forced writes) the server does not allow them.
    static let expectedSkipsWithTokens = Set(
        ConformanceSuite.notCheckable.map(\.name) + [
            "3.6 forced writes: when allowed, each takes version current+1 and is broadcast; a forced delete of a missing key is not_found"
        ]
    )
    /// Against a default server (no --auth, no token), the access cases skip as well.
    static let expectedSkips = expectedSkipsWithTokens.union(ConformanceSuite.access.map(\.name))

    @Test("every case of the whole suite passes against a default server")
    func wholeSuitePasses() async throws {
        let report = try await WholeRun.shared.outcome().report
        for failure in report.failures {
            Issue.record("\(failure.name): \(failure.detail ?? "")")
        }
        #expect(report.results.count == ConformanceSuite.cases.count + 1, "every case ran, then the cleanup")
        let skipped = Set(report.results.filter { $0.status == .skipped }.map(\.name))
        #expect(skipped == Self.expectedSkips, "only the cases that cannot run here skip")
        #expect(report.summaryLine == "\(report.results.count - skipped.count) passed, 0 failed")
        #expect(report.duration < .seconds(60), "the whole suite took \(report.duration)")
    }

    @Test(
        "with a full and a restricted token, every case passes against a server with --auth tokens, the access cases included; without a token the run stops at once and says why"
    )
    func againstAuthenticatingServer() async throws {
        let directory = TestServer.makeDataDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let file = (directory as NSString).appendingPathComponent("tokens.json")
        let json = #"""
            {"tokens":[
              {"token":"suite-0123456789","user":"suite","rules":[{"prefix":"","allow":["read","write"]}]},
              {"token":"limited-0123456789","user":"limited","rules":[{"prefix":"conformance/","allow":["read","write"]}]}
            ]}
            """#
        try Data(json.utf8).write(to: URL(fileURLWithPath: file))
        try FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: file)
        try await TestServer.with(configure: { $0.authentication = .tokens(file: file) }) { server in
            let tokens = SuiteTokens(primary: "suite-0123456789", restricted: "limited-0123456789")
            let report = try await ConformanceRunner(url: server.url, tokens: tokens).run()
            for failure in report.failures { Issue.record("\(failure.name): \(failure.detail ?? "")") }
            let skipped = Set(report.results.filter { $0.status == .skipped }.map(\.name))
            #expect(skipped == Self.expectedSkipsWithTokens, "the access cases ran")
            #expect(report.results.filter { $0.name.hasPrefix("2.1 ") }.count == ConformanceSuite.access.count - 1)
            await #expect {
                _ = try await ConformanceRunner(url: server.url, only: "GET /healthz").run()
            } throws: { error in
                "\(error)".contains("refuses the suite's requests") && "\(error)".contains("--token")
            }
        }
    }

    @Test("after the run, every key under the suite's prefix is deleted")
    func nothingLeftBehind() async throws {
        let outcome = try await WholeRun.shared.outcome()
        #expect(outcome.report.prefix.hasPrefix("conformance/"))
        #expect(
            outcome.liveKeys.isEmpty,
            "live keys left under \(outcome.report.prefix): \(outcome.liveKeys.prefix(5))"
        )
        #expect(outcome.createdKeys.count > 100, "the run created keys under its prefix: \(outcome.createdKeys.count)")
        #expect(
            outcome.keysNotEndingDeleted.isEmpty,
            "keys whose last change is not a delete: \(outcome.keysNotEndingDeleted.prefix(5))"
        )
    }

    @Test("the forced-write cases pass against a server that allows force")
    func forceAllowed() async throws {
        try await TestServer.with(configure: { $0.allowForce = true }) { server in
            let report = try await ConformanceRunner(url: server.url, only: #"^3\.6 "#).run()
            for failure in report.failures { Issue.record("\(failure.name): \(failure.detail ?? "")") }
            let allowed = report.results.first { $0.name.hasPrefix("3.6 forced writes: when allowed") }
            #expect(allowed?.status == .passed)
            let refused = report.results.first { $0.name.hasPrefix("3.6 forced writes: every kind is refused") }
            #expect(refused?.status == .skipped)
        }
    }

    @Test(
        "a real case fails against a server that breaks its rule: 2 MiB + 1 bytes is accepted by a server whose limit is 4 MiB"
    )
    func realCaseCanFail() async throws {
        try await TestServer.with(configure: { $0.maxMessageBytes = 4 << 20 }) { server in
            let report = try await ConformanceRunner(url: server.url, only: "2 MiB + 1 bytes closes the connection")
                .run()
            #expect(
                report.results.map(\.name) == [
                    "1.1 limits: a message of 2 MiB + 1 bytes closes the connection with 1009",
                    ConformanceRunner.cleanupCaseName,
                ]
            )
            let result = try #require(report.results.first)
            #expect(result.status == .failed)
            #expect(result.detail?.contains("expected the server to close with 1009") == true, "\(result.detail ?? "")")
            #expect(result.line.hasPrefix("FAIL 1.1 limits: a message of 2 MiB + 1 bytes"))
            #expect(report.summaryLine == "1 passed, 1 failed")
            #expect(report.results.last?.status == .passed, "the record the server wrongly accepted is cleaned up")
        }
    }

    @Test("the runner reports unmet expectations, errors, skips and time-outs as such, and cleans up after all of them")
    func runnerOutcomes() async throws {
        let cases = [
            ConformanceCase("9 custom: passes") { context in
                try await context.connect { peer in _ = try await peer.put(context.key("kept"), base: 0) }
            },
            ConformanceCase("9 custom: an expectation the server does not meet") { context in
                try await context.connect { peer in
                    let ack = try await peer.put(context.key("a"), base: 0)
                    if ack.version != 2 {
                        throw ConformanceFailure.mismatch(
                            "the version of a new key",
                            expected: "2",
                            actual: "\(ack.version)"
                        )
                    }
                }
            },
            ConformanceCase("9 custom: throws another error") { _ in throw TestFailure("boom") },
            ConformanceCase("9 custom: skips") { _ in throw ConformanceSkip("not here") },
            ConformanceCase("9 custom: hangs") { _ in try await Task.sleep(for: .seconds(60)) },
        ]
        try await TestServer.with { server in
            var runner = try ConformanceRunner(url: server.url, cases: cases)
            runner.caseTimeout = .seconds(8)  // generous: every suite runs in parallel on a small, shared machine
            var streamed: [String] = []
            let report = try await runner.run { streamed.append($0.name) }
            #expect(streamed == report.results.map(\.name), "progress gets every result in order")
            #expect(report.results.map(\.status) == [.passed, .failed, .failed, .skipped, .failed, .passed])
            #expect(report.results[1].detail == "the version of a new key: expected 2, got 1")
            #expect(report.results[2].detail == "boom")
            #expect(report.results[3].detail == "not here")
            #expect(report.results[4].detail?.contains("did not finish within") == true)
            #expect(report.summaryLine == "2 passed, 3 failed")
            let live = try await WireConnection.with(url: server.url) {
                try await WholeRun.liveKeys(under: report.prefix, wire: $0)
            }
            #expect(live.isEmpty, "keys left after failed cases: \(live)")
        }
    }

    @Test("the JSON report has the totals and one object per case")
    func jsonReport() async throws {
        try await TestServer.with { server in
            let report = try await ConformanceRunner(url: server.url, only: "GET /healthz").run()
            let json = try JSONParser.parse(report.json.encodedString)
            #expect(json["passed"] == .integer(2))
            #expect(json["failed"] == .integer(0))
            #expect(json["skipped"] == .integer(0))
            #expect(json["url"] == .string(server.url))
            guard case .array(let cases)? = json["cases"] else { Issue.record("no cases array"); return }
            #expect(cases.first?["name"] == .string("1 transport: GET /healthz answers 200"))
            #expect(cases.first?["status"] == .string("passed"))
            #expect(cases.first?["detail"] == .null)
            #expect(cases.first?["milliseconds"]?.integerValue != nil)
        }
    }

    @Test(
        "--only selects by substring or regular expression; a pattern that selects nothing and a bad URL are clear errors"
    )
    func selection() throws {
        let names = ConformanceSuite.cases.map(\.name)
        #expect(names.filter(CaseFilter("3.4 txn").matches).count == 6)
        #expect(names.filter(CaseFilter(#"^5 guarantee [12]:"#).matches).count == 3)
        #expect(names.filter(CaseFilter("((").matches).isEmpty, "an invalid regular expression is only a substring")
        #expect(throws: ConformanceError.self) {
            try ConformanceRunner(url: "ws://127.0.0.1:1/v1/ws", only: "no such case")
        }
        for url in ["http://127.0.0.1:7070/v1/ws", "wss://example.com/v1/ws", "not a url", "ws:///v1/ws"] {
            #expect(throws: ConformanceError.self, "\(url)") { try ServerAddress(url) }
        }
        let address = try ServerAddress("ws://localhost:7070/v1/ws")
        #expect(address.host == "localhost" && address.port == 7070 && address.path == "/v1/ws")
    }

    @Test("case names are unique and each starts with a section of Protocol.md")
    func caseNames() throws {
        let names = ConformanceSuite.cases.map(\.name)
        #expect(Set(names).count == names.count)
        let protocolURL = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent(
            "../../Protocol.md"
        )
        let headings = try String(contentsOf: protocolURL, encoding: .utf8).split(separator: "\n")
            .filter { $0.hasPrefix("## ") || $0.hasPrefix("### ") }
            .compactMap {
                $0.split(separator: " ").dropFirst().first.map {
                    $0.trimmingCharacters(in: CharacterSet(charactersIn: "."))
                }
            }
        for name in names {
            let section = String(name.prefix { $0 != " " })
            #expect(headings.contains(section), "\(name): no section \(section) in Protocol.md")
        }
    }

    @Test("member order is checked within data only, byte by byte, with escapes decoded")
    func memberOrder() {
        #expect(
            MemberOrder.firstViolation(in: #"{"type":"x","data":{"a":1,"b":{"c":1,"d":2}}}"#, within: "data") == nil
        )
        #expect(MemberOrder.firstViolation(in: #"{"data":{"b":1,"a":2}}"#, within: "data") != nil)
        #expect(MemberOrder.firstViolation(in: #"{"data":{"a":{"y":1,"x":2}}}"#, within: "data") != nil)
        #expect(MemberOrder.firstViolation(in: #"{"data":[{"y":1,"x":2}]}"#, within: "data") != nil)
        #expect(
            MemberOrder.firstViolation(in: #"{"data":{"\u00e9":1,"z":2}}"#, within: "data") != nil,
            "é (C3 A9) sorts after z"
        )
        #expect(MemberOrder.firstViolation(in: #"{"data":{"a\"b":1,"a]":2}}"#, within: "data") == nil)
        #expect(
            MemberOrder.firstViolation(in: #"{"z":1,"data":{}}"#, within: "data") == nil,
            "the envelope is not checked"
        )
    }

    @Test("a failed expectation says what was expected and what came, with JSON as text")
    func failureMessages() {
        let mismatch = #expect(throws: ConformanceFailure.self) {
            try expectEqual(JSONValue?.none, .integer(1), "the rid")
        }
        #expect(mismatch?.description == "the rid: expected 1, got nothing")
        let wrongType = #expect(throws: ConformanceFailure.self) {
            try expectType(.object(["type": .string("ack")]), "conflict", "put on a stale base")
        }
        #expect(wrongType?.description == #"put on a stale base: expected a "conflict" message, got {"type":"ack"}"#)
        #expect(describe(String(repeating: "x", count: 400)).hasSuffix("… (402 bytes)"))
    }
}
