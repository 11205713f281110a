import Foundation
import NIOWebSocket
import Testing
import VersoClient
import VersoCore
import VersoEngine
import VersoServer
import VersoTesting
// SQLiteConnection, to hold the database's write lock from outside the server as another
// process would.
@testable import VersoSQLite
import VersoWire
import WSCore

/// A tmpfs of a few MiB mounted on a fresh folder: a real disk that fills up.
private struct SmallDisk {
    let path: String

    /// Whether this process may mount a tmpfs (it must be root, with CAP_SYS_ADMIN).
    static let isPermitted: Bool = {
        guard let disk = try? SmallDisk(megabytes: 1) else { return false }
        disk.unmount()
        return true
    }()

    init(megabytes: Int) throws {
        path = FileManager.default.temporaryDirectory.appendingPathComponent("verso-disk-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        let (status, output) = Self.run(
            "/bin/mount",
            ["-t", "tmpfs", "-o", "size=\(megabytes)m,mode=0700", "tmpfs", path]
        )
        guard status == 0 else {
            try? FileManager.default.removeItem(atPath: path)
            throw TestFailure("mount -t tmpfs failed (\(status)): \(output)")
        }
    }

    func unmount() {
        let (status, output) = Self.run("/bin/umount", [path])
        if status != 0 { Issue.record("umount \(path) failed (\(status)): \(output)") }
        try? FileManager.default.removeItem(atPath: path)
    }

    /// Writes zeros to `name` until the disk is full; returns the bytes written.
    func fill(_ name: String) throws -> Int {
        let descriptor = open((path as NSString).appendingPathComponent(name), O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        guard descriptor >= 0 else {
            throw TestFailure("cannot create the ballast file: \(String(cString: strerror(errno)))")
        }
        defer { close(descriptor) }
        let chunk = [UInt8](repeating: 0, count: 64 << 10)
        var total = 0
        while true {
            let written = chunk.withUnsafeBytes { write(descriptor, $0.baseAddress, $0.count) }
            if written > 0 {
                total += written
                continue
            }
            guard written < 0, errno == ENOSPC else {
                throw TestFailure("filling the disk failed: \(String(cString: strerror(errno)))")
            }
            return total
        }
    }

    /// Gives the space back.
    func free(_ name: String) throws {
        try FileManager.default.removeItem(atPath: (path as NSString).appendingPathComponent(name))
    }

    private static func run(_ tool: String, _ arguments: [String]) -> (Int32, String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: tool)
        process.arguments = arguments
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        do { try process.run() } catch { return (-1, "\(error)") }
        let output = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: output, as: UTF8.self))
    }
}

/// Another connection holding the database's write lock (BEGIN IMMEDIATE) until `release()`;
/// the server's writer waits for it (up to SQLite's 5 s busy timeout).
final class WriteLock {
    private let connection: SQLiteConnection

    init(databaseIn directory: String) throws {
        connection = try SQLiteConnection(
            path: (directory as NSString).appendingPathComponent("verso.sqlite"),
            readOnly: false
        )
        try connection.execute("BEGIN IMMEDIATE")
    }

    func release() throws {
        try connection.execute("ROLLBACK")
    }
}

