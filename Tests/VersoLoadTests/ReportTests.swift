import Foundation
import Histogram
import Testing
import VersoLoad
import VersoTesting

@Suite struct ReportTests {
    @Test func htmlReportIsSelfContainedWithTheSummaryAndAnSVGCurvePerLatency() async throws {
        try await TestServer.with { server in
            var options = ScenarioTests.options(server)
            options.keys = 8
            options.ops = 100
            let report = await Scenarios.mixed(options, readPercent: 50, subscriptions: 2)
            let file = FileManager.default.temporaryDirectory.appendingPathComponent(
                "verso-load-\(UUID().uuidString).html"
            )
            defer { try? FileManager.default.removeItem(at: file) }
            try Data(HTMLReport.render(report).utf8).write(to: file)
            let html = try String(contentsOf: file, encoding: .utf8)
            #expect(html.hasPrefix("<!DOCTYPE html>"))
            #expect(html.contains("<svg"))
            #expect(html.contains("<td>mixed</td>"))
            let lines = html.components(separatedBy: "<polyline").count - 1
            #expect(lines == report.latencies.filter { $0.count > 0 }.count)
            // Nothing is loaded from elsewhere.
            #expect(!html.contains("<script"))
            #expect(!html.contains("<link"))
            #expect(!html.contains("src="))
        }
    }

    @Test func percentileCurveRunsFromTheMedianRegionToTheMaximum() {
        var histogram = WorkerStats.histogram()
        for value in 1...1000 { histogram.record(UInt64(value)) }
        let summary = LatencySummary(name: "put", histogram: histogram)
        #expect(summary.count == 1000)
        #expect(summary.curve.first?.percentile == 0)
        #expect(summary.curve.last?.micros == summary.max)
        #expect(
            zip(summary.curve, summary.curve.dropFirst()).allSatisfy {
                $0.micros <= $1.micros && $0.percentile < $1.percentile
            }
        )
        #expect(LatencySummary(name: "none", histogram: WorkerStats.histogram()).curve.isEmpty)
    }

    @Test func openLoopScheduleSpacesSendsEvenlyAndStopsAtTheDeadline() async throws {
        // 1000 ops/s over 4 connections: each sends every 4 ms, connection 1 offset by 1 ms.
        var schedule = SendSchedule(rate: 1000, connections: 4, index: 1, start: 0)
        #expect(schedule.isOpenLoop)
        #expect(schedule.interval == 4_000_000)
        #expect(try await schedule.nextSend(deadline: .max) == 1_000_000)
        #expect(try await schedule.nextSend(deadline: .max) == 5_000_000)
        #expect(try await schedule.nextSend(deadline: 9_000_000) == nil)
        var closed = SendSchedule(rate: nil, connections: 4, index: 1)
        #expect(!closed.isOpenLoop)
        #expect(try await closed.nextSend(deadline: .max) != nil)
        #expect(try await closed.nextSend(deadline: 0) == nil)
    }

    @Test func openFileLimitSaysWhatTheOSRefused() throws {
        #expect(OpenFileLimit.raiseToHardLimit())
        let limit = OpenFileLimit.current()
        #expect(limit != nil && limit?.soft == limit?.hard)
        #expect(OpenFileLimit.problem(connections: 10) == nil)
        // The verdict for given limits, the same on every machine whatever this one allows.
        #expect(OpenFileLimit.problem(connections: 1024 - OpenFileLimit.reserve, soft: 1024, hard: 1024) == nil)
        let problem = try #require(
            OpenFileLimit.problem(connections: 1024 - OpenFileLimit.reserve + 1, soft: 1024, hard: 1024)
        )
        #expect(problem.contains("may open only 1024"))
        #expect(problem.contains("refused"))
        #expect(problem.contains("RLIMIT_NOFILE"))
        #expect(OpenFileLimit.problem(connections: Int.max, soft: .max, hard: .max) == nil)
    }
}
