import Foundation
import NIOWebSocket
import Testing
import VersoConformance
import VersoCore
import VersoLoad
import VersoTesting
import VersoWire
import WSCore

/// Several real `verso-server` processes over one real PostgreSQL (`--store`), each check
/// against what PostgreSQL holds afterwards.
@Suite(.serialized, .enabled(if: PostgresCluster.isAvailable, "needs PostgreSQL 15 (apt install postgresql-15)"))
struct MultiNodeTests {
    /// A cluster and `count` servers over it; everything is stopped and removed afterwards.
    static func withNodes(
        _ count: Int,
        arguments: [String] = [],
        _ body: (PostgresCluster, [ServerProcess]) async throws -> Void
    ) async throws {
        let cluster = try await PostgresCluster.start()
        let directory = TestServer.makeDataDirectory()
        var nodes: [ServerProcess] = []
        do {
            for _ in 0..<count {
                nodes.append(
                    try await ServerProcess.start(
                        dataDirectory: directory,
                        arguments: ["--store", cluster.url] + arguments
                    )
                )
            }
            try await body(cluster, nodes)
        } catch {
            for node in nodes { node.send(signal: SIGKILL) }
            await cluster.remove()
            try? FileManager.default.removeItem(atPath: directory)
            throw error
        }
        for node in nodes { node.send(signal: SIGKILL) }
        await cluster.remove()
        try? FileManager.default.removeItem(atPath: directory)
    }

    /// An update as a subscriber saw it.
    struct Seen: Equatable, CustomStringConvertible {
        var seq: Int64
        var key: String
        var version: Int64
        var description: String { "\(seq):\(key)@\(version)" }
    }

    /// Reads `update`s on `connection` until `count` arrived.
    static func updates(_ count: Int, on connection: WireConnection) async throws -> [Seen] {
        var seen: [Seen] = []
        while seen.count < count {
            let message = try await connection.next(timeout: .seconds(30))
            guard message["type"]?.stringValue == "update" else { continue }
            seen.append(
                Seen(
                    seq: message["seq"]?.integerValue ?? -1,
                    key: message["key"]?.stringValue ?? "",
                    version: message["version"]?.integerValue ?? -1
                )
            )
        }
        return seen
    }

    /// The change log as PostgreSQL holds it, in seq order.
    static func changeLog(_ cluster: PostgresCluster, prefix: String) async throws -> [Seen] {
        let rows = try await cluster.psql(
            "SELECT seq, key, version FROM verso_changes WHERE key LIKE '\(prefix)%' ORDER BY seq, key"
        )
        return rows.split(separator: "\n").map { line in
            let parts = line.split(separator: "|")
            return Seen(seq: Int64(parts[0])!, key: String(parts[1]), version: Int64(parts[2])!)
        }
    }

    /// Puts versions 1 through `last` of a new `key` one after the other (data `{"n":version}`),
    /// expecting each acknowledged.
    static func putVersions(_ key: String, through last: Int, on connection: WireConnection) async throws {
        for step in 1...last {
            let reply = try await connection.request(
                #"{"type":"put","rid":\#(step),"key":"\#(key)","base":\#(step - 1),"data":{"n":\#(step)}}"#
            )
            #expect(reply["type"]?.stringValue == "ack", "\(key) version \(step): \(reply)")
        }
    }

