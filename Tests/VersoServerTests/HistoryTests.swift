import Foundation
import Testing
import VersoCore
import VersoServer
import VersoTesting
import VersoWire

@Suite("history: a key's versions newest first, with when and by whom (Protocol.md 3.9)")
struct HistoryTests {
    /// The `version`s of a `history` reply, in order.
    private func versions(_ reply: JSONValue) -> [Int64] {
        guard case .array(let entries)? = reply["versions"] else { return [] }
        return entries.compactMap { $0["version"]?.int }
    }

    private func history(
        _ client: TestClient,
        _ key: String,
        before: Int64? = nil,
        limit: Int? = nil
    ) async throws
        -> JSONValue
    {
        var request = #"{"type":"history","rid":"h","key":"\#(key)""#
        if let before { request += #","before":\#(before)"# }
        if let limit { request += #","limit":\#(limit)"# }
        let reply = try await client.request(request + "}")
        #expect(reply.type == "history" && reply["rid"]?.str == "h", "\(reply.encodedString)")
        return reply
    }

    @Test(
        "history pages through every version newest first, with seq, at and data (a delete as a tombstone), down to version 1 with nothing gone"
    )
    func pages() async throws {
        try await TestServer.with { server in
            try await TestClient.with(url: server.url) { client in
                let key = uniqueKey("hist")
                let start = Int64(Date().timeIntervalSince1970 * 1000)
                try await put(client, key, base: 0, #"{"n":1}"#)
                try await put(client, key, base: 1, #"{"n":2}"#)
                try await put(client, key, base: 2, #"{"n":3}"#)
                let deleted = try await client.request(#"{"type":"delete","key":"\#(key)","base":3}"#)
                #expect(deleted.type == "ack")
                try await put(client, key, base: 4, #"{"n":5}"#)
                let end = Int64(Date().timeIntervalSince1970 * 1000)

                let first = try await history(client, key, limit: 2)
                #expect(versions(first) == [5, 4] && first["next"]?.int == 4 && first["gone"] == nil)
                guard case .array(let entries)? = first["versions"] else { return }
                #expect(entries[0]["data"] == .object(["n": .number("5")]) && entries[0]["deleted"] == .bool(false))
                #expect(entries[1]["data"] == .null && entries[1]["deleted"] == .bool(true))
                #expect(entries[0]["seq"]?.int == deleted["seq"].flatMap(\.int).map { $0 + 1 })
                for entry in entries {
                    let at = try #require(entry["at"]?.int, "\(entry.encodedString)")
                    #expect(at >= start - 1 && at <= end + 1)
                    #expect(entry["by"] == nil, "no author on a server that does not authenticate")
                }
                let second = try await history(client, key, before: 4, limit: 2)
                #expect(versions(second) == [3, 2] && second["next"]?.int == 2)
                let last = try await history(client, key, before: 2, limit: 2)
                #expect(versions(last) == [1] && last["next"] == .null && last["gone"] == nil)
                #expect(versions(try await history(client, key)) == [5, 4, 3, 2, 1])
                let none = try await history(client, key, before: 1)
                #expect(versions(none).isEmpty && none["next"] == .null && none["gone"] == nil)
            }
        }
    }

    @Test(
        "versions the change log pruned are kept up to --keep-versions per key; older ones are reported gone, never skipped"
    )
    func keptAndGone() async throws {
        for keep in [Int64(0), 3] {
            try await TestServer.with(configure: {
                $0.historyLimit = 16
                $0.keepVersions = keep
            }) { server in
                try await TestClient.with(url: server.url) { client in
                    let key = uniqueKey("kept")
                    for base in Int64(0)..<10 { try await put(client, key, base: base, #"{"n":\#(base + 1)}"#) }
                    // Push the key's changes out of the 16-seq log.
                    for index in 0..<40 { try await put(client, uniqueKey("filler\(index)"), base: 0) }
                    let reply = try await history(client, key)
                    let expected: [Int64] = keep == 0 ? [10] : [10, 9, 8]
                    #expect(versions(reply) == expected, "keep \(keep): \(reply.encodedString)")
                    #expect(reply["gone"]?.int == expected.last! - 1 && reply["next"] == .null)
                    guard case .array(let entries)? = reply["versions"] else { return }
                    #expect(entries.last?["data"] == .object(["n": .number("\(expected.last!)")]))
                    #expect(entries.allSatisfy { $0["at"]?.int != nil })
                    // A page that ends by its limit just above the gone versions still says so
                    // on the next page.
                    if keep == 3 {
                        let page = try await history(client, key, limit: 2)
                        #expect(versions(page) == [10, 9] && page["next"]?.int == 9)
                        let rest = try await history(client, key, before: 9, limit: 2)
                        #expect(versions(rest) == [8] && rest["gone"]?.int == 7 && rest["next"] == .null)
                        let below = try await history(client, key, before: 5)
                        #expect(versions(below).isEmpty && below["gone"]?.int == 4)
                    }
                    // Writing on trims what is kept to the last 3 once the log prunes again.
                    for base in Int64(10)..<20 { try await put(client, key, base: base) }
                    for index in 0..<40 { try await put(client, uniqueKey("more\(index)"), base: 0) }
                    let after = try await history(client, key)
                    #expect(versions(after) == (keep == 0 ? [20] : [20, 19, 18]), "\(after.encodedString)")
                }
            }
        }
    }

    @Test("updates and conflicts carry the version's commit time as at")
    func atEverywhere() async throws {
        try await TestServer.with { server in
            try await TestClient.with(url: server.url) { client in
                let key = uniqueKey("at")
                let subscribed = try await client.request(#"{"type":"subscribe","keys":["\#(key)"]}"#)
                #expect(subscribed.type == "subscribed")
                try await client.send(#"{"type":"put","rid":1,"key":"\#(key)","base":0,"data":{}}"#)
                let ack = try await client.next()
                let update = try await client.next()
                #expect(ack.type == "ack" && update.type == "update", "\(update.encodedString)")
                let at = try #require(update["at"]?.int)
                let conflict = try await client.request(#"{"type":"put","key":"\#(key)","base":0,"data":{}}"#)
                #expect(conflict.type == "conflict" && conflict["at"]?.int == at, "\(conflict.encodedString)")
                let history = try await history(client, key)
                guard case .array(let entries)? = history["versions"] else { return }
                #expect(entries.first?["at"]?.int == at)
            }
        }
    }

    @Test("history of a key that never existed is not_found; a bad before or limit is bad_request")
    func badHistory() async throws {
        try await TestServer.with { server in
            try await TestClient.with(url: server.url) { client in
                let missing = try await client.request(#"{"type":"history","key":"\#(uniqueKey())"}"#)
                #expect(missing.type == "error" && missing["code"]?.str == "not_found", "\(missing.encodedString)")
                for bad in [#""before":0"#, #""limit":0"#, #""limit":101"#, #""before":"x""#] {
                    let reply = try await client.request(#"{"type":"history","key":"k",\#(bad)}"#)
                    #expect(
                        reply.type == "error" && reply["code"]?.str == "bad_request",
                        "\(bad): \(reply.encodedString)"
                    )
                }
                let noKey = try await client.request(#"{"type":"history"}"#)
                #expect(noKey["code"]?.str == "bad_request")
            }
        }
    }
}
