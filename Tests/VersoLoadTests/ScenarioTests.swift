import Testing
import VersoLoad
import VersoTesting

@Suite struct ScenarioTests {
    static func options(_ server: TestServer) -> LoadOptions {
        var options = LoadOptions()
        options.url = server.url
        options.progress = false
        options.connections = 4
        options.keys = 16
        options.duration = 0.5
        return options
    }

    @Test func casOnOwnKeysAcknowledgesEveryWriteWithoutConflict() async throws {
        try await TestServer.with { server in
            let report = await Scenarios.cas(Self.options(server))
            #expect(report.failures == [])
            #expect(report.errors == 0)
            #expect(report.conflicts == 0)
            #expect(report.ops > 0)
            #expect(report.opsPerSecond > 0)
            #expect(report.p50 > 0 && report.p50 <= report.p99 && report.p99 <= report.max)
        }
    }

    @Test func casOnHotKeysRetriesConflictsWithoutCompression() async throws {
        try await TestServer.with { server in
            var options = Self.options(server)
            options.hot = 2
            options.compression = false
            options.ops = 200
            let report = await Scenarios.cas(options)
            #expect(report.errors == 0)
            #expect(report.failures == [])
            #expect(report.ops == 200 - report.conflicts)
            #expect(report.p99 > 0)
        }
    }

    @Test func counterCountsExactlyClientsTimesIncrements() async throws {
        try await TestServer.with { server in
            var options = Self.options(server)
            options.hot = 2
            options.ops = 10
            let report = await Scenarios.counter(options)
            #expect(report.failures == [])
            #expect(report.succeeded)
            #expect(report.ops == 40)
            #expect(report.extra["final count"] == "40")
            #expect(report.p50 > 0)
        }
    }

    @Test func fanoutDeliversEveryWriteToEverySubscriber() async throws {
        try await TestServer.with { server in
            var options = Self.options(server)
            options.duration = 0.5
            let report = await Scenarios.fanout(options, writers: 2, subscribers: 3)
            #expect(report.failures == [])
            #expect(report.errors == 0)
            #expect(report.ops > 0)
            #expect(report.p50 > 0 && report.p99 <= report.max)
            // Every write in the window reaches the 3 subscribers of its key (a write near the
            // window's edges may count on one side and its deliveries on the other).
            let expected = Int(report.extra["deliveries expected"] ?? "") ?? -1
            #expect(abs(report.ops - expected) <= 2 * 3 * 2)
        }
    }

    @Test func connectionsDeliversOneChangeToEveryIdleSubscriber() async throws {
        try await TestServer.with { server in
            var options = Self.options(server)
            options.connections = 20
            let report = await Scenarios.connections(options)
            #expect(report.failures == [])
            #expect(report.errors == 0)
            #expect(report.ops == 20)
            #expect(report.max > 0)
            #expect(report.extra["time to deliver to all ms"] != nil)
        }
    }

    @Test func replyScanReadsTypeAndIntegers() {
        let conflict = #"{"type":"conflict","key":"a","base":3,"version":4,"data":{"n":-2},"deleted":false}"#
        #expect(ReplyScan.type(conflict) == "conflict")
        #expect(ReplyScan.integer("version", in: conflict) == 4)
        #expect(ReplyScan.integer("n", in: conflict) == -2)
        #expect(ReplyScan.integer("seq", in: conflict) == nil)
        #expect(ReplyScan.type("[]") == nil)
    }
}
