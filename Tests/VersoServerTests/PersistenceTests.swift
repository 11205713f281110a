import Foundation
import NIOWebSocket
import Synchronization
import Testing
import VersoClient
import VersoCore
import VersoTesting
import VersoWire
import WSCore

@Suite("Persistence: SQLite in WAL mode, every acknowledged write survives")
struct PersistenceTests {
    @Test("a restart restores every record, version, tombstone, the seq counter and the epoch")
    func restart() async throws {
        let directory = TestServer.makeDataDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let epoch = try await TestServer.with(dataDirectory: directory) { server in
            try await TestClient.with(url: server.url) { client in
                try await put(client, "p/a", base: 0, #"{"a":1}"#)
                try await put(client, "p/a", base: 1, #"{"a":2}"#)
                try await put(client, "p/gone", base: 0)
                _ = try await client.request(#"{"type":"delete","key":"p/gone","base":1}"#)
                _ = try await client.request(
                    #"{"type":"txn","ops":[{"op":"put","key":"p/t1","base":0,"data":{"t":1}},{"op":"put","key":"p/t2","base":0,"data":{"t":2}}]}"#
                )
                return try await client.request(#"{"type":"hello"}"#)["epoch"]!.str!
            }
        }
        try await TestServer.with(dataDirectory: directory) { server in
            try await TestClient.with(url: server.url) { client in
                let welcome = try await client.request(#"{"type":"hello"}"#)
                #expect(welcome["epoch"]?.str == epoch)
                #expect(welcome["seq"]?.int == 5)
                let a = try await client.request(#"{"type":"get","key":"p/a"}"#)
                #expect(a["version"]?.int == 2)
                #expect(a["data"] == .object(["a": .number("2")]))
                let gone = try await client.request(#"{"type":"get","key":"p/gone"}"#)
                #expect(gone["deleted"] == .bool(true))
                #expect(gone["version"]?.int == 2)
                #expect(try await put(client, "p/gone", base: 2) == 3)
                let next = try await client.request(#"{"type":"put","key":"p/b","base":0,"data":{}}"#)
                #expect(next["seq"]?.int == 7)
                // The change log survives too: resume from before the restart.
                let subscribed = try await client.request(
                    #"{"type":"subscribe","prefix":"p/t","since":3,"epoch":"\#(epoch)"}"#
                )
                #expect(subscribed["reset"] == nil)
                let first = try await client.next()
                let second = try await client.next()
                #expect([first["key"]?.str, second["key"]?.str] == ["p/t1", "p/t2"])
                #expect(first["seq"]?.int == 5)
                #expect(second["seq"]?.int == 5)
            }
        }
    }

    @Test("kill -9 of a real verso-server loses no acknowledged write")
    func killNine() async throws {
        let directory = TestServer.makeDataDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let process = try await ServerProcess.start(dataDirectory: directory)
        let writers = 8
        let (ackStream, acks) = AsyncStream<(Int, Int64)>.makeStream()
        let acknowledged = Locked<[Int: Int64]>([:])
        let killed = Locked(false)
        try await withThrowingTaskGroup(of: Void.self) { group in
            for writer in 0..<writers {
                group.addTask {
                    // Writes until the server dies under it. Only the connection failing after
                    // the kill ends a writer; any other reply or failure is a test failure.
                    do {
                        try await TestClient.with(url: process.url) { client in
                            var version: Int64 = 0
                            while true {
                                let reply = try await client.request(
                                    #"{"type":"put","key":"kill/\#(writer)","base":\#(version),"data":{"n":\#(version + 1),"w":\#(writer)}}"#
                                )
                                guard reply.type == "ack", let acked = reply["version"]?.int else {
                                    Issue.record("writer \(writer): unexpected reply \(reply.encodedString)")
                                    return
                                }
                                version = acked
                                acknowledged.withLock { $0[writer] = acked }
                                acks.yield((writer, acked))
                            }
                        }
                    } catch {
                        if !killed.withLock({ $0 }) {
                            Issue.record("writer \(writer) failed before the kill: \(error)")
                        }
                    }
                }
            }
            var count = 0
            for await _ in ackStream {
                count += 1
                if count == 300 { break }
            }
            killed.withLock { $0 = true }
            process.send(signal: SIGKILL)
            _ = await process.waitForExit()
            #expect(process.wasKilledBySignal)
            acks.finish()
            try await group.waitForAll()
        }
        let lastAcked = acknowledged.withLock { $0 }
        #expect(lastAcked.values.reduce(0, +) >= 300)
        try await TestServer.with(dataDirectory: directory) { server in
            try await TestClient.with(url: server.url) { client in
                for writer in 0..<writers {
                    let acked = lastAcked[writer] ?? 0
                    let record = try await client.request(#"{"type":"get","key":"kill/\#(writer)"}"#)
                    let version = record["version"]?.int ?? 0
                    // At most the one write in flight at the kill may have committed without its ack arriving.
                    #expect(
                        version == acked || version == acked + 1,
                        "writer \(writer): acknowledged \(acked), found \(version)"
                    )
                    #expect(record["data"]?["n"]?.int == version)
                }
            }
        }
    }

    @Test(
        "SIGTERM: writes in progress commit and are acknowledged, later ones get unavailable or no reply and are not applied, clients see 1001, the process exits 0"
    )
    func gracefulShutdown() async throws {
        let directory = TestServer.makeDataDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let process = try await ServerProcess.start(dataDirectory: directory)
        let acked = try await TestClient.with(url: process.url) { client in
            _ = try await client.request(#"{"type":"subscribe","prefix":"term/"}"#)
            for index in 0..<50 {
                try await client.send(#"{"type":"put","rid":\#(index),"key":"term/\#(index)","base":0,"data":{}}"#)
            }
            let first = try await client.next()
            #expect(first.type == "ack")
            process.send(signal: SIGTERM)
            // Every write gets at most one reply: an ack, or unavailable (then it was not
            // applied); an update only ever follows an ack.
            var replies: [Int64: String] = [try #require(first["rid"]?.int): "ack"]
            var updated: Set<Int64> = []
            while let message = try? await client.next() {
                switch message.type {
                case "ack", "error":
                    guard let rid = message["rid"]?.int, (0..<50).contains(rid) else {
                        Issue.record("a reply to no write of this test: \(message.encodedString)")
                        continue
                    }
                    if message.type == "error" {
                        #expect(message["code"]?.str == "unavailable", "\(message.encodedString)")
                    }
                    #expect(
                        replies[rid] == nil,
                        "write \(rid) answered twice: \(replies[rid] ?? "") and \(message.encodedString)"
                    )
                    replies[rid] = message.type
                case "update":
                    guard let key = message["key"]?.str, key.hasPrefix("term/"), let index = Int64(key.dropFirst(5))
                    else {
                        Issue.record("unexpected update \(message.encodedString)")
                        continue
                    }
                    updated.insert(index)
                default:
                    Issue.record("unexpected message \(message.encodedString)")
                }
            }
            let close = try await client.waitForClose()
            #expect(close?.closeCode == .goingAway)
            let acked = Set(replies.filter { $0.value == "ack" }.keys)
            #expect(
                updated.isSubset(of: acked),
                "updates for writes never acknowledged: \(updated.subtracting(acked).sorted())"
            )
            return acked
        }
        #expect(await process.waitForExit() == 0)
        #expect(!process.wasKilledBySignal)
        try await TestServer.with(dataDirectory: directory) { server in
            try await TestClient.with(url: server.url) { client in
                for index in 0..<50 {
                    let record = try await client.request(#"{"type":"get","key":"term/\#(index)"}"#)
                    #expect((record.type == "snapshot") == acked.contains(Int64(index)), "term/\(index)")
                }
            }
        }
    }
}
