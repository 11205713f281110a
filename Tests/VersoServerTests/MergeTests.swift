import Testing
import VersoCore
import VersoServer
import VersoTesting
import VersoWire

@Suite("\"merge\": \"fields\" over a live server")
struct MergeTests {
    @Test(
        "writes to different fields on one base both land; the second is acknowledged as merged",
        arguments: compressionModes
    )
    func differentFieldsMerge(compression: Bool) async throws {
        try await TestServer.with { server in
            try await TestClient.with(url: server.url, compression: compression) { client in
                let key = uniqueKey()
                #expect(try await put(client, key, base: 0, #"{"title":"a","body":"b","meta":{"x":1,"y":1}}"#) == 1)
                let first = try await client.request(
                    #"{"type":"patch","key":"\#(key)","base":1,"merge":"fields","patch":{"title":"A","meta":{"x":2}}}"#
                )
                #expect(first.type == "ack")
                #expect(first["merged"] == nil, "a write on the current version is not a merge")
                let second = try await client.request(
                    #"{"type":"put","key":"\#(key)","base":1,"merge":"fields","data":{"title":"a","body":"B","meta":{"x":1,"y":2}}}"#
                )
                #expect(second.type == "ack", "\(second.encodedString)")
                #expect(second["merged"] == .bool(true))
                #expect(second["version"]?.int == 3)
                let record = try await client.request(#"{"type":"get","key":"\#(key)"}"#)
                #expect(
                    record["data"]
                        == .object([
                            "title": .string("A"), "body": .string("B"),
                            "meta": .object(["x": .number("2"), "y": .number("2")]),
                        ])
                )
            }
        }
    }

