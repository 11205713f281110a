import Foundation
import Testing
import VersoCore
import VersoTesting
import VersoWire

/// Runs the built `verso-server` with `arguments` to its end; returns its status and output.
private func verso(server arguments: [String]) async throws -> (status: Int32, output: String) {
    let output = FileManager.default.temporaryDirectory.appendingPathComponent("verso-\(UUID().uuidString).out").path
    defer { try? FileManager.default.removeItem(atPath: output) }
    let status = await ChildProcess.run(ServerProcess.binaryPath, arguments, output: output)
    return (status, (try? String(contentsOfFile: output, encoding: .utf8)) ?? "")
}

/// One acknowledged put: its key, version and seq.
private struct Acked: Sendable {
    var key: String
    var version: Int64
    var seq: Int64
}

@Suite("Backup and restore of a running server's store (README, \"Backup and restore\")")
struct BackupTests {
    @Test(
        "a backup taken under write load holds every write acknowledged before it began; the restored store has a new epoch, so a resume is reset, and its seqs go on from the backup's"
    )
    func backupUnderLoad() async throws {
        let directory = TestServer.makeDataDirectory()
        let restored = TestServer.makeDataDirectory()
        let backup = TestServer.makeDataDirectory() + ".sqlite"
        defer {
            for path in [directory, restored, backup] { try? FileManager.default.removeItem(atPath: path) }
        }
        try? FileManager.default.removeItem(atPath: restored)
        let server = try await ServerProcess.start(dataDirectory: directory)
        defer { server.send(signal: SIGKILL) }
        let acked = Locked<[Acked]>([])
        let stop = Locked(false)
        let (epoch, before) = try await withThrowingTaskGroup(of: Void.self) { group in
            for writer in 0..<4 {
                group.addTask {
                    try await TestClient.with(url: server.url) { client in
                        var version: Int64 = 0
                        while !stop.withLock({ $0 }) {
                            let key = "b/\(writer)"
                            let reply = try await client.request(
                                #"{"type":"put","key":"\#(key)","base":\#(version),"data":{"v":\#(version + 1)}}"#
                            )
                            guard reply.type == "ack", let seq = reply["seq"]?.int else {
                                throw TestFailure("put: \(reply.encodedString)")
                            }
                            version += 1
                            acked.withLock { $0.append(Acked(key: key, version: version, seq: seq)) }
                        }
                    }
                }
            }
            let epoch = try await TestClient.with(url: server.url) { client in
                try #require(try await client.request(#"{"type":"hello"}"#)["epoch"]?.str)
            }
            // Until the writers are well under way (a busy machine may take more than a moment).
            let started = ContinuousClock.now
            while acked.withLock({ $0.count }) <= 10, ContinuousClock.now - started < .seconds(30) {
                try await Task.sleep(for: .milliseconds(20))
            }
            // Every write acknowledged before the backup begins must be in it.
            let before = acked.withLock { $0 }
            let run = try await verso(server: ["backup", "--data", directory, backup])
            #expect(run.status == 0, "\(run.output)")
            try await Task.sleep(for: .milliseconds(300))
            stop.withLock { $0 = true }
            try await group.waitForAll()
            return (epoch, before)
        }
        #expect(before.count > 10, "the writers were writing: \(before.count) acks before the backup")
        #expect(try await verso(server: ["backup", "--data", directory, backup]).status != 0, "no overwrite")

        let run = try await verso(server: ["restore", backup, "--data", restored])
        #expect(run.status == 0, "\(run.output)")
        #expect(
            try await verso(server: ["restore", backup, "--data", restored]).status != 0,
            "only into an empty folder"
        )
        let again = try await ServerProcess.start(dataDirectory: restored)
        defer { again.send(signal: SIGKILL) }
        try await TestClient.with(url: again.url) { client in
            let welcome = try await client.request(#"{"type":"hello"}"#)
            let newEpoch = try #require(welcome["epoch"]?.str)
            #expect(newEpoch != epoch, "a restored store has a new epoch")
            let lastSeq = try #require(welcome["seq"]?.int)
            #expect(lastSeq >= before.map(\.seq).max() ?? 0)
            var newest: [String: Acked] = [:]
            for ack in before { newest[ack.key] = ack }
            for ack in newest.values {
                let record = try await client.request(#"{"type":"get","key":"\#(ack.key)"}"#)
                let version = try #require(record["version"]?.int, "\(ack.key): \(record.encodedString)")
                #expect(version >= ack.version, "\(ack.key) acknowledged at version \(ack.version) before the backup")
                #expect(record["data"]?["v"]?.int == version)
            }
            // Seqs go on from the backup's last one.
            let put = try await client.request(#"{"type":"put","key":"b/new","base":0,"data":{}}"#)
            #expect(put["seq"]?.int == lastSeq + 1, "\(put.encodedString)")
            // A subscription resumed with the old epoch is reset, never replayed.
            let resumed = try await client.request(
                #"{"type":"subscribe","prefix":"b/","since":\#(lastSeq - 1),"epoch":"\#(epoch)"}"#
            )
            #expect(resumed.type == "subscribed" && resumed["reset"] == .bool(true), "\(resumed.encodedString)")
        }
    }
}
