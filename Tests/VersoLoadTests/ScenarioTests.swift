import Testing
import VersoLoad
import VersoServer
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
            var options = Self.options(server)
            // A count, not a time window: the whole suite running at once can keep a short
            // window from seeing any reply on a 2-core machine.
            options.ops = 200
            let report = await Scenarios.cas(options)
            #expect(report.failures == [])
            #expect(report.errors == 0)
            #expect(report.conflicts == 0)
            #expect(report.ops == 200)
            #expect(report.opsPerSecond > 0)
            #expect(report.p50 > 0 && report.p50 <= report.p99 && report.p99 <= report.max)
        }
    }

    @Test func mergeOnOwnFieldsLandsEveryEditAndKeepsEachFieldsLastValue() async throws {
        try await TestServer.with { server in
            var options = Self.options(server)
            options.ops = 200
            let report = await Scenarios.merge(options, records: 3, share: 1)
            #expect(report.failures == [])
            #expect(report.errors == 0)
            #expect(report.conflicts == 0)
            #expect(report.ops == 200)
            // Four clients on three records from stale bases: most writes must have merged.
            #expect(Int(report.extra["acknowledged as merged"] ?? "") ?? 0 > 0)
        }
    }

    @Test func mergeOnSharedFieldsConflictsOnlyOnTheSharedField() async throws {
        try await TestServer.with { server in
            var options = Self.options(server)
            options.ops = 200
            let report = await Scenarios.merge(options, records: 1, share: 2)
            #expect(report.failures == [])
            #expect(report.errors == 0)
            #expect(report.ops + report.conflicts == 200)
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

    @Test func casWithLargeValuesCompressesBothWaysWithoutErrors() async throws {
        try await TestServer.with { server in
            var options = Self.options(server)
            options.compression = true
            // Puts are well over the 256-byte threshold, so they go out deflated.
            options.valueSize = 2000
            options.ops = 200
            let report = await Scenarios.cas(options)
            #expect(report.failures == [])
            #expect(report.errors == 0)
            #expect(report.conflicts == 0)
            #expect(report.ops == 200)
            // A get's snapshot carries the 2000-byte value back, deflated by the server.
            let key = "load/\(options.runID)/0"
            let snapshot = try await LoadConnection.run(url: server.url, compression: true) { wire in
                try await wire.send(#"{"type":"get","key":""# + key + #""}"#)
                return try await wire.next()
            }
            #expect(ReplyScan.type(snapshot) == "snapshot")
            #expect(snapshot.contains(String(repeating: "x", count: 1992)))
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

    /// The writer connects before its subscribers, so a server that admits one connection
    /// refuses subscribers (503) and the run ends with that failure. Before, whichever
    /// connection came first took the one place, most likely a subscriber, and when the writer
    /// was refused its subscribers waited for its last change forever.
    @Test(.timeLimit(.minutes(1)))
    func fanoutAndConnectionsEndWhenTheServerRefusesAConnection() async throws {
        try await TestServer.with(configure: { $0.maxConnections = 1 }) { server in
            var options = Self.options(server)
            options.duration = 0.5
            let fanout = await Scenarios.fanout(options, writers: 1, subscribers: 8)
            #expect(fanout.errors > 0)
            #expect(fanout.failures.contains { $0.contains("503") }, "\(fanout.failures)")
            #expect(fanout.failures.contains { $0.contains("subscriber connection(s) failed") }, "\(fanout.failures)")
            options.connections = 8
            let connections = await Scenarios.connections(options)
            #expect(connections.errors > 0)
            #expect(connections.failures.contains { $0.contains("503") }, "\(connections.failures)")
            #expect(
                connections.failures.contains { $0.contains("subscriber connection(s) failed") },
                "\(connections.failures)"
            )
        }
    }

    @Test func mixedReportsGetPutAndUpdateFiguresWithoutErrors() async throws {
        try await TestServer.with { server in
            var options = Self.options(server)
            options.keys = 8
            // A count, not a duration: a busy machine can take a short window with connecting.
            options.ops = 200
            let report = await Scenarios.mixed(options, readPercent: 50, subscriptions: 8)
            #expect(report.failures == [])
            #expect(report.errors == 0)
            #expect(report.succeeded)
            #expect(report.ops > 0)
            #expect(report.latencies.map(\.name) == ["get+put", "get", "put", "update"])
            let gets = Int(report.extra["gets"] ?? "") ?? -1
            let acks = Int(report.extra["puts acknowledged"] ?? "") ?? -1
            #expect(gets > 0 && acks > 0)
            #expect(report.ops == 200)
            #expect(gets + acks + report.conflicts == report.ops)
            // Every connection subscribes to all 8 keys, so every acknowledged put is delivered.
            #expect((Int(report.extra["updates delivered"] ?? "") ?? 0) > 0)
            #expect(report.latencies[3].count > 0)
            #expect(report.latencies.allSatisfy { $0.p50 <= $0.p99 && $0.p99 <= $0.max })
        }
    }

    @Test func openLoopRunsReportTargetAchievedRateAndPercentiles() async throws {
        try await TestServer.with { server in
            var options = Self.options(server)
            options.rate = 200
            options.ops = 60
            let cas = await Scenarios.cas(options)
            #expect(cas.succeeded)
            #expect(cas.ops == 60)
            #expect(cas.rateTarget == 200)
            #expect((cas.achievedRate ?? 0) > 0)
            #expect(cas.p50 > 0 && cas.p50 <= cas.p99 && cas.p99 <= cas.max)
            #expect(cas.table.contains("achieved ops/s"))
            let mixed = await Scenarios.mixed(options, readPercent: 80, subscriptions: 1)
            #expect(mixed.succeeded)
            #expect(mixed.ops == 60)
            #expect(mixed.rateTarget == 200)
            #expect((mixed.achievedRate ?? 0) > 0)
            #expect(mixed.p99 > 0)
            let closed = await Scenarios.cas(Self.options(server))
            #expect(closed.rateTarget == nil && closed.achievedRate == nil)
        }
    }

    @Test func warmupIsLeftOutOfTheMeasuredWindow() async throws {
        try await TestServer.with { server in
            // A window long enough for some operations on a busy machine, and bounds that still
            // tell the window alone (1 s) from warm-up plus window (3 s).
            var options = Self.options(server)
            options.warmup = 2
            options.duration = 1
            let report = await Scenarios.cas(options)
            #expect(report.succeeded)
            #expect(report.ops > 0)
            #expect(report.seconds > 0 && report.seconds < 2)
            var fanout = Self.options(server)
            fanout.warmup = 2
            fanout.duration = 1
            let delivered = await Scenarios.fanout(fanout, writers: 1, subscribers: 2)
            #expect(delivered.succeeded)
            #expect(delivered.seconds > 0 && delivered.seconds < 2)
        }
    }

    @Test func replyScanReadsTypeAndIntegers() {
        let conflict = #"{"type":"conflict","key":"a","base":3,"version":4,"data":{"n":-2},"deleted":false}"#
        #expect(ReplyScan.type(conflict) == "conflict")
        #expect(ReplyScan.integer("version", in: conflict) == 4)
        #expect(ReplyScan.integer("n", in: conflict) == -2)
        #expect(ReplyScan.integer("seq", in: conflict) == nil)
        #expect(ReplyScan.type("[]") == nil)
        #expect(ReplyScan.string("key", in: conflict) == "a")
        #expect(ReplyScan.string("code", in: conflict) == nil)
    }

    @Test func replyScanTellsSubscriptionMessagesFromReplies() {
        #expect(
            ReplyScan.isSubscriptionMessage(
                #"{"type":"update","sub":1,"key":"a","version":2,"seq":3,"data":{},"deleted":false}"#
            )
        )
        #expect(ReplyScan.isSubscriptionMessage(#"{"type":"snapshot","sub":1,"key":"a","version":2,"data":{}}"#))
        #expect(!ReplyScan.isSubscriptionMessage(#"{"type":"snapshot","key":"a","version":2,"data":{}}"#))
        #expect(!ReplyScan.isSubscriptionMessage(#"{"type":"ack","key":"a","version":2,"seq":3}"#))
    }
}
