import Histogram
import Synchronization
import VersoCore

extension Scenarios {
    /// The last acknowledged write of one worker to one record: its version and the value
    /// it set in the worker's field.
    public struct MergeAck: Sendable {
        var record: Int
        var field: Int
        var version: Int64
        var value: Int64
    }

    /// `merge`: `connections` clients edit `records` shared records with `"merge":"fields"`
    /// patches, each setting its own field (client i writes field i / `share`, so with `share`
    /// 1 no two clients write the same field) on the base it last saw for the record, which
    /// other clients have usually moved on. With `share` 1 every edit must land (merged) and
    /// a conflict is a failure; with more, a conflict must name exactly the client's field.
    /// Afterwards every record must hold, in each field, the value of the field's last
    /// acknowledged write.
    public static func merge(_ options: LoadOptions, records: Int, share: Int) async -> LoadReport {
        let counters = LiveCounters()
        let connections = options.connections
        let fields = (connections + share - 1) / share
        let keys = (0..<records).map { "load/\(options.runID)/merge/\($0)" }
        let initial = (0..<fields).map { #""f\#($0)":0"# }.joined(separator: ",")
        var report: LoadReport
        do {
            _ = try await LoadConnection.run(url: options.url, compression: options.compression, token: options.token) {
                wire in
                for key in keys {
                    try await wire.send(put(key: key, base: 0, data: initial))
                    let reply = try await wire.next()
                    guard ReplyScan.type(reply) == "ack" else {
                        throw LoadError("merge: creating \(key): \(reply.prefix(200))")
                    }
                }
                return (WorkerStats(), ())
            }
        } catch {
            report = LoadReport(
                scenario: "merge",
                latency: "patch",
                options: options,
                outcome: LoadRunner.Outcome<[MergeAck]>()
            )
            report.failures.append("could not create the records: \(error)")
            return report
        }
        let window = RunWindow(options: options)
        let merged = Atomic<Int>(0)
        let outcome = await LoadRunner.run(options: options, workers: connections, window: window, counters: counters) {
            index in
            let field = index / share
            return try await LoadConnection.run(
                url: options.url(for: index),
                compression: options.compression,
                token: options.token
            ) { wire in
                var stats = WorkerStats()
                var bases = [Int64](repeating: 1, count: records)
                var last: [Int: MergeAck] = [:]
                var value: Int64 = 0
                let clash = #""clashes":["/f\#(field)"]"#
                var schedule = SendSchedule(rate: options.rate, connections: connections, index: index)
                while window.mayStart(counters), let start = try await schedule.nextSend(deadline: window.deadline) {
                    let record = Int.random(in: 0..<records)
                    value += 1
                    try await wire.send(
                        patch(
                            key: keys[record],
                            base: bases[record],
                            members: #""f\#(field)":"# + String(value),
                            merge: true
                        )
                    )
                    let reply = try await wire.next()
                    let end = monotonicNanos()
                    let measured = window.measures(end)
                    if measured { stats.latency.record(microseconds(start, end)) }
                    guard let version = ReplyScan.integer("version", in: reply) else {
                        throw LoadError("merge: a reply without a version: \(reply.prefix(200))")
                    }
                    bases[record] = version
                    switch ReplyScan.type(reply) ?? "" {
                    case "ack":
                        last[record] = MergeAck(record: record, field: field, version: version, value: value)
                        counters.ops.add(1, ordering: .relaxed)
                        if measured { stats.ops += 1 }
                        if reply.contains(#""merged":true"#) { merged.add(1, ordering: .relaxed) }
                    case "conflict":
                        counters.conflicts.add(1, ordering: .relaxed)
                        if measured { stats.conflicts += 1 }
                        guard share > 1, reply.contains(clash) else {
                            throw LoadError(
                                "merge: a conflict where no field was shared, or naming another field: \(reply.prefix(300))"
                            )
                        }
                    default:
                        throw LoadError("merge: unexpected reply to a patch: \(reply.prefix(200))")
                    }
                }
                return (stats, Array(last.values))
            }
        }
        report = LoadReport(scenario: "merge", latency: "patch", options: options, outcome: outcome)
        report.setRate(target: options.rate, answered: outcome.stats.ops + outcome.stats.conflicts)
        report.extra["records"] = "\(records)"
        report.extra["clients per field"] = "\(share)"
        report.extra["acknowledged as merged"] = "\(merged.load(ordering: .relaxed))"
        // The value each field must hold: that of its acknowledged write with the highest version.
        var expected: [Int: [Int: MergeAck]] = [:]
        for acks in outcome.results {
            for ack in acks where ack.version > expected[ack.record]?[ack.field]?.version ?? 0 {
                expected[ack.record, default: [:]][ack.field] = ack
            }
        }
        let lastAcks = expected
        do {
            let problems = try await LoadConnection.run(
                url: options.url,
                compression: options.compression,
                token: options.token
            ) { wire in
                var problems: [String] = []
                for (record, byField) in lastAcks.sorted(by: { $0.key < $1.key }) {
                    try await wire.send(Request.get(key: keys[record]).encoded())
                    // Read back in full: the check is worth the vocabulary's strict decoding.
                    guard
                        case .snapshot(nil, let current) = try ServerMessage.decode(text: try await wire.next()).message
                    else {
                        problems.append("\(keys[record]) could not be read back")
                        continue
                    }
                    for (field, ack) in byField.sorted(by: { $0.key < $1.key }) {
                        let found = current.data[BytewiseString("f\(field)")]?.integerValue
                        if found != ack.value {
                            problems.append(
                                "\(keys[record]) field f\(field) holds \(found.map(String.init) ?? "nothing"), but its last acknowledged write set \(ack.value)"
                            )
                        }
                    }
                }
                return (WorkerStats(), problems)
            }
            report.failures += problems.1.prefix(20)
        } catch {
            report.failures.append("could not read the records back: \(error)")
        }
        return report
    }
}