    @Test("a clash is a conflict naming the clashing paths and everything changed since the base")
    func clash() async throws {
        try await TestServer.with { server in
            try await TestClient.with(url: server.url) { client in
                let key = uniqueKey()
                try await put(client, key, base: 0, #"{"title":"a","meta":{"x":1},"n":1}"#)
                try await put(client, key, base: 1, #"{"title":"b","meta":{"x":1},"n":1}"#)
                try await put(client, key, base: 2, #"{"title":"b","meta":5,"n":1}"#)
                let reply = try await client.request(
                    #"{"type":"patch","rid":9,"key":"\#(key)","base":1,"merge":"fields","patch":{"title":"c","meta":{"x":2},"n":3}}"#
                )
                #expect(reply.type == "conflict")
                #expect(reply["rid"]?.int == 9)
                #expect(reply["version"]?.int == 3)
                #expect(reply["reason"]?.str == "clash")
                #expect(reply["clashes"] == .array([.string("/meta/x"), .string("/title")]))
                #expect(reply["changed"] == .array([.string("/meta"), .string("/title")]))
                #expect(reply["data"] == .object(["title": .string("b"), "meta": .number("5"), "n": .number("1")]))
                let unchanged = try await client.request(#"{"type":"get","key":"\#(key)"}"#)
                #expect(unchanged["version"]?.int == 3)
            }
        }
    }

    @Test(
        "a plain write's conflict carries the paths changed since its base (no reason, no clashes) while the log holds them; none for a base of 0 or a deleted record"
    )
    func plainConflictChanged() async throws {
        try await TestServer.with { server in
            try await TestClient.with(url: server.url) { client in
                let key = uniqueKey()
                try await put(client, key, base: 0, #"{"title":"a","meta":{"x":1,"y":1}}"#)
                try await put(client, key, base: 1, #"{"title":"b","meta":{"x":1,"y":1}}"#)
                try await put(client, key, base: 2, #"{"title":"b","meta":{"x":1,"y":2}}"#)
                let stale = try await client.request(#"{"type":"put","key":"\#(key)","base":1,"data":{"title":"c"}}"#)
                #expect(stale.type == "conflict")
                #expect(stale["changed"] == .array([.string("/meta/y"), .string("/title")]))
                #expect(stale["reason"] == nil && stale["clashes"] == nil)
                let oneBehind = try await client.request(#"{"type":"patch","key":"\#(key)","base":2,"patch":{"n":1}}"#)
                #expect(oneBehind["changed"] == .array([.string("/meta/y")]))
                let fresh = try await client.request(#"{"type":"put","key":"\#(key)","base":0,"data":{}}"#)
                #expect(fresh.type == "conflict" && fresh["changed"] == nil, "\(fresh.encodedString)")
                _ = try await client.request(#"{"type":"delete","key":"\#(key)","base":3}"#)
                let gone = try await client.request(#"{"type":"put","key":"\#(key)","base":2,"data":{}}"#)
                #expect(gone.type == "conflict" && gone["changed"] == nil, "\(gone.encodedString)")
            }
        }
    }

    @Test("deleted now, deleted and re-created since the base, a future base: conflicts that say why")
    func refusals() async throws {
        try await TestServer.with { server in
            try await TestClient.with(url: server.url) { client in
                let key = uniqueKey()
                try await put(client, key, base: 0, #"{"a":1}"#)
                try await put(client, key, base: 1, #"{"a":2}"#)
                _ = try await client.request(#"{"type":"delete","key":"\#(key)","base":2}"#)
                let deleted = try await client.request(
                    #"{"type":"patch","key":"\#(key)","base":1,"merge":"fields","patch":{"b":1}}"#
                )
                #expect(deleted.type == "conflict")
                #expect(deleted["reason"]?.str == "deleted")
                #expect(deleted["deleted"] == .bool(true))
                try await put(client, key, base: 3, #"{"a":2}"#)
                let recreated = try await client.request(
                    #"{"type":"patch","key":"\#(key)","base":1,"merge":"fields","patch":{"b":1}}"#
                )
                #expect(recreated["reason"]?.str == "recreated")
                let future = try await client.request(
                    #"{"type":"put","key":"\#(key)","base":9,"merge":"fields","data":{}}"#
                )
                #expect(future["reason"]?.str == "unknown_base")
                let created = try await client.request(
                    #"{"type":"put","key":"\#(key)","base":0,"merge":"fields","data":{}}"#
                )
                #expect(created["reason"]?.str == "recreated")
                let plain = try await client.request(#"{"type":"put","key":"\#(key)","base":1,"data":{}}"#)
                #expect(plain.type == "conflict")
                #expect(plain["reason"] == nil)
                #expect(plain["clashes"] == nil)
            }
        }
    }

    @Test("a base the change log no longer holds is a conflict saying history_gone")
    func historyGone() async throws {
        try await TestServer.with(configure: { $0.historyLimit = 16 }) { server in
            try await TestClient.with(url: server.url) { client in
                let key = uniqueKey()
                var version: Int64 = 0
                for n in 0..<40 { version = try await put(client, key, base: version, #"{"n":\#(n)}"#) }
                let reply = try await client.request(
                    #"{"type":"patch","key":"\#(key)","base":1,"merge":"fields","patch":{"m":1}}"#
                )
                #expect(reply.type == "conflict")
                #expect(reply["reason"]?.str == "history_gone")
                let recent = try await client.request(
                    #"{"type":"patch","key":"\#(key)","base":\#(version - 1),"merge":"fields","patch":{"m":1}}"#
                )
                #expect(recent["merged"] == .bool(true))
            }
        }
    }

    @Test("txn ops merge too, and the txn stays all or nothing")
    func txn() async throws {
        try await TestServer.with { server in
            try await TestClient.with(url: server.url) { client in
                let a = uniqueKey("a"), b = uniqueKey("b")
                try await put(client, a, base: 0, #"{"x":1,"y":1}"#)
                try await put(client, a, base: 1, #"{"x":2,"y":1}"#)
                try await put(client, b, base: 0, #"{"x":1}"#)
                try await put(client, b, base: 1, #"{"x":2}"#)
                let clash = try await client.request(
                    #"{"type":"txn","ops":[{"op":"patch","key":"\#(a)","base":1,"merge":"fields","patch":{"y":5}},{"op":"patch","key":"\#(b)","base":1,"merge":"fields","patch":{"x":5}}]}"#
                )
                #expect(clash.type == "conflict")
                guard case .array(let conflicts)? = clash["conflicts"] else {
                    Issue.record("\(clash.encodedString)")
                    return
                }
                #expect(conflicts.count == 1)
                #expect(conflicts.first?["key"]?.str == b)
                #expect(conflicts.first?["clashes"] == .array([.string("/x")]))
                #expect(try await client.request(#"{"type":"get","key":"\#(a)"}"#)["version"]?.int == 2)
                let merged = try await client.request(
                    #"{"type":"txn","ops":[{"op":"patch","key":"\#(a)","base":1,"merge":"fields","patch":{"y":5}},{"op":"put","key":"\#(b)","base":2,"merge":"fields","data":{"x":3}}]}"#
                )
                #expect(merged.type == "ack", "\(merged.encodedString)")
                #expect(
                    merged["versions"] == .object([BytewiseString(a): .number("3"), BytewiseString(b): .number("3")])
                )
                #expect(merged["merged"] == .array([.string(a)]))
            }
        }
    }

    @Test("\"merge\" only as \"fields\", only on put and patch, and never with force")
    func badRequests() async throws {
        try await TestServer.with(configure: { $0.allowForce = true }) { server in
            try await TestClient.with(url: server.url) { client in
                let key = uniqueKey()
                for request in [
                    #"{"type":"put","key":"\#(key)","base":0,"merge":"all","data":{}}"#,
                    #"{"type":"put","key":"\#(key)","base":0,"merge":true,"data":{}}"#,
                    #"{"type":"delete","key":"\#(key)","base":0,"merge":"fields"}"#,
                    #"{"type":"put","key":"\#(key)","force":true,"merge":"fields","data":{}}"#,
                    #"{"type":"txn","ops":[{"op":"check","key":"\#(key)","base":0,"merge":"fields"}]}"#,
                ] {
                    let reply = try await client.request(request)
                    #expect(reply.type == "error", "\(request)")
                    #expect(reply["code"]?.str == "bad_request")
                    #expect(reply["message"]?.str?.contains("merge") == true)
                }
                let get = try await client.request(#"{"type":"get","key":"\#(key)"}"#)
                #expect(get["code"]?.str == "not_found")
            }
        }
    }
}