    /// Increments `key`'s counter with get and put on the version read, trying again on each
    /// conflict; returns the acknowledged (version, seq).
    static func increment(_ key: String, on connection: WireConnection, rid: inout Int) async throws -> (Int64, Int64) {
        rid += 1
        let got = try await connection.request(#"{"type":"get","rid":\#(rid),"key":"\#(key)"}"#)
        var version = got["version"]?.integerValue ?? 0
        var count = got["data"]?["n"]?.integerValue ?? 0
        while true {
            rid += 1
            let reply = try await connection.request(
                #"{"type":"put","rid":\#(rid),"key":"\#(key)","base":\#(version),"data":{"n":\#(count + 1)}}"#
            )
            switch reply["type"]?.stringValue {
            case "ack":
                return (reply["version"]?.integerValue ?? -1, reply["seq"]?.integerValue ?? -1)
            case "conflict":
                version = reply["version"]?.integerValue ?? 0
                count = reply["data"]?["n"]?.integerValue ?? 0
            default:
                throw TestFailure("unexpected reply to a put: \(reply)")
            }
        }
    }

    @Test(
        "writers on three servers race on hot keys: every counter is exact, every acknowledged version unique, the seqs gap-free, and each server's subscriber sees the same stream as the log"
    )
    func raceAcrossNodes() async throws {
        try await Self.withNodes(3) { cluster, nodes in
            let keys = (0..<4).map { "hot/\($0)" }
            let writersPerNode = 3
            let incrementsPerWriter = 12
            let total = nodes.count * writersPerNode * incrementsPerWriter
            try await withThrowingTaskGroup(of: [Seen].self) { subscribers in
                let (ready, subscribed) = AsyncStream<Void>.makeStream()
                for node in nodes {
                    subscribers.addTask {
                        try await WireConnection.with(url: node.url) { connection in
                            let reply = try await connection.request(#"{"type":"subscribe","rid":1,"prefix":"hot/"}"#)
                            #expect(reply["type"]?.stringValue == "subscribed")
                            subscribed.yield()
                            return try await Self.updates(total, on: connection)
                        }
                    }
                }
                var waiting = nodes.count
                for await _ in ready {
                    waiting -= 1
                    if waiting == 0 { break }
                }
                let acks = try await withThrowingTaskGroup(of: [(String, Int64, Int64)].self) { writers in
                    for (index, node) in nodes.enumerated() {
                        for writer in 0..<writersPerNode {
                            writers.addTask {
                                try await WireConnection.with(url: node.url) { connection in
                                    var rid = 0
                                    var acks: [(String, Int64, Int64)] = []
                                    for step in 0..<incrementsPerWriter {
                                        let key = keys[(index + writer + step) % keys.count]
                                        let (version, seq) = try await Self.increment(key, on: connection, rid: &rid)
                                        acks.append((key, version, seq))
                                    }
                                    return acks
                                }
                            }
                        }
                    }
                    return try await writers.reduce(into: []) { $0 += $1 }
                }
                #expect(acks.count == total)
                let versions = Set(acks.map { "\($0.0)@\($0.1)" })
                #expect(versions.count == total, "every acknowledged (key, version) is unique")
                for key in keys {
                    let stored = try await cluster.psql("SELECT version, data FROM verso_records WHERE key = '\(key)'")
                    let count = acks.filter { $0.0 == key }.count
                    #expect(stored == "\(count)|{\"n\":\(count)}", "\(key): \(count) increments")
                }
                let bounds = try await cluster.psql(
                    "SELECT count(DISTINCT seq), min(seq), max(seq), (SELECT last_seq FROM verso_meta) FROM verso_changes"
                )
                #expect(bounds == "\(total)|1|\(total)|\(total)", "seqs 1...\(total), one per write, no gap")
                let log = try await Self.changeLog(cluster, prefix: "hot/")
                #expect(Set(acks.map(\.2)) == Set(log.map(\.seq)))
                for try await stream in subscribers {
                    #expect(stream == log, "a subscriber's stream is the log, in order")
                }
            }
        }
    }

    @Test(
        "a connection writing a key it subscribes to gets each ack before its update while other servers write; a subscriber resumes with since on another server and misses nothing"
    )
    func ackBeforeUpdateAndResumeElsewhere() async throws {
        try await Self.withNodes(2) { cluster, nodes in
            // A resumable position on server 0.
            let (epoch, start) = try await WireConnection.with(url: nodes[0].url) { connection in
                let reply = try await connection.request(#"{"type":"subscribe","rid":1,"prefix":"mix/"}"#)
                let hello = try await connection.request(#"{"type":"hello","rid":2}"#)
                return (hello["epoch"]?.stringValue ?? "", reply["seq"]?.integerValue ?? -1)
            }
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask {
                    try await WireConnection.with(url: nodes[1].url) { connection in
                        for step in 1...60 {
                            _ = try await connection.request(
                                #"{"type":"put","rid":\#(step),"key":"mix/other","base":\#(step - 1),"data":{"n":\#(step)}}"#
                            )
                        }
                    }
                }
                try await WireConnection.with(url: nodes[0].url) { connection in
                    _ = try await connection.request(#"{"type":"subscribe","rid":1,"keys":["mix/own"]}"#)
                    for step in 1...30 {
                        try await connection.send(
                            #"{"type":"put","rid":\#(step + 1),"key":"mix/own","base":\#(step - 1),"data":{"n":\#(step)}}"#
                        )
                        var acked = false
                        while !acked {
                            let message = try await connection.next()
                            switch message["type"]?.stringValue {
                            case "ack": acked = true
                            case "update":
                                #expect(message["version"]?.integerValue ?? 0 < step, "update before its ack")
                            default: Issue.record("unexpected \(message)")
                            }
                        }
                    }
                }
                try await group.waitForAll()
            }
            let log = try await Self.changeLog(cluster, prefix: "mix/").filter { $0.seq > start }
            #expect(log.count == 90)
            let resumed = try await WireConnection.with(url: nodes[1].url) { connection in
                let reply = try await connection.request(
                    #"{"type":"subscribe","rid":1,"prefix":"mix/","since":\#(start),"epoch":"\#(epoch)"}"#
                )
                #expect(reply["type"]?.stringValue == "subscribed")
                #expect(reply["reset"] != .bool(true))
                return try await Self.updates(log.count, on: connection)
            }
            #expect(resumed == log, "the replay on the other server is exactly the changes since")
        }
    }

    @Test("kill -9 of one server under load: no acknowledged write is lost, the other keeps serving")
    func killOneNode() async throws {
        try await Self.withNodes(2) { cluster, nodes in
            let acked = Locked<[String: Int64]>([:])
            try await withThrowingTaskGroup(of: Void.self) { group in
                for (index, node) in nodes.enumerated() {
                    group.addTask {
                        do {
                            try await WireConnection.with(url: node.url) { connection in
                                for step in 1...200 {
                                    let key = "kill/\(index)-\(step % 5)"
                                    let reply = try await connection.request(
                                        #"{"type":"put","rid":\#(step),"key":"\#(key)","base":\#((step - 1) / 5),"data":{"s":\#(step)}}"#
                                    )
                                    guard reply["type"]?.stringValue == "ack" else { continue }
                                    acked.withLock { $0[key] = max($0[key] ?? 0, reply["version"]?.integerValue ?? 0) }
                                }
                            }
                        } catch  where index == 0 {
                            // The killed server's connection ends.
                        }
                    }
                }
                try await Task.sleep(for: .milliseconds(300))
                nodes[0].send(signal: SIGKILL)
                try await group.waitForAll()
            }
            for (key, version) in acked.withLock({ $0 }) {
                let stored = try await cluster.psql("SELECT version FROM verso_records WHERE key = '\(key)'")
                #expect((Int64(stored) ?? 0) >= version, "\(key) acknowledged at \(version), stored \(stored)")
            }
            #expect(
                acked.withLock { $0.keys.filter { $0.hasPrefix("kill/1-") }.count } == 5,
                "the other server served on"
            )
        }
    }

    @Test(
        "PostgreSQL crashes (pg_ctl -m immediate) and restarts under load: no acknowledged write is lost, reads meanwhile answer unavailable, the servers recover by themselves"
    )
    func databaseRestart() async throws {
        try await Self.withNodes(1) { cluster, nodes in
            try await WireConnection.with(url: nodes[0].url) { connection in
                var rid = 0
                var version: Int64 = 0
                for _ in 1...20 {
                    rid += 1
                    let reply = try await connection.request(
                        #"{"type":"put","rid":\#(rid),"key":"crash/a","base":\#(version),"data":{"v":\#(version + 1)}}"#
                    )
                    #expect(reply["type"]?.stringValue == "ack")
                    version = reply["version"]?.integerValue ?? version
                }
                try await cluster.stop(immediate: true)
                rid += 1
                let read = try await connection.request(#"{"type":"get","rid":\#(rid),"key":"crash/a"}"#)
                #expect(read["code"]?.stringValue == "unavailable", "\(read)")
                // A write sent while the database is down waits for it and then commits.
                rid += 1
                try await connection.send(
                    #"{"type":"put","rid":\#(rid),"key":"crash/a","base":\#(version),"data":{"v":\#(version + 1)}}"#
                )
                try await Task.sleep(for: .seconds(1))
                try await cluster.start()
                let reply = try await connection.next(timeout: .seconds(30))
                #expect(reply["type"]?.stringValue == "ack", "\(reply)")
                #expect(reply["version"]?.integerValue == version + 1)
                let stored = try await cluster.psql("SELECT version FROM verso_records WHERE key = 'crash/a'")
                #expect(stored == "\(version + 1)")
            }
        }
    }

    @Test(
        "with a short log, history pages back through the log and the kept versions and then says gone, and a since before the pruned log resets, on another server than the writer's"
    )
    func prunedLog() async throws {
        try await Self.withNodes(2, arguments: ["--history", "16", "--keep-versions", "3"]) { cluster, nodes in
            // short/a: versions 1...20 (seqs 1...20), then short/b: versions 1...40 (seqs 21...60).
            try await WireConnection.with(url: nodes[0].url) { connection in
                for (key, count) in [("short/a", 20), ("short/b", 40)] {
                    try await Self.putVersions(key, through: count, on: connection)
                }
            }
            #expect(try await cluster.psql("SELECT pruned_through FROM verso_meta") == "44", "the log keeps 16")
            try await WireConnection.with(url: nodes[1].url) { connection in
                // short/a left the log whole: its last 3 versions were kept. short/b is in the log from seq 45.
                for (key, newest, oldest) in [("short/a", Int64(20), Int64(18)), ("short/b", 40, 25)] {
                    let page = try await connection.request(#"{"type":"history","rid":1,"key":"\#(key)","limit":100}"#)
                    guard case .array(let entries)? = page["versions"] else {
                        Issue.record("not a history page: \(page)")
                        continue
                    }
                    #expect(entries.compactMap { $0["version"]?.integerValue } == Array((oldest...newest).reversed()))
                    #expect(entries.first?["data"]?["n"]?.integerValue == newest)
                    #expect(page["gone"]?.integerValue == oldest - 1, "\(key): older versions are gone")
                }
                let reply = try await connection.request(#"{"type":"subscribe","rid":2,"keys":["short/a"],"since":1}"#)
                #expect(reply["type"]?.stringValue == "subscribed")
                #expect(reply["reset"] == .bool(true), "since 1 is no longer in the log")
            }
        }
    }

    @Test(
        "a server stopped while another writes past its place in the pruned log closes its connections with 1001 when it runs again; a client that resumes there is reset and sees the changes that follow"
    )
    func fellBehind() async throws {
        try await Self.withNodes(2, arguments: ["--history", "16"]) { cluster, nodes in
            let close = try await WireConnection.with(url: nodes[1].url) { subscriber in
                let reply = try await subscriber.request(#"{"type":"subscribe","rid":1,"keys":["behind/a"]}"#)
                #expect(reply["type"]?.stringValue == "subscribed")
                nodes[1].send(signal: SIGSTOP)
                try await WireConnection.with(url: nodes[0].url) { writer in
                    try await Self.putVersions("behind/a", through: 40, on: writer)
                }
                #expect(try await cluster.psql("SELECT pruned_through FROM verso_meta") == "24", "the log keeps 16")
                nodes[1].send(signal: SIGCONT)
                return try await subscriber.waitForClose(timeout: .seconds(30))
            }
            #expect(close?.closeCode == .goingAway, "\(String(describing: close))")
            try await WireConnection.with(url: nodes[1].url) { subscriber in
                let reply = try await subscriber.request(
                    #"{"type":"subscribe","rid":1,"keys":["behind/a"],"since":1}"#
                )
                #expect(reply["type"]?.stringValue == "subscribed")
                #expect(reply["reset"] == .bool(true), "since 1 is no longer in the log")
                try await WireConnection.with(url: nodes[0].url) { writer in
                    let put = try await writer.request(
                        #"{"type":"put","rid":41,"key":"behind/a","base":40,"data":{"n":41}}"#
                    )
                    #expect(put["type"]?.stringValue == "ack")
                }
                let seen = try await Self.updates(1, on: subscriber)
                #expect(seen.map(\.version) == [41])
            }
        }
    }

    @Test(
        "when PostgreSQL ends a server's listening connection, that server's subscribers still get the other server's changes (by polling, then by notifications again)"
    )
    func lostNotifications() async throws {
        try await Self.withNodes(2) { cluster, nodes in
            try await WireConnection.with(url: nodes[1].url) { subscriber in
                _ = try await subscriber.request(#"{"type":"subscribe","rid":1,"keys":["listen/a"]}"#)
                try await WireConnection.with(url: nodes[0].url) { writer in
                    for step in 1...6 {
                        if step == 3 {
                            // Every listening connection, of both servers.
                            let ended = try await cluster.psql(
                                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = 'verso-listener'"
                            )
                            #expect(ended == "2")
                        }
                        let reply = try await writer.request(
                            #"{"type":"put","rid":\#(step),"key":"listen/a","base":\#(step - 1),"data":{"n":\#(step)}}"#
                        )
                        #expect(reply["type"]?.stringValue == "ack")
                        let seen = try await Self.updates(1, on: subscriber)
                        #expect(seen.map(\.version) == [Int64(step)])
                    }
                }
            }
        }
    }

    /// Reads messages on `connection` until a `presence` one arrives.
    static func nextPresence(on connection: WireConnection, timeout: Duration = .seconds(30)) async throws -> JSONValue
    {
        while true {
            let message = try await connection.next(timeout: timeout)
            if message["type"]?.stringValue == "presence" { return message }
        }
    }

    @Test(
        "presence crosses servers: set, changed and cleared on one server, seen live and after a subscribe's snapshots on the other; a server's death clears its presence there"
    )
    func presenceAcrossServers() async throws {
        try await Self.withNodes(2) { _, nodes in
            try await WireConnection.with(url: nodes[0].url) { watcher in
                _ = try await watcher.request(#"{"type":"subscribe","rid":1,"keys":["pres/a"]}"#)
                try await WireConnection.with(url: nodes[1].url) { editor in
                    let set = try await editor.request(
                        #"{"type":"presence","rid":1,"key":"pres/a","state":{"field":"title"}}"#
                    )
                    let session = set["session"]?.stringValue
                    #expect(session != nil)
                    let seen = try await Self.nextPresence(on: watcher)
                    #expect(seen["session"]?.stringValue == session)
                    #expect(seen["state"]?["field"]?.stringValue == "title")
                    // A subscribe on the other server gets it after its snapshots.
                    try await WireConnection.with(url: nodes[0].url) { late in
                        _ = try await late.request(#"{"type":"subscribe","rid":1,"keys":["pres/a"]}"#)
                        let current = try await Self.nextPresence(on: late)
                        #expect(current["session"]?.stringValue == session)
                    }
                    _ = try await editor.request(#"{"type":"presence","rid":2,"key":"pres/a","state":null}"#)
                    let cleared = try await Self.nextPresence(on: watcher)
                    #expect(cleared["session"]?.stringValue == session)
                    #expect(cleared["state"] == .null)
                    _ = try await editor.request(
                        #"{"type":"presence","rid":3,"key":"pres/a","state":{"field":"body"}}"#
                    )
                    #expect(try await Self.nextPresence(on: watcher)["state"]?["field"]?.stringValue == "body")
                }
                // The editor closed: its server clears its presence, everywhere.
                #expect(try await Self.nextPresence(on: watcher)["state"] == .null)
                try await WireConnection.with(url: nodes[1].url) { editor in
                    _ = try await editor.request(#"{"type":"presence","rid":1,"key":"pres/a","state":{"field":"x"}}"#)
                    #expect(try await Self.nextPresence(on: watcher)["state"]?["field"]?.stringValue == "x")
                    // Its server dies: no clear is sent, and the presence expires.
                    nodes[1].send(signal: SIGKILL)
                    let expired = try await Self.nextPresence(on: watcher, timeout: .seconds(40))
                    #expect(expired["state"] == .null)
                }
            }
        }
    }

    @Test(
        "verso-load spread over two servers: counter increments land exactly, and a fan-out delivers every write to subscribers on the other server"
    )
    func loadOverTwoServers() async throws {
        try await Self.withNodes(2) { _, nodes in
            var options = LoadOptions()
            options.urls = nodes.map(\.url)
            options.progress = false
            options.connections = 4
            options.hot = 2
            options.ops = 10
            let counter = await Scenarios.counter(options)
            #expect(counter.failures == [])
            #expect(counter.extra["final count"] == "40")
            options.ops = nil
            options.duration = 0.5
            let fanout = await Scenarios.fanout(options, writers: 1, subscribers: 3)
            #expect(fanout.failures == [])
            #expect(fanout.errors == 0)
            #expect(fanout.ops > 0)
            let expected = Int(fanout.extra["deliveries expected"] ?? "") ?? -1
            #expect(abs(fanout.ops - expected) <= 2 * 3)
        }
    }

    @Test("the whole conformance suite passes against each server of three over one PostgreSQL")
    func conformanceOnEachNode() async throws {
        try await Self.withNodes(3) { _, nodes in
            for node in nodes {
                let report = try await ConformanceRunner(url: node.url).run()
                for failure in report.failures { Issue.record("\(node.url) \(failure.name): \(failure.detail ?? "")") }
                #expect(report.failures.isEmpty)
            }
        }
    }
}
