import Foundation
import Testing
import VersoCore
import VersoServer
import VersoTesting
import VersoWire

@Suite("Idempotency keys: a retried write gets its first reply and changes nothing (Protocol.md 3.7)")
struct IdempotencyTests {
    @Test(
        "the same key and request again: the original ack marked replayed, nothing applied",
        arguments: compressionModes
    )
    func replay(compression: Bool) async throws {
        try await TestServer.with { server in
            try await TestClient.with(url: server.url, compression: compression) { client in
                let key = uniqueKey()
                let put = #"{"type":"put","key":"\#(key)","base":0,"data":{"n":1},"idempotency_key":"k-\#(key)""#
                let first = try await client.request(put + #","rid":1}"#)
                #expect(first.type == "ack")
                #expect(first["replayed"] == nil)
                try await TestClient.with(url: server.url) { other async throws in
                    #expect(
                        try await other.request(#"{"type":"put","key":"\#(key)","base":1,"data":{"n":2}}"#).type
                            == "ack"
                    )
                }
                let again = try await client.request(put + #","rid":2}"#)
                #expect(again.type == "ack")
                #expect(again["rid"]?.int == 2)
                #expect(again["version"] == first["version"])
                #expect(again["seq"] == first["seq"])
                #expect(again["replayed"] == .bool(true))
                let record = try await client.request(#"{"type":"get","key":"\#(key)"}"#)
                #expect(record["version"]?.int == 2)
                #expect(record["data"]?["n"]?.int == 2)
            }
        }
    }

    @Test("a replayed txn gets its versions, and a merged write stays marked merged")
    func txnAndMerged() async throws {
        try await TestServer.with { server in
            try await TestClient.with(url: server.url) { client in
                let a = uniqueKey("a"), b = uniqueKey("b")
                try await put(client, b, base: 0, #"{"x":1,"y":1}"#)
                try await put(client, b, base: 1, #"{"x":2,"y":1}"#)
                let txn =
                    #"{"type":"txn","idempotency_key":"t-\#(a)","ops":[{"op":"put","key":"\#(a)","base":0,"data":{}},{"op":"patch","key":"\#(b)","base":1,"merge":"fields","patch":{"y":2}}]}"#
                let first = try await client.request(txn)
                #expect(first.type == "ack", "\(first.encodedString)")
                let again = try await client.request(txn)
                #expect(again["versions"] == first["versions"])
                #expect(again["seq"] == first["seq"])
                #expect(again["merged"] == .array([.string(b)]))
                #expect(again["replayed"] == .bool(true))
                #expect(try await client.request(#"{"type":"get","key":"\#(b)"}"#)["version"]?.int == 3)
            }
        }
    }

    @Test("the same key with another request is bad_request and changes nothing")
    func reuse() async throws {
        try await TestServer.with { server in
            try await TestClient.with(url: server.url) { client in
                let key = uniqueKey()
                let first = try await client.request(
                    #"{"type":"put","key":"\#(key)","base":0,"data":{"n":1},"idempotency_key":"same"}"#
                )
                #expect(first.type == "ack")
                for other in [
                    #"{"type":"put","key":"\#(key)","base":0,"data":{"n":2},"idempotency_key":"same"}"#,
                    #"{"type":"put","key":"\#(key)","base":1,"data":{"n":1},"idempotency_key":"same"}"#,
                    #"{"type":"patch","key":"\#(key)","base":0,"patch":{"n":1},"idempotency_key":"same"}"#,
                    #"{"type":"txn","ops":[{"op":"put","key":"\#(key)","base":0,"data":{"n":1}}],"idempotency_key":"same"}"#,
                ] {
                    let reply = try await client.request(other)
                    #expect(reply.type == "error")
                    #expect(reply["code"]?.str == "bad_request")
                    #expect(reply["message"]?.str?.contains("idempotency_key") == true)
                }
                #expect(try await client.request(#"{"type":"get","key":"\#(key)"}"#)["version"]?.int == 1)
            }
        }
    }

    @Test("a refused write keeps no key: its retry is decided again")
    func refusedKeepsNothing() async throws {
        try await TestServer.with { server in
            try await TestClient.with(url: server.url) { client in
                let key = uniqueKey()
                try await put(client, key, base: 0)
                let stale = #"{"type":"put","key":"\#(key)","base":0,"data":{},"idempotency_key":"r-\#(key)"}"#
                #expect(try await client.request(stale).type == "conflict")
                #expect(try await client.request(stale).type == "conflict")
                let fresh = #"{"type":"put","key":"\#(key)","base":1,"data":{},"idempotency_key":"r-\#(key)"}"#
                #expect(try await client.request(fresh).type == "ack")
            }
        }
    }

    @Test("a key is 1–128 bytes of string, on writes only")
    func badKeys() async throws {
        try await TestServer.with { server in
            try await TestClient.with(url: server.url) { client in
                let key = uniqueKey()
                let long = String(repeating: "x", count: 129)
                for request in [
                    #"{"type":"put","key":"\#(key)","base":0,"data":{},"idempotency_key":""}"#,
                    #"{"type":"put","key":"\#(key)","base":0,"data":{},"idempotency_key":"\#(long)"}"#,
                    #"{"type":"put","key":"\#(key)","base":0,"data":{},"idempotency_key":7}"#,
                    #"{"type":"get","key":"\#(key)","idempotency_key":"g"}"#,
                ] {
                    let reply = try await client.request(request)
                    #expect(reply["code"]?.str == "bad_request", "\(request)")
                    #expect(reply["message"]?.str?.contains("idempotency_key") == true)
                }
                let longest = String(repeating: "é", count: 64)
                #expect(
                    try await client.request(
                        #"{"type":"put","key":"\#(key)","base":0,"data":{},"idempotency_key":"\#(longest)"}"#
                    ).type == "ack"
                )
            }
        }
    }

    @Test("after kill -9 a retried key still gets the original ack")
    func afterKill() async throws {
        let directory = TestServer.makeDataDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let process = try await ServerProcess.start(dataDirectory: directory)
        let put = #"{"type":"put","key":"killed/1","base":0,"data":{"n":1},"idempotency_key":"before-the-kill"}"#
        let first = try await TestClient.with(url: process.url) { client in try await client.request(put) }
        #expect(first.type == "ack")
        process.send(signal: SIGKILL)
        _ = await process.waitForExit()
        try await TestServer.with(dataDirectory: directory) { server in
            try await TestClient.with(url: server.url) { client in
                let again = try await client.request(put)
                #expect(again.type == "ack")
                #expect(again["replayed"] == .bool(true))
                #expect(again["seq"] == first["seq"])
                #expect(again["version"]?.int == 1)
            }
        }
    }
}
