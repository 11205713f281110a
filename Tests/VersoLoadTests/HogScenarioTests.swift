import Testing
import VersoLoad
import VersoTesting

@Suite struct HogScenarioTests {
    @Test(arguments: HogAttack.allCases)
    func hogReportsVictimLatencyAndAttackerCounts(attack: HogAttack) async throws {
        try await TestServer.with { server in
            var options = LoadOptions()
            options.url = server.url
            options.progress = false
            options.connections = 3
            options.keys = 6
            // A count, not a duration: the run ends when the victims have made 60 puts.
            options.ops = 60
            let report = await Scenarios.hog(options, recordSize: 60_000, pipeline: 8, attack: attack)
            #expect(report.failures == [])
            #expect(report.succeeded)
            #expect(report.scenario == "hog")
            #expect(report.ops == 60)
            #expect(report.conflicts == 0)
            #expect(report.p50 > 0 && report.p50 <= report.p99 && report.p99 <= report.max)
            let answered = Int(report.extra["attacker requests answered"] ?? "") ?? 0
            let patches = Int(report.extra["attacker patches acknowledged"] ?? "") ?? -1
            let conflicts = Int(report.extra["attacker conflicts"] ?? "") ?? -1
            #expect(answered > 0 && answered % 8 == 0)
            #expect(patches + conflicts == answered)
            switch attack {
            case .patch: #expect(conflicts == 0)
            case .stale: #expect(patches == 0)
            case .mixed: #expect(patches == conflicts)
            }
        }
    }
}