/// What a fresh server over `directory` holds at each key: its version, or nil if absent.
private func versions(in directory: String, of keys: [String]) async throws -> [String: Int64?] {
    try await TestServer.with(dataDirectory: directory) { server in
        try await TestClient.with(url: server.url) { client in
            var found: [String: Int64?] = [:]
            for key in keys {
                let reply = try await client.request(#"{"type":"get","key":"\#(key)"}"#)
                switch reply.type {
                case "snapshot": found[key] = reply["version"]?.int
                case "error" where reply["code"]?.str == "not_found": found[key] = Int64?.none
                default: throw TestFailure("get \(key): \(reply.encodedString)")
                }
            }
            return found
        }
    }
}

@Suite(
    "Faults: a store that fails answers internal and acknowledges nothing it did not commit; shutdown answers unavailable"
)
struct FaultTests {
    /// Data of about `kilobytes` KiB, so one write needs many new pages of WAL.
    private static func bulk(_ kilobytes: Int) -> String {
        #"{"bulk":"\#(String(repeating: "x", count: kilobytes << 10))"}"#
    }

    @Test(
        "6 errors: a full disk answers writes with internal, acknowledges nothing that did not commit, keeps serving reads, and writes work again once space returns",
        .enabled(if: SmallDisk.isPermitted, "needs to mount a tmpfs (root with CAP_SYS_ADMIN); skipped here")
    )
    func fullDisk() async throws {
        let disk = try SmallDisk(megabytes: 8)
        defer { disk.unmount() }
        let directory = (disk.path as NSString).appendingPathComponent("data")
        let keys = (0..<6).map { "disk/\($0)" }
        var acked: [String: Int64] = [:]
        try await TestServer.with(dataDirectory: directory) { server in
            try await TestClient.with(url: server.url) { client in
                acked["disk/before"] = try await put(client, "disk/before", base: 0, #"{"n":1}"#)
                let ballast = try disk.fill("ballast")
                #expect(ballast > 0)

                var refused = 0
                for key in keys {
                    let reply = try await client.request(
                        #"{"type":"put","key":"\#(key)","base":0,"data":\#(Self.bulk(64))}"#
                    )
                    switch reply.type {
                    case "ack": acked[key] = reply["version"]?.int
                    case "error":
                        #expect(reply["code"]?.str == "internal", "\(reply.encodedString)")
                        #expect(reply["message"]?.str?.contains("nothing was applied") == true)
                        refused += 1
                    default: Issue.record("put \(key) on a full disk: \(reply.encodedString)")
                    }
                }
                #expect(refused > 0, "a full disk refused no write")

                // Reads go on: this connection, and a new one.
                let before = try await client.request(#"{"type":"get","key":"disk/before"}"#)
                #expect(before.type == "snapshot" && before["data"]?["n"]?.int == 1, "\(before.encodedString)")
                try await TestClient.with(url: server.url) { reader in
                    let listed = try await reader.request(#"{"type":"list","prefix":"disk/"}"#)
                    guard case .array(let records)? = listed["records"] else {
                        throw TestFailure("list: \(listed.encodedString)")
                    }
                    let listedKeys = records.compactMap { $0["key"]?.str }
                    #expect(listedKeys == ["disk/before"] + keys.filter { acked[$0] != nil }, "\(listed.encodedString)")
                }

                // Space returns: the refused writes go through on the same base, which they
                // could not if any part of them had been applied.
                try disk.free("ballast")
                for key in keys where acked[key] == nil {
                    let reply = try await client.request(
                        #"{"type":"put","key":"\#(key)","base":0,"data":\#(Self.bulk(64))}"#
                    )
                    #expect(reply.type == "ack", "put \(key) after space returned: \(reply.encodedString)")
                    acked[key] = reply["version"]?.int
                }
                #expect(try await put(client, "disk/before", base: 1, #"{"n":2}"#) == 2)
                acked["disk/before"] = 2
            }
        }
        // A fresh server over the same files holds exactly what was acknowledged.
        let stored = try await versions(in: directory, of: ["disk/before"] + keys)
        for (key, version) in stored {
            #expect(
                version == acked[key],
                "\(key): acknowledged \(acked[key].map(String.init) ?? "never"), stored \(version.map(String.init) ?? "nothing")"
            )
        }
    }

    @Test(
        "6 errors: a write the store cannot commit (the database locked by another process past the 5 s busy timeout) gets internal and changes nothing; reads go on; the next write commits"
    )
    func lockedDatabase() async throws {
        let directory = TestServer.makeDataDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try await TestServer.with(dataDirectory: directory) { server in
            try await TestClient.with(url: server.url) { writer in
                try await put(writer, "locked/a", base: 0, #"{"n":1}"#)
                let lock = try WriteLock(databaseIn: directory)
                try await writer.send(#"{"type":"put","rid":1,"key":"locked/a","base":1,"data":{"n":2}}"#)
                try await writer.send(#"{"type":"put","rid":2,"key":"locked/b","base":0,"data":{}}"#)
                // While the writer waits for the lock, another connection still reads.
                try await TestClient.with(url: server.url) { reader in
                    let record = try await reader.request(#"{"type":"get","key":"locked/a"}"#)
                    #expect(record["version"]?.int == 1)
                }
                for rid: Int64 in [1, 2] {
                    let reply = try await writer.next(timeout: .seconds(30))
                    #expect(reply["rid"]?.int == rid)
                    #expect(reply.type == "error" && reply["code"]?.str == "internal", "\(reply.encodedString)")
                }
                try lock.release()
                #expect(try await put(writer, "locked/a", base: 1, #"{"n":2}"#) == 2)
                #expect(try await put(writer, "locked/b", base: 0) == 1)
            }
        }
        let stored = try await versions(in: directory, of: ["locked/a", "locked/b"])
        #expect(stored == ["locked/a": 2, "locked/b": 1])
    }

    @Test(
        "8 shutdown: a request read after shutdown began gets unavailable and changes nothing; a write accepted before it commits and is acknowledged; then 1001"
    )
    func unavailableDuringShutdown() async throws {
        let directory = TestServer.makeDataDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        var acked: Set<String> = []
        let sent = try await TestServer.with(dataDirectory: directory) { server in
            try await TestClient.with(url: server.url) { writer in
                try await TestClient.with(url: server.url) { late in
                    _ = try await late.request(#"{"type":"hello"}"#)
                    // The writer waits for this lock, so shutdown has a write to finish and
                    // keeps the connections open meanwhile.
                    let lock = try WriteLock(databaseIn: directory)
                    // Writes on one connection are queued in the order sent, so once one of
                    // them waits in the queue behind the batch stuck on the lock, w1 is queued.
                    var sent: [String] = []
                    for attempt in 1...20 where server.server.engine.queuedWriteCount == 0 {
                        sent.append("w\(attempt)")
                        try await writer.send(
                            #"{"type":"put","rid":"w\#(attempt)","key":"down/w\#(attempt)","base":0,"data":{}}"#
                        )
                        try? await waitUntil("a write queueing", timeout: .milliseconds(500)) {
                            server.server.engine.queuedWriteCount >= 1
                        }
                    }
                    try #require(
                        server.server.engine.queuedWriteCount >= 1,
                        "no write ever waited behind the batch stuck on the lock"
                    )
                    await server.server.triggerShutdown()
                    try await waitUntil("shutdown") { !server.server.engine.isAccepting }

                    let refusedWrite = try await late.request(
                        #"{"type":"put","rid":"late","key":"down/late","base":0,"data":{}}"#
                    )
                    #expect(refusedWrite["rid"]?.str == "late")
                    #expect(
                        refusedWrite.type == "error" && refusedWrite["code"]?.str == "unavailable",
                        "\(refusedWrite.encodedString)"
                    )
                    let refusedRead = try await late.request(#"{"type":"get","rid":"late-get","key":"down/w1"}"#)
                    #expect(
                        refusedRead.type == "error" && refusedRead["code"]?.str == "unavailable",
                        "\(refusedRead.encodedString)"
                    )

                    try lock.release()
                    for _ in sent {
                        // A write the server had not read when it closed the connection gets no
                        // reply (Protocol.md 1): the check after the restart proves it was not applied.
                        guard let reply = try? await writer.next() else { break }
                        guard let rid = reply["rid"]?.str else {
                            throw TestFailure("unexpected \(reply.encodedString)")
                        }
                        switch reply.type {
                        case "ack": acked.insert("down/\(rid)")
                        case "error" where rid != "w1":
                            // Read after shutdown began: refused like any late request.
                            #expect(reply["code"]?.str == "unavailable", "\(reply.encodedString)")
                        default:
                            Issue.record(
                                "reply to \(rid) (internal if the lock was held past SQLite's 5 s busy timeout): \(reply.encodedString)"
                            )
                        }
                    }
                    #expect(acked.contains("down/w1"), "the write queued before shutdown was acknowledged")
                    #expect(try await writer.waitForClose()?.closeCode == .goingAway)
                    #expect(try await late.waitForClose()?.closeCode == .goingAway)
                    return sent
                }
            }
        }
        let stored = try await versions(in: directory, of: sent.map { "down/\($0)" } + ["down/late"])
        for (key, version) in stored {
            #expect((version != nil) == acked.contains(key), "\(key): stored \(version.map(String.init) ?? "nothing")")
        }
    }
}
