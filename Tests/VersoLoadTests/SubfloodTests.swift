import Testing
import VersoLoad
import VersoTesting

@Suite struct SubfloodTests {
    @Test func subfloodWritesWhileIdleConnectionsHoldPrefixSubscriptions() async throws {
        try await TestServer.with { server in
            var options = ScenarioTests.options(server)
            options.connections = 3
            options.ops = 100
            let report = await Scenarios.subflood(options, writers: 2, subscriptions: 200)
            #expect(report.failures == [])
            #expect(report.errors == 0)
            #expect(report.ops == 100)
            #expect(report.p50 > 0 && report.p50 <= report.p99 && report.p99 <= report.max)
            #expect(report.extra["prefix subscriptions held"] == "600")
        }
    }

    @Test func subfloodFailsCleanlyPastTheServersLimitPerConnection() async throws {
        try await TestServer.with { server in
            var options = ScenarioTests.options(server)
            options.connections = 1
            options.ops = 10
            let report = await Scenarios.subflood(options, writers: 1, subscriptions: 1001)
            #expect(!report.succeeded)
            #expect(report.failures.contains { $0.contains("too_large") })
        }
    }
}
