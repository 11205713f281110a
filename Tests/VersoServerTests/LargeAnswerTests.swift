import Foundation
import Testing
import VersoClient
import VersoCore
import VersoEngine
import VersoServer
import VersoTesting
import VersoWire

/// Answers larger than a connection's queue limit (Protocol.md 1.1, 3.5 and 5): they are sent as
/// the client reads them, so a client that reads is never disconnected for their size.
@Suite("Large answers")
struct LargeAnswerTests {
    /// A queue limit well below the answers these tests ask for.
    static func smallQueue(_ configuration: inout ServerConfiguration) {
        configuration.maxQueuedBytesPerConnection = 1 << 20
    }

    /// Puts `count` records of about `bytes` bytes each under `prefix`; returns their keys in order.
    static func putRecords(_ client: TestClient, prefix: String, count: Int, bytes: Int) async throws -> [String] {
        let value = String(repeating: "x", count: bytes)
        let keys = (0..<count).map { prefix + String(format: "%03d", $0) }
        for key in keys { try await put(client, key, base: 0, #"{"v":"\#(value)"}"#) }
        return keys
    }

    /// Expects one update per key, in order, at `version`, with seqs rising after `seq`; returns the last seq.
    @discardableResult
    static func expectUpdates(
        _ client: TestClient,
        keys: [String],
        version: Int64,
        after seq: Int64
    ) async throws -> Int64 {
        var last = seq
        for key in keys {
            let update = try await client.next()
            #expect(
                update.type == "update" && update["key"]?.str == key && update["version"]?.int == version,
                "\(update["key"]?.str ?? update.encodedString)"
            )
            let updateSeq = update["seq"]?.int ?? .min
            #expect(updateSeq > last)
            last = updateSeq
        }
        return last
    }

    @Test(
        "5: snapshots totalling far more than the queue limit reach a client that reads them, showing the state at seq, before the updates after it"
    )
    func snapshotsLargerThanTheQueueLimit() async throws {
        try await TestServer.with(configure: Self.smallQueue) { server in
            try await TestClient.with(url: server.url, compression: false) { writer in
                let keys = try await Self.putRecords(writer, prefix: "big/", count: 40, bytes: 100_000)
                try await TestClient.with(url: server.url, compression: false) { reader in
                    let subscribed = try await reader.request(#"{"type":"subscribe","rid":1,"prefix":"big/"}"#)
                    #expect(subscribed.type == "subscribed", "\(subscribed.encodedString)")
                    #expect(subscribed["snapshots"]?.int == 40)
                    let seq = subscribed["seq"]?.int ?? .max
                    // Changes made while the snapshots are on their way arrive after them, once.
                    for key in keys.prefix(5) { try await put(writer, key, base: 1, #"{"v":"changed"}"#) }
                    for key in keys {
                        let snapshot = try await reader.next()
                        #expect(
                            snapshot.type == "snapshot" && snapshot["key"]?.str == key && snapshot["version"]?.int == 1,
                            "\(snapshot["key"]?.str ?? snapshot.encodedString)"
                        )
                    }
                    try await Self.expectUpdates(reader, keys: Array(keys.prefix(5)), version: 2, after: seq)
                    #expect(try await barrier(reader).isEmpty)
                    #expect(server.server.slowConnectionsClosed == 0)
                }
            }
        }
    }

    @Test("5: a since replay totalling far more than the queue limit reaches a client that reads it")
    func replayLargerThanTheQueueLimit() async throws {
        try await TestServer.with(configure: Self.smallQueue) { server in
            try await TestClient.with(url: server.url, compression: false) { writer in
                let keys = try await Self.putRecords(writer, prefix: "replay/", count: 40, bytes: 100_000)
                try await TestClient.with(url: server.url, compression: false) { reader in
                    let subscribed = try await reader.request(
                        #"{"type":"subscribe","rid":1,"prefix":"replay/","since":0}"#
                    )
                    #expect(subscribed.type == "subscribed", "\(subscribed.encodedString)")
                    #expect(subscribed["snapshots"]?.int == 0)
                    #expect(subscribed["reset"] != .bool(true))
                    let last = try await Self.expectUpdates(reader, keys: keys, version: 1, after: 0)
                    #expect(last == subscribed["seq"]?.int)
                    // Live updates follow.
                    try await put(writer, keys[0], base: 1)
                    let live = try await reader.next()
                    #expect(live.type == "update" && live["key"]?.str == keys[0] && live["version"]?.int == 2)
                    #expect(server.server.slowConnectionsClosed == 0)
                }
            }
        }
    }

    @Test(
        "3.5: a list page stops before 8 MiB of records, with next, and a page larger than the queue limit reaches a client that reads it"
    )
    func listLargerThanTheQueueLimit() async throws {
        try await TestServer.with(configure: Self.smallQueue) { server in
            try await TestClient.with(url: server.url, compression: false) { client in
                let keys = try await Self.putRecords(client, prefix: "wide/", count: 12, bytes: 800_000)
                var listed: [String] = []
                var after = "null"
                var pages = 0
                while pages < 12 {
                    try await client.send(#"{"type":"list","rid":"l","prefix":"wide/","after":\#(after),"limit":100}"#)
                    let text = try await client.nextText()
                    #expect(text.utf8.count <= RecordEngine.maxListPageBytes, "a page of \(text.utf8.count) bytes")
                    let page = try JSONParser.parse(text, maxDepth: JSONParser.maxReplyDepth)
                    #expect(page.type == "records", "\(text.prefix(200))")
                    guard case .array(let records)? = page["records"] else { break }
                    listed += records.compactMap { $0["key"]?.str }
                    pages += 1
                    guard let next = page["next"]?.str else { break }
                    #expect(next == listed.last)
                    after = "\"\(next)\""
                }
                #expect(listed == keys)
                #expect(pages == 2, "12 records of 800 kB take two pages of at most 8 MiB")
                #expect(server.server.slowConnectionsClosed == 0)
            }
        }
    }
}
