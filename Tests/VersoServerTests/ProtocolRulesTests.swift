import Foundation
import Testing
import VersoClient
import VersoCore
import VersoEngine
import VersoServer
import VersoTesting
import VersoWire

@Suite("Protocol rules over a live server")
struct ProtocolRulesTests {
    @Test("hello → welcome with session, epoch, seq and server", arguments: compressionModes)
    func hello(compression: Bool) async throws {
        try await TestServer.with { server in
            try await TestClient.with(url: server.url, compression: compression) { client in
                let welcome = try await client.request(#"{"type":"hello","client":"laptop-1","rid":"h"}"#)
                #expect(welcome.type == "welcome")
                #expect(welcome["rid"] == .string("h"))
                #expect(welcome["session"]?.str?.isEmpty == false)
                #expect(welcome["epoch"]?.str == server.server.engine.epoch)
                #expect(welcome["seq"]?.int == 0)
                #expect(welcome["server"]?.str == "verso/0.1.0")
                #expect(welcome["force"] == .bool(false))
            }
        }
    }

    @Test(
        "Rule 1: versions start at 1, go up by one, and a delete leaves a tombstone whose version the next write continues from",
        arguments: compressionModes
    )
    func versionsAndTombstones(compression: Bool) async throws {
        try await TestServer.with { server in
            try await TestClient.with(url: server.url, compression: compression) { client in
                let key = uniqueKey()
                #expect(try await put(client, key, base: 0, #"{"n":1}"#) == 1)
                #expect(try await put(client, key, base: 1, #"{"n":2}"#) == 2)
                let patched = try await client.request(
                    #"{"type":"patch","key":"\#(key)","base":2,"patch":{"m":true,"n":null}}"#
                )
                #expect(patched.type == "ack")
                #expect(patched["version"]?.int == 3)
                let deleted = try await client.request(#"{"type":"delete","rid":1,"key":"\#(key)","base":3}"#)
                #expect(deleted.type == "ack")
                #expect(deleted["version"]?.int == 4)
                let get = try await client.request(#"{"type":"get","rid":2,"key":"\#(key)"}"#)
                #expect(get.type == "error")
                #expect(get["code"]?.str == "not_found")
                #expect(get["version"]?.int == 4)
                #expect(get["deleted"] == .bool(true))
                #expect(get["rid"]?.int == 2)
                let stale = try await client.request(#"{"type":"put","key":"\#(key)","base":0,"data":{}}"#)
                #expect(stale.type == "conflict")
                #expect(stale["deleted"] == .bool(true))
                #expect(stale["data"] == .null)
                #expect(stale["version"]?.int == 4)
                #expect(try await put(client, key, base: 4, #"{"back":1}"#) == 5)
                let snapshot = try await client.request(#"{"type":"get","key":"\#(key)"}"#)
                #expect(snapshot.type == "snapshot")
                #expect(snapshot["version"]?.int == 5)
                #expect(snapshot["data"] == .object(["back": .number("1")]))
            }
        }
    }

    @Test(
        "Rule 2: of 50 concurrent writers on the same base exactly one gets ack, every other gets conflict with the winner's version and data",
        arguments: compressionModes
    )
    func firstWriteWins(compression: Bool) async throws {
        try await TestServer.with { server in
            let key = uniqueKey("race")
            try await TestClient.with(url: server.url, compression: compression) { client in
                _ = try await put(client, key, base: 0, #"{"writer":-1}"#)
            }
            let replies = try await withThrowingTaskGroup(of: JSONValue.self) { group in
                for writer in 0..<50 {
                    group.addTask {
                        try await TestClient.with(url: server.url, compression: compression) { client in
                            try await client.request(
                                #"{"type":"put","key":"\#(key)","base":1,"data":{"writer":\#(writer)}}"#
                            )
                        }
                    }
                }
                return try await group.reduce(into: []) { $0.append($1) }
            }
            let acks = replies.filter { $0.type == "ack" }
            let conflicts = replies.filter { $0.type == "conflict" }
            #expect(acks.count == 1)
            #expect(conflicts.count == 49)
            let winner = try await TestClient.with(url: server.url, compression: compression) { client in
                try await client.request(#"{"type":"get","key":"\#(key)"}"#)
            }
            #expect(winner["version"]?.int == 2)
            for conflict in conflicts {
                #expect(conflict["version"]?.int == 2)
                #expect(conflict["base"]?.int == 1)
                #expect(conflict["data"] == winner["data"])
                #expect(conflict["deleted"] == .bool(false))
            }
        }
    }

    @Test(
        "Rule 3: every accepted change takes the next seq, and the ops of a txn share one",
        arguments: compressionModes
    )
    func sequence(compression: Bool) async throws {
        try await TestServer.with { server in
            try await TestClient.with(url: server.url, compression: compression) { client in
                let first = try await client.request(#"{"type":"put","key":"s/a","base":0,"data":{}}"#)
                let second = try await client.request(#"{"type":"put","key":"s/b","base":0,"data":{}}"#)
                #expect(first["seq"]?.int == 1)
                #expect(second["seq"]?.int == 2)
                let txn = try await client.request(
                    #"{"type":"txn","ops":[{"op":"put","key":"s/c","base":0,"data":{}},{"op":"patch","key":"s/a","base":1,"patch":{"x":1}},{"op":"check","key":"s/b","base":1}]}"#
                )
                #expect(txn.type == "ack")
                #expect(txn["seq"]?.int == 3)
                #expect(txn["versions"] == .object(["s/c": .number("1"), "s/a": .number("2"), "s/b": .number("1")]))
                let conflict = try await client.request(#"{"type":"put","key":"s/a","base":1,"data":{}}"#)
                #expect(conflict.type == "conflict")
                let next = try await client.request(#"{"type":"delete","key":"s/b","base":1}"#)
                #expect(next["seq"]?.int == 4)
                let welcome = try await client.request(#"{"type":"hello"}"#)
                #expect(welcome["seq"]?.int == 4)
            }
        }
    }

    @Test(
        "Rule 3: subscribe with since replays every change after it, then live ones, with no gap and no duplicate at the seam",
        arguments: compressionModes
    )
    func resumeSince(compression: Bool) async throws {
        try await TestServer.with { server in
            try await TestClient.with(url: server.url, compression: compression) { writer in
                var written: Int64 = 0
                for _ in 0..<5 { written = try await put(writer, "r/hot", base: written) }
                let startVersion = written
                try await TestClient.with(url: server.url, compression: compression) { subscriber in
                    // Writes keep landing while the subscription starts.
                    async let more: Int64 = {
                        var version = startVersion
                        for _ in 0..<40 { version = try await put(writer, "r/hot", base: version) }
                        return version
                    }()
                    let subscribed = try await subscriber.request(#"{"type":"subscribe","prefix":"r/","since":2}"#)
                    #expect(subscribed.type == "subscribed")
                    #expect(subscribed["reset"] == nil)
                    let last = try await more
                    var seen: [Int64] = []
                    while seen.last != last {
                        let update = try await subscriber.next()
                        #expect(update.type == "update")
                        #expect(update["sub"] == subscribed["sub"])
                        seen.append(update["version"]?.int ?? -1)
                    }
                    #expect(seen == Array(3...last))
                }
            }
        }
    }

    @Test("Rule 3: when the log no longer reaches back to since, the reply says reset and current snapshots follow")
    func resetWhenTooOld() async throws {
        try await TestServer.with(configure: { $0.historyLimit = 16 }) { server in
            try await TestClient.with(url: server.url) { client in
                var version: Int64 = 0
                for _ in 0..<40 { version = try await put(client, "old/a", base: version) }
                let subscribed = try await client.request(#"{"type":"subscribe","prefix":"old/","since":1}"#)
                #expect(subscribed["reset"] == .bool(true))
                #expect(subscribed["snapshots"]?.int == 1)
                let snapshot = try await client.next()
                #expect(snapshot.type == "snapshot")
                #expect(snapshot["version"]?.int == 40)
                // A recent since still replays.
                let recent = try await client.request(#"{"type":"subscribe","prefix":"old/","since":38}"#)
                #expect(recent["reset"] == nil)
                #expect(try await client.next()["version"]?.int == 39)
                #expect(try await client.next()["version"]?.int == 40)
                // A since from another store (other epoch, or ahead of this one) resets too.
                let otherEpoch = try await client.request(
                    #"{"type":"subscribe","prefix":"old/","since":38,"epoch":"not-this-one"}"#
                )
                #expect(otherEpoch["reset"] == .bool(true))
                #expect(try await client.next().type == "snapshot")
                let ahead = try await client.request(#"{"type":"subscribe","prefix":"old/","since":999}"#)
                #expect(ahead["reset"] == .bool(true))
            }
        }
    }

    @Test(
        "Rule 4: snapshots sent on subscribe are consistent with the updates that follow, which arrive in seq order",
        arguments: compressionModes
    )
    func snapshotThenUpdates(compression: Bool) async throws {
        try await TestServer.with { server in
            try await TestClient.with(url: server.url, compression: compression) { writer in
                let keys = ["c/1", "c/2", "c/3"]
                for key in keys { try await put(writer, key, base: 0) }
                try await TestClient.with(url: server.url, compression: compression) { subscriber in
                    async let writes: [String: Int64] = {
                        var versions = Dictionary(uniqueKeysWithValues: keys.map { ($0, Int64(1)) })
                        for round in 0..<60 {
                            let key = keys[round % keys.count]
                            versions[key] = try await put(writer, key, base: versions[key]!)
                        }
                        return versions
                    }()
                    let subscribed = try await subscriber.request(#"{"type":"subscribe","prefix":"c/"}"#)
                    let startSeq = subscribed["seq"]?.int ?? -1
                    var versions: [String: Int64] = [:]
                    let snapshotCount = Int(subscribed["snapshots"]?.int ?? -1)
                    #expect(snapshotCount == 3)
                    for _ in 0..<snapshotCount {
                        let snapshot = try await subscriber.next()
                        #expect(snapshot.type == "snapshot")
                        versions[snapshot["key"]!.str!] = snapshot["version"]!.int!
                    }
                    let final = try await writes
                    var lastSeq = startSeq
                    while versions != final {
                        let update = try await subscriber.next()
                        #expect(update.type == "update")
                        let key = update["key"]!.str!
                        let seq = update["seq"]!.int!
                        #expect(seq > lastSeq)
                        lastSeq = seq
                        #expect(update["version"]!.int! == versions[key]! + 1, "no change lost or repeated for \(key)")
                        versions[key] = update["version"]!.int!
                    }
                }
            }
        }
    }

    @Test("Rule 5: a forced write is refused with forbidden unless the server allows it")
    func forceRefused() async throws {
        try await TestServer.with { server in
            try await TestClient.with(url: server.url) { client in
                try await put(client, "f/a", base: 0)
                let reply = try await client.request(#"{"type":"put","rid":3,"key":"f/a","force":true,"data":{"x":1}}"#)
                #expect(reply.type == "error")
                #expect(reply["code"]?.str == "forbidden")
                #expect(reply["rid"]?.int == 3)
                #expect(try await client.request(#"{"type":"get","key":"f/a"}"#)["version"]?.int == 1)
            }
        }
    }

    @Test("Rule 5: when allowed, a forced write takes version current+1 and is broadcast like any change")
    func forceAllowed() async throws {
        try await TestServer.with(configure: { $0.allowForce = true }) { server in
            try await TestClient.with(url: server.url) { client in
                try await put(client, "f/a", base: 0)
                try await put(client, "f/a", base: 1)
                _ = try await client.request(#"{"type":"subscribe","keys":["f/a"]}"#)
                _ = try await client.next()
                let reply = try await client.request(#"{"type":"put","key":"f/a","force":true,"data":{"forced":true}}"#)
                #expect(reply.type == "ack")
                #expect(reply["version"]?.int == 3)
                let update = try await client.next()
                #expect(update.type == "update")
                #expect(update["version"]?.int == 3)
                #expect(update["data"] == .object(["forced": .bool(true)]))
            }
        }
    }

    @Test(
        "Rule 6: data must be a JSON object and keys 1–512 bytes without control characters; a refused write changes nothing"
    )
    func dataAndKeys() async throws {
        try await TestServer.with { server in
            try await TestClient.with(url: server.url) { client in
                let long = String(repeating: "x", count: 513)
                for bad in [
                    #"{"type":"put","rid":"b","key":"d/a","base":0,"data":[1,2]}"#,
                    #"{"type":"put","rid":"b","key":"d/a","base":0,"data":"text"}"#,
                    #"{"type":"put","rid":"b","key":"\#(long)","base":0,"data":{}}"#,
                    #"{"type":"put","rid":"b","key":"d/\u0007","base":0,"data":{}}"#,
                ] {
                    let reply = try await client.request(bad)
                    #expect(reply.type == "error")
                    #expect(reply["code"]?.str == "bad_request")
                    #expect(reply["rid"]?.str == "b")
                }
                #expect(try await client.request(#"{"type":"hello"}"#)["seq"]?.int == 0)
                #expect(try await put(client, String(repeating: "é", count: 256), base: 0) == 1)
            }
        }
    }

    @Test("Rule 7: a conflict on a key that never existed carries version 0, data null, deleted false")
    func conflictOnMissingKey() async throws {
        try await TestServer.with { server in
            try await TestClient.with(url: server.url) { client in
                let reply = try await client.request(#"{"type":"put","key":"e/none","base":3,"data":{}}"#)
                #expect(reply.type == "conflict")
                #expect(reply["version"]?.int == 0)
                #expect(reply["data"] == .null)
                #expect(reply["deleted"] == .bool(false))
                #expect(reply["base"]?.int == 3)
            }
        }
    }

    @Test(
        "Rule 7: deleting a key that does not exist or is already deleted, with the right base, is not_found and makes no new version"
    )
    func deleteMissing() async throws {
        try await TestServer.with { server in
            try await TestClient.with(url: server.url) { client in
                let missing = try await client.request(#"{"type":"delete","key":"e/none","base":0}"#)
                #expect(missing["code"]?.str == "not_found")
                try await put(client, "e/a", base: 0)
                _ = try await client.request(#"{"type":"delete","key":"e/a","base":1}"#)
                let again = try await client.request(#"{"type":"delete","key":"e/a","base":2}"#)
                #expect(again["code"]?.str == "not_found")
                #expect(again["version"]?.int == 2)
                #expect(again["deleted"] == .bool(true))
                #expect(try await client.request(#"{"type":"hello"}"#)["seq"]?.int == 2)
                #expect(try await put(client, "e/a", base: 2) == 3)
            }
        }
    }

    @Test("Rule 7: subscribing to a key that does not exist sends no snapshot; its creation arrives as an update")
    func subscribeMissingKey() async throws {
        try await TestServer.with { server in
            try await TestClient.with(url: server.url) { client in
                try await put(client, "e/there", base: 0)
                let subscribed = try await client.request(#"{"type":"subscribe","keys":["e/there","e/later"]}"#)
                #expect(subscribed["snapshots"]?.int == 1)
                #expect(try await client.next()["key"]?.str == "e/there")
                let ack = try await client.request(#"{"type":"put","key":"e/later","base":0,"data":{"new":1}}"#)
                #expect(ack.type == "ack")
                let update = try await client.next()
                #expect(update.type == "update")
                #expect(update["key"]?.str == "e/later")
                #expect(update["version"]?.int == 1)
            }
        }
    }

    @Test(
        "Rule 7: on a connection that writes a key it is subscribed to, the ack comes before the update",
        arguments: compressionModes
    )
    func ackBeforeUpdate(compression: Bool) async throws {
        try await TestServer.with { server in
            try await TestClient.with(url: server.url, compression: compression) { client in
                _ = try await client.request(#"{"type":"subscribe","prefix":"o/"}"#)
                for version in Int64(0)..<20 {
                    try await client.send(#"{"type":"put","key":"o/a","base":\#(version),"data":{"v":\#(version)}}"#)
                    let first = try await client.next()
                    let second = try await client.next()
                    #expect(first.type == "ack")
                    #expect(second.type == "update")
                    #expect(first["seq"] == second["seq"])
                }
            }
        }
    }

    @Test(
        "Rule 7: next in a records reply is the last key returned, to pass back as after; lists are in key order and skip tombstones"
    )
    func listPaging() async throws {
        try await TestServer.with { server in
            try await TestClient.with(url: server.url) { client in
                let keys = (0..<7).map { "l/\($0)" }
                for key in keys.shuffled() { try await put(client, key, base: 0, #"{"k":"\#(key)"}"#) }
                try await put(client, "lz", base: 0)
                _ = try await client.request(#"{"type":"delete","key":"l/3","base":1}"#)
                var seen: [String] = []
                var after = "null"
                while true {
                    let page = try await client.request(#"{"type":"list","prefix":"l/","after":\#(after),"limit":2}"#)
                    #expect(page.type == "records")
                    guard case .array(let records)? = page["records"] else { Issue.record("no records"); return }
                    seen += records.compactMap { $0["key"]?.str }
                    guard let next = page["next"]?.str else { break }
                    #expect(next == records.last?["key"]?.str)
                    after = "\"\(next)\""
                }
                #expect(seen == ["l/0", "l/1", "l/2", "l/4", "l/5", "l/6"])
            }
        }
    }

    @Test("txn is all or nothing: a stale op lists every conflict and applies nothing", arguments: compressionModes)
    func txnAllOrNothing(compression: Bool) async throws {
        try await TestServer.with { server in
            try await TestClient.with(url: server.url, compression: compression) { client in
                try await put(client, "t/a", base: 0, #"{"a":1}"#)
                try await put(client, "t/b", base: 0, #"{"b":1}"#)
                let reply = try await client.request(
                    #"{"type":"txn","rid":9,"ops":[{"op":"put","key":"t/a","base":1,"data":{"a":2}},{"op":"put","key":"t/b","base":0,"data":{}},{"op":"check","key":"t/c","base":4},{"op":"put","key":"t/new","base":0,"data":{}}]}"#
                )
                #expect(reply.type == "conflict")
                #expect(reply["rid"]?.int == 9)
                guard case .array(let conflicts)? = reply["conflicts"] else {
                    Issue.record("no conflicts list"); return
                }
                #expect(conflicts.compactMap { $0["key"]?.str } == ["t/b", "t/c"])
                #expect(conflicts[0]["version"]?.int == 1)
                #expect(conflicts[0]["data"] == .object(["b": .number("1")]))
                #expect(conflicts[1]["version"]?.int == 0)
                #expect(try await client.request(#"{"type":"get","key":"t/a"}"#)["version"]?.int == 1)
                #expect(try await client.request(#"{"type":"get","key":"t/new"}"#)["code"]?.str == "not_found")
                #expect(try await client.request(#"{"type":"hello"}"#)["seq"]?.int == 2)
                let notFound = try await client.request(
                    #"{"type":"txn","ops":[{"op":"put","key":"t/a","base":1,"data":{}},{"op":"delete","key":"t/none","base":0}]}"#
                )
                #expect(notFound["code"]?.str == "not_found")
                #expect(try await client.request(#"{"type":"get","key":"t/a"}"#)["version"]?.int == 1)
            }
        }
    }

    @Test("unsubscribe ends the subscription; unknown ids are not_found")
    func unsubscribe() async throws {
        try await TestServer.with { server in
            try await TestClient.with(url: server.url) { client in
                let subscribed = try await client.request(#"{"type":"subscribe","prefix":"u/"}"#)
                let sub = subscribed["sub"]!.int!
                let reply = try await client.request(#"{"type":"unsubscribe","sub":\#(sub)}"#)
                #expect(reply.type == "unsubscribed")
                try await put(client, "u/a", base: 0)
                #expect(try await barrier(client).isEmpty)
                #expect(try await client.request(#"{"type":"unsubscribe","sub":\#(sub)}"#)["code"]?.str == "not_found")
            }
        }
    }

    @Test("updates from other connections reach every matching subscriber, deletes as deleted:true with data null")
    func fanOut() async throws {
        try await TestServer.with { server in
            try await TestClient.with(url: server.url) { subscriberA in
                try await TestClient.with(url: server.url, compression: false) { subscriberB in
                    _ = try await subscriberA.request(#"{"type":"subscribe","prefix":"fan/"}"#)
                    _ = try await subscriberB.request(#"{"type":"subscribe","keys":["fan/x"]}"#)
                    try await TestClient.with(url: server.url) { writer in
                        try await put(writer, "fan/x", base: 0, #"{"v":1}"#)
                        _ = try await writer.request(#"{"type":"delete","key":"fan/x","base":1}"#)
                    }
                    for subscriber in [subscriberA, subscriberB] {
                        let created = try await subscriber.next()
                        #expect(created["data"] == .object(["v": .number("1")]))
                        #expect(created["deleted"] == .bool(false))
                        let deleted = try await subscriber.next()
                        #expect(deleted["version"]?.int == 2)
                        #expect(deleted["deleted"] == .bool(true))
                        #expect(deleted["data"] == .null)
                    }
                }
            }
        }
    }

    @Test(
        "Pipelined requests: replies in request order, each seeing the writes before it, refusals included",
        arguments: compressionModes
    )
    func pipelinedRequests(compression: Bool) async throws {
        try await TestServer.with { server in
            try await TestClient.with(url: server.url, compression: compression) { client in
                let key = uniqueKey()
                // Far more writes than may be in flight at once, sent without waiting.
                let count = 300
                for base in 0..<count {
                    try await client.send(
                        #"{"type":"put","rid":\#(base),"key":"\#(key)","base":\#(base),"data":{"n":\#(base)}}"#
                    )
                }
                try await client.send(#"{"type":"put","rid":"forced","key":"\#(key)","force":true,"data":{}}"#)
                try await client.send(#"{"type":"put","rid":"stale","key":"\#(key)","base":0,"data":{}}"#)
                try await client.send(#"{"type":"get","rid":"get","key":"\#(key)"}"#)
                try await client.send(#"{"type":"frobnicate","rid":"bad"}"#)
                for base in 0..<count {
                    let ack = try await client.next()
                    #expect(
                        ack.type == "ack" && ack["rid"]?.int == Int64(base) && ack["version"]?.int == Int64(base + 1),
                        "\(ack.encodedString)"
                    )
                }
                let forced = try await client.next()
                #expect(forced["rid"]?.str == "forced" && forced["code"]?.str == "forbidden", "\(forced.encodedString)")
                let stale = try await client.next()
                #expect(stale["rid"]?.str == "stale" && stale.type == "conflict", "\(stale.encodedString)")
                let get = try await client.next()
                #expect(get["rid"]?.str == "get" && get["version"]?.int == Int64(count), "\(get.encodedString)")
                let bad = try await client.next()
                #expect(bad["rid"]?.str == "bad" && bad.type == "error", "\(bad.encodedString)")
            }
        }
    }
}
