import Testing
import VersoCore
import VersoServer
import VersoTesting
import VersoWire

@Suite("batch: each op decided on its own, all committed together, one result per op (Protocol.md 3.8)")
struct BatchTests {
    @Test(
        "acks, conflicts and errors in one reply, in order, each op seeing the ones before it",
        arguments: compressionModes
    )
    func mixed(compression: Bool) async throws {
        try await TestServer.with { server in
            try await TestClient.with(url: server.url, compression: compression) { client in
                let p = uniqueKey("batch")
                try await put(client, "\(p)/old", base: 0, #"{"x":1,"y":1}"#)
                try await put(client, "\(p)/old", base: 1, #"{"x":2,"y":1}"#)
                let subscribed = try await client.request(#"{"type":"subscribe","prefix":"\#(p)/"}"#)
                #expect(subscribed["snapshots"]?.int == 1)
                #expect(try await client.next().type == "snapshot")
                let reply = try await client.request(
                    #"{"type":"batch","rid":"b","ops":[{"op":"put","key":"\#(p)/new","base":0,"data":{"n":1}},{"op":"put","key":"\#(p)/old","base":1,"data":{"z":1}},{"op":"delete","key":"\#(p)/missing","base":0},{"op":"patch","key":"\#(p)/new","base":1,"patch":{"m":2}},{"op":"check","key":"\#(p)/old","base":2},{"op":"patch","key":"\#(p)/old","base":1,"merge":"fields","patch":{"y":3}}]}"#
                )
                #expect(reply.type == "results")
                #expect(reply["rid"]?.str == "b")
                guard case .array(let results)? = reply["results"], results.count == 6 else {
                    Issue.record("\(reply.encodedString)")
                    return
                }
                #expect(results.map(\.type) == ["ack", "conflict", "error", "ack", "ack", "ack"])
                #expect(results[0]["key"]?.str == "\(p)/new")
                #expect(results[0]["version"]?.int == 1)
                #expect(results[1]["version"]?.int == 2)
                #expect(results[1]["data"] == .object(["x": .number("2"), "y": .number("1")]))
                #expect(results[2]["code"]?.str == "not_found")
                #expect(results[2]["key"]?.str == "\(p)/missing")
                #expect(results[3]["version"]?.int == 2)
                #expect(results[4]["version"]?.int == 2)
                #expect(results[5]["merged"] == .bool(true))
                #expect(results[5]["version"]?.int == 3)
                let seqs = [results[0], results[3], results[5]].compactMap { $0["seq"]?.int }
                #expect(seqs.count == 3 && seqs == seqs.sorted() && Set(seqs).count == 3, "\(seqs)")
                for result in results { #expect(result["rid"] == nil) }
                // Every applied op is published, in seq order.
                var updates: [JSONValue] = []
                while updates.count < 3 { updates.append(try await client.next()) }
                #expect(updates.map(\.type) == ["update", "update", "update"])
                #expect(updates.compactMap { $0["seq"]?.int } == seqs)
                let new = try await client.request(#"{"type":"get","key":"\#(p)/new"}"#)
                #expect(new["data"] == .object(["n": .number("1"), "m": .number("2")]))
            }
        }
    }

    @Test("a batch with an idempotency key is answered from its first results when retried")
    func replayed() async throws {
        try await TestServer.with { server in
            try await TestClient.with(url: server.url) { client in
                let p = uniqueKey("batch")
                try await put(client, "\(p)/a", base: 0)
                let batch =
                    #"{"type":"batch","idempotency_key":"b-\#(p)","ops":[{"op":"put","key":"\#(p)/a","base":0,"data":{}},{"op":"put","key":"\#(p)/b","base":0,"data":{}},{"op":"delete","key":"\#(p)/c","base":0}]}"#
                let first = try await client.request(batch)
                #expect(first.type == "results")
                try await put(client, "\(p)/a", base: 1)
                let again = try await client.request(batch)
                #expect(again["replayed"] == .bool(true))
                #expect(again["results"] == first["results"], "\(again.encodedString) vs \(first.encodedString)")
                #expect(try await client.request(#"{"type":"get","key":"\#(p)/b"}"#)["version"]?.int == 1)
            }
        }
    }

    @Test("a batch needs 1–1000 ops of put, patch, delete or check; a key may come back")
    func limits() async throws {
        try await TestServer.with { server in
            try await TestClient.with(url: server.url) { client in
                let key = uniqueKey()
                #expect(try await client.request(#"{"type":"batch","ops":[]}"#)["code"]?.str == "bad_request")
                #expect(
                    try await client.request(#"{"type":"batch","ops":[{"op":"get","key":"\#(key)"}]}"#)["code"]?.str
                        == "bad_request"
                )
                let op = #"{"op":"check","key":"\#(key)","base":0}"#
                let tooMany =
                    #"{"type":"batch","ops":["# + Array(repeating: op, count: 1001).joined(separator: ",") + "]}"
                #expect(try await client.request(tooMany)["code"]?.str == "too_large")
                let twice = try await client.request(
                    #"{"type":"batch","ops":[{"op":"put","key":"\#(key)","base":0,"data":{}},{"op":"put","key":"\#(key)","base":1,"data":{}}]}"#
                )
                #expect(twice["results"]?.arrayValue?.compactMap { $0["version"]?.int } == [1, 2])
            }
        }
    }
}

extension JSONValue {
    fileprivate var arrayValue: [JSONValue]? {
        if case .array(let items) = self { return items }
        return nil
    }
}
