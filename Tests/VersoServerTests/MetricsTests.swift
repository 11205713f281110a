import Foundation
import Testing
import VersoCore
import VersoServer
import VersoTesting
import VersoWire

/// The value of the sample `name` (with its labels, as in `verso_writes_total{outcome="ack"}`)
/// in a Prometheus text exposition; nil when it is not there.
private func sample(_ name: String, in text: String) -> Double? {
    for line in text.split(separator: "\n") where line.hasPrefix(name + " ") {
        return Double(line.dropFirst(name.count + 1))
    }
    return nil
}

private func scrape(_ port: Int, token: String? = nil) async throws -> RawHTTP.Response {
    let authorization = token.map { "Authorization: Bearer \($0)\r\n" } ?? ""
    return try await RawHTTP.exchange(
        port: port,
        request: "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\(authorization)Connection: close\r\n\r\n"
    )
}

@Suite("Metrics: GET /metrics in the Prometheus text format (--metrics)")
struct MetricsTests {
    @Test(
        "the counters move with real traffic: connections, requests and messages out by type, writes by outcome, commits, deliveries, subscriptions, the last seq, the database size and the process"
    )
    func countersMove() async throws {
        try await TestServer.with(configure: { $0.metrics = true }) { server in
            let before = try await scrape(server.port)
            #expect(before.status == 200 && before.headers["content-type"]?.hasPrefix("text/plain") == true)
            let acksBefore = sample(#"verso_writes_total{outcome="ack"}"#, in: before.body) ?? 0
            try await TestClient.with(url: server.url) { writer in
                try await TestClient.with(url: server.url) { watcher in
                    _ = try await watcher.request(#"{"type":"subscribe","prefix":"m/"}"#)
                    for base in Int64(0)..<5 { try await put(writer, "m/1", base: base) }
                    #expect(
                        try await writer.request(#"{"type":"put","key":"m/1","base":0,"data":{}}"#).type == "conflict"
                    )
                    _ = try await writer.request(#"{"type":"get","key":"m/1"}"#)
                    _ = try await writer.request("not json")
                    for _ in 0..<5 { #expect(try await watcher.next().type == "update") }
                    let text = try await scrape(server.port).body
                    #expect(sample(#"verso_writes_total{outcome="ack"}"#, in: text) == acksBefore + 5, "\(text)")
                    #expect(sample(#"verso_writes_total{outcome="conflict"}"#, in: text) == 1)
                    #expect(sample(#"verso_requests_total{type="put"}"#, in: text) == 6)
                    #expect(sample(#"verso_requests_total{type="get"}"#, in: text) == 1)
                    #expect(sample(#"verso_requests_total{type="invalid"}"#, in: text) == 1)
                    #expect(sample(#"verso_requests_total{type="subscribe"}"#, in: text) == 1)
                    #expect(sample("verso_connections_open", in: text) == 2)
                    #expect((sample("verso_connections_total", in: text) ?? 0) >= 2)
                    #expect(sample("verso_subscriptions", in: text) == 1)
                    #expect(sample("verso_deliveries_total", in: text) == 5)
                    #expect(sample(#"verso_messages_out_total{type="update"}"#, in: text) == 5)
                    #expect(sample(#"verso_messages_out_total{type="conflict"}"#, in: text) == 1)
                    #expect(sample(#"verso_messages_out_total{type="subscribed"}"#, in: text) == 1)
                    #expect(sample(#"verso_messages_out_total{type="ack"}"#, in: text) == acksBefore + 5)
                    #expect(sample(#"verso_messages_out_total{type="error"}"#, in: text) == 1)
                    #expect(sample("verso_last_seq", in: text) == 5)
                    #expect(sample("verso_log_oldest_seq", in: text) == 1)
                    #expect(sample("verso_log_seqs", in: text) == 5)
                    #expect(sample("verso_queued_bytes_max_connection", in: text) != nil)
                    #expect((sample("verso_commit_sync_seconds_count", in: text) ?? 0) >= 5)
                    #expect((sample("verso_commit_batch_size_count", in: text) ?? 0) >= 5)
                    #expect((sample("verso_commit_duration_seconds_count", in: text) ?? 0) >= 5)
                    #expect((sample("verso_database_bytes", in: text) ?? 0) > 0)
                    #expect((sample("process_resident_memory_bytes", in: text) ?? 0) > 1_000_000)
                    #expect(sample("process_cpu_seconds_total", in: text) != nil)
                }
            }
        }
    }

    @Test("without --metrics there is no /metrics")
    func offByDefault() async throws {
        let status = try await TestServer.with { server in try await scrape(server.port).status }
        #expect(status == 404)
    }

    @Test("with --auth, /metrics needs a bearer token that may read every key: 401 without one, 403 for a narrower one")
    func guarded() async throws {
        let directory = TestServer.makeDataDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let file = (directory as NSString).appendingPathComponent("tokens.json")
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        try Data(
            """
            {"tokens": [
              {"token": "ops-token-0123456789", "user": "ops", "rules": [{"prefix": "", "allow": ["read"]}]},
              {"token": "ann-token-0123456789", "user": "ann", "rules": [{"prefix": "notes/", "allow": ["read"]}]}
            ]}
            """.utf8
        ).write(to: URL(fileURLWithPath: file))
        try await TestServer.with(configure: {
            $0.metrics = true
            $0.authentication = .tokens(file: file)
        }) { server in
            #expect(try await scrape(server.port).status == 401)
            #expect(try await scrape(server.port, token: "not-a-token").status == 401)
            #expect(try await scrape(server.port, token: "ann-token-0123456789").status == 403)
            // A write the token may not make counts as refused, by its code.
            try await TestClient.with(url: server.url, token: "ann-token-0123456789") { ann in
                let refused = try await ann.request(#"{"type":"put","key":"notes/x","base":0,"data":{}}"#)
                #expect(refused["code"]?.str == "forbidden")
            }
            let allowed = try await scrape(server.port, token: "ops-token-0123456789")
            #expect(allowed.status == 200 && allowed.body.contains("verso_connections_open"))
            #expect(sample(#"verso_writes_total{outcome="refused"}"#, in: allowed.body) == 1)
            #expect(sample(#"verso_write_refusals_total{code="forbidden"}"#, in: allowed.body) == 1)
        }
    }

    @Test(
        "every metric the shipped Grafana dashboard (deploy/grafana-dashboard.json) queries is one the server exports"
    )
    func dashboardMatches() async throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().path
        let text = try String(contentsOfFile: root + "/deploy/grafana-dashboard.json", encoding: .utf8)
        guard case .array(let panels)? = try JSONParser.parse(text)["panels"] else {
            throw TestFailure("the dashboard has no panels")
        }
        var names = Set<String>()
        for panel in panels {
            guard case .array(let targets)? = panel["targets"] else { continue }
            for target in targets {
                let expression = try #require(target["expr"]?.stringValue)
                let pattern = try Regex(#"(verso|process)_[a-z_]+"#)
                for match in expression.matches(of: pattern) { names.insert(String(expression[match.range])) }
            }
        }
        #expect(names.count >= 10, "\(names)")
        let exported = try await TestServer.with(configure: { $0.metrics = true }) { server in
            try await TestClient.with(url: server.url) { client in try await put(client, "d/1", base: 0) }
            return try await scrape(server.port).body
        }
        for name in names.sorted() {
            #expect(
                exported.split(separator: "\n").contains { $0.hasPrefix(name + " ") || $0.hasPrefix(name + "{") },
                "the dashboard queries \(name), which /metrics does not have"
            )
        }
    }
}
