import Foundation
import Synchronization

/// What the attacking connection of `hog` sends.
public enum HogAttack: String, Sendable, CaseIterable {
    /// Tiny merge patches on the large record, each on the version the one before it makes:
    /// every one is accepted and rewrites the whole record.
    case patch
    /// Tiny puts on a stale base: every one conflicts, and its reply carries the whole record.
    case stale
    /// Patches and stale puts in turn.
    case mixed
}

extension Scenarios {
    /// What the attacker of `hog` had answered.
    struct HogStats: Sendable {
        var rounds = 0
        var answered = 0
        var patches = 0
        var conflicts = 0
    }

    /// How many `hog` victims are still running; the attacker stops when none is.
    final class VictimCount: Sendable {
        let running: Atomic<Int>
        init(_ count: Int) { running = Atomic(count) }
    }

    /// Record data of about `size` bytes with many members (`"f000000":"xx…x"`), the costly
    /// shape to parse and encode.
    static func manyMembers(_ size: Int) -> String {
        let value = String(repeating: "x", count: 40)
        let count = Swift.max(1, size / 53)
        return (0..<count).map { #""f"# + String(format: "%06d", $0) + #"":""# + value + #"""# }.joined(separator: ",")
    }

    /// `hog`: one attacking connection keeps `pipeline` requests in flight against one record
    /// of about `recordSize` bytes (tiny patches, puts on a stale base, or both, as `attack`
    /// says), while `options.connections` victims do `cas` puts on small keys of their own.
    /// The latency figures are the victims': one client's work must not stall every other
    /// client's writes. Ends when the victims are done.
    public static func hog(
        _ options: LoadOptions,
        recordSize: Int,
        pipeline: Int,
        attack: HogAttack
    ) async -> LoadReport {
        let counters = LiveCounters()
        let key = "load/\(options.runID)/hog"
        let victims = options.connections
        let data = #""p":""# + padding(options.valueSize) + "\""
        let setupFailure: String?
        do {
            let reply = try await LoadConnection.run(
                url: options.url,
                compression: options.compression,
                token: options.token
            ) { wire in
                try await wire.send(put(key: key, base: 0, data: manyMembers(recordSize)))
                return try await wire.next()
            }
            setupFailure =
                ReplyScan.type(reply) == "ack" ? nil : "hog: the large record was refused: \(reply.prefix(200))"
        } catch {
            setupFailure = "hog: could not write the large record: \(error)"
        }
        let victimsLeft = VictimCount(victims)
        let window = RunWindow(options: options)
        let outcome = await LoadRunner.run(options: options, workers: victims + 1, window: window, counters: counters) {
            (index: Int) async throws -> (WorkerStats, HogStats) in
            if let setupFailure { throw LoadError(setupFailure) }
            if index == victims {
                let stats = try await LoadConnection.run(
                    url: options.url,
                    compression: options.compression,
                    token: options.token
                ) { wire in
                    try await attackLoop(
                        &wire,
                        key: key,
                        pipeline: pipeline,
                        attack: attack,
                        until: window.deadline,
                        running: victimsLeft
                    )
                }
                return (WorkerStats(), stats)
            }
            defer { victimsLeft.running.subtract(1, ordering: .releasing) }
            let keys = stride(from: index, to: Swift.max(options.keys, victims), by: victims).map {
                "load/\(options.runID)/\($0)"
            }
            let stats = try await LoadConnection.run(
                url: options.url(for: index),
                compression: options.compression,
                token: options.token
            ) { wire in
                try await casLoop(
                    &wire,
                    keys: keys,
                    data: data,
                    options: options,
                    index: index,
                    window: window,
                    counters: counters
                )
            }
            return (stats, HogStats())
        }
        var report = LoadReport(scenario: "hog", latency: "victim put", options: options, outcome: outcome)
        report.setRate(target: options.rate, answered: outcome.stats.ops + outcome.stats.conflicts)
        var attacker = HogStats()
        for result in outcome.results where result.rounds > 0 { attacker = result }
        report.extra["attacker"] =
            "1 connection, \(pipeline) \(attack.rawValue) requests in flight on a \(recordSize)-byte record"
        report.extra["attacker requests answered"] = "\(attacker.answered)"
        report.extra["attacker patches acknowledged"] = "\(attacker.patches)"
        report.extra["attacker conflicts"] = "\(attacker.conflicts)"
        report.extra["attacker requests/s"] =
            report.seconds > 0 ? String(format: "%.0f", Double(attacker.answered) / report.seconds) : "0"
        if outcome.failures.isEmpty, attacker.rounds == 0 {
            report.failures.append("hog: the attacker never had a round answered")
        }
        return report
    }

    /// The attacker: sends `pipeline` requests at once, reads their replies, again, until
    /// `deadline` or until no victim is `running` (at least once). Each patch names the version the one
    /// before it makes; a stale put names base 0 on the existing record.
    static func attackLoop(
        _ wire: inout LoadWire,
        key: String,
        pipeline: Int,
        attack: HogAttack,
        until deadline: UInt64,
        running: VictimCount
    ) async throws -> HogStats {
        var stats = HogStats()
        var version: Int64 = 1
        // At least one round, however soon the victims are done.
        repeat {
            var base = version
            for index in 0..<pipeline {
                let patch = attack == .patch || (attack == .mixed && index % 2 == 0)
                if patch {
                    try await wire.send(Scenarios.patch(key: key, base: base, members: #""f000001":"# + String(base)))
                    base += 1
                } else {
                    try await wire.send(put(key: key, base: 0, data: #""s":1"#))
                }
            }
            for _ in 0..<pipeline {
                let reply = try await wire.next()
                stats.answered += 1
                switch ReplyScan.type(reply) ?? "" {
                case "ack":
                    stats.patches += 1
                    version = Swift.max(version, ReplyScan.integer("version", in: reply) ?? version)
                case "conflict":
                    stats.conflicts += 1
                    version = Swift.max(version, ReplyScan.integer("version", in: reply) ?? version)
                default:
                    throw LoadError("hog: unexpected reply to the attacker: \(reply.prefix(200))")
                }
            }
            stats.rounds += 1
        } while monotonicNanos() < deadline && running.running.load(ordering: .acquiring) > 0
        return stats
    }
}
