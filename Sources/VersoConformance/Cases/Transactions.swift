import VersoCore

extension ConformanceSuite {
    /// Section 3.4: txn.
    static let transactions: [ConformanceCase] = [
        ConformanceCase("3.4 txn: an accepted txn has one seq and reports every named key's version") { context in
            try await context.connect { peer in
                let (a, b, c, d) = (context.key("a"), context.key("b"), context.key("c"), context.key("d"))
                try await peer.put(b, base: 0, data: #"{"y":1}"#)
                try await peer.put(b, base: 1, data: #"{"y":1}"#)
                try await peer.put(c, base: 0)
                var last = Ack(key: d, version: 0, seq: 0)
                for base in Int64(0)..<4 { last = try await peer.put(d, base: base, data: #"{"d":\#(base)}"#) }
                let reply = try await peer.request(
                    #"""
                    {"type":"txn","rid":6,"ops":[{"op":"put","key":\#(quoted(a)),"base":0,"data":{"x":1}},\#
                    {"op":"patch","key":\#(quoted(b)),"base":2,"patch":{"z":2}},{"op":"delete","key":\#(quoted(c)),"base":1},\#
                    {"op":"check","key":\#(quoted(d)),"base":4}]}
                    """#
                )
                try expectType(reply, "ack", "a txn of put, patch, delete and check")
                try expectEqual(reply["rid"], .integer(6), "the ack's rid")
                let seq = try require(reply["seq"]?.int, "the txn's ack has no integer seq: \(describe(reply))")
                try expect(
                    seq > last.seq,
                    "the txn's seq \(seq) is not higher than the seq \(last.seq) acknowledged before it"
                )
                let expected: JSONObject = [
                    BytewiseString(a): .integer(1), BytewiseString(b): .integer(3), BytewiseString(c): .integer(2),
                    BytewiseString(d): .integer(4),
                ]
                try expectEqual(reply["versions"], .object(expected), "the versions in the txn's ack")
                try expectEqual(try await peer.get(a)["data"], .literal(#"{"x":1}"#), "the data the txn put")
                try expectEqual(try await peer.get(b)["data"], .literal(#"{"y":1,"z":2}"#), "the data the txn patched")
                try expectEqual(try await peer.get(c)["deleted"], .bool(true), "the key the txn deleted")
                try expectEqual(try await peer.version(of: d), 4, "the version of the key the txn checked")
            }
        },
        ConformanceCase("3.4 txn: a stale base applies nothing and the conflict lists every stale op") { context in
            try await context.connect { peer in
                let (a, b, c, gone, fresh) = (
                    context.key("a"), context.key("b"), context.key("c"), context.key("gone"), context.key("fresh")
                )
                try await peer.put(a, base: 0, data: #"{"a":1}"#)
                try await peer.put(b, base: 0, data: #"{"b":1}"#)
                try await peer.put(gone, base: 0)
                try await peer.delete(gone, base: 1)
                let reply = try await peer.request(
                    #"""
                    {"type":"txn","rid":9,"ops":[{"op":"put","key":\#(quoted(a)),"base":1,"data":{"a":2}},\#
                    {"op":"put","key":\#(quoted(b)),"base":0,"data":{}},{"op":"check","key":\#(quoted(c)),"base":4},\#
                    {"op":"patch","key":\#(quoted(gone)),"base":1,"patch":{"x":1}},{"op":"put","key":\#(quoted(fresh)),"base":0,"data":{}}]}
                    """#
                )
                try expectType(reply, "conflict", "a txn with three stale ops")
                try expectEqual(reply["rid"], .integer(9), "the conflict's rid")
                let conflicts = try require(
                    reply["conflicts"]?.array,
                    "the txn's conflict has no conflicts array: \(describe(reply))"
                )
                let byKey = Dictionary(
                    conflicts.compactMap { conflict in conflict["key"]?.str.map { ($0, conflict) } },
                    uniquingKeysWith: { first, _ in first }
                )
                try expectEqual(byKey.keys.sorted(), [b, c, gone].sorted(), "the keys listed as stale")
                try expectEqual(conflicts.count, 3, "entries in the conflicts list")
                for (key, base, version, data, deleted) in [
                    (b, 0, Int64(1), JSONValue.literal(#"{"b":1}"#), false), (c, 4, 0, .null, false),
                    (gone, 1, 2, .null, true),
                ] {
                    let conflict = try require(byKey[key], "no conflict for \(key)")
                    try expectEqual(conflict["base"]?.int, Int64(base), "the base in the conflict for \(key)")
                    try expectEqual(conflict["version"]?.int, version, "the version in the conflict for \(key)")
                    try expectEqual(conflict["data"], data, "the data in the conflict for \(key)")
                    try expectEqual(conflict["deleted"], .bool(deleted), "deleted in the conflict for \(key)")
                }
                try expectEqual(try await peer.version(of: a), 1, "the version of the key whose op was not stale")
                try await expectUntouched(fresh, peer: peer, after: "the refused txn")
            }
        },
        ConformanceCase("3.4 txn: a delete of a missing or deleted key is not_found and nothing is applied") {
            context in
            try await context.connect { peer in
                let (a, missing, gone) = (context.key("a"), context.key("missing"), context.key("gone"))
                try await peer.put(a, base: 0)
                try await peer.put(gone, base: 0)
                try await peer.delete(gone, base: 1)
                for (target, base) in [(missing, 0), (gone, 2)] {
                    let reply = try await peer.request(
                        #"""
                        {"type":"txn","rid":"t","ops":[{"op":"put","key":\#(quoted(a)),"base":1,"data":{"changed":true}},\#
                        {"op":"delete","key":\#(quoted(target)),"base":\#(base)}]}
                        """#
                    )
                    try expectError(
                        reply,
                        code: .notFound,
                        rid: .string("t"),
                        "a txn deleting \(target) on base \(base)"
                    )
                    try expectEqual(reply["key"]?.str, target, "the key in the txn's not_found")
                }
                // A stale base wins over a missing key: conflict, listing only the stale op.
                let both = try await peer.request(
                    #"""
                    {"type":"txn","ops":[{"op":"put","key":\#(quoted(a)),"base":0,"data":{}},{"op":"delete","key":\#(quoted(missing)),"base":0}]}
                    """#
                )
                try expectType(both, "conflict", "a txn with a stale op and a delete of a missing key")
                try expectEqual(
                    both["conflicts"]?.array?.compactMap { $0["key"]?.str },
                    [a],
                    "the keys listed as stale"
                )
                try expectEqual(try await peer.version(of: a), 1, "the version of the key the refused txns also wrote")
                try expectEqual(try await peer.version(of: gone), 2, "the tombstone's version after the refused txn")
            }
        },
        ConformanceCase("3.4 txn: a key named twice is refused and nothing is applied") { context in
            try await context.connect { peer in
                let (a, b) = (context.key("a"), context.key("b"))
                let reply = try await peer.request(
                    #"""
                    {"type":"txn","rid":"twice","ops":[{"op":"put","key":\#(quoted(a)),"base":0,"data":{}},\#
                    {"op":"put","key":\#(quoted(b)),"base":0,"data":{}},{"op":"check","key":\#(quoted(a)),"base":0}]}
                    """#
                )
                try expectError(reply, code: .badRequest, rid: .string("twice"), "a txn naming a key twice")
                try await expectUntouched(a, peer: peer, after: "the refused txn")
                try await expectUntouched(b, peer: peer, after: "the refused txn")
            }
        },
        ConformanceCase("3.4 txn: a txn of checks that hold is acknowledged with the current seq") { context in
            try await context.connect { peer in
                let (a, none) = (context.key("a"), context.key("none"))
                let ack = try await peer.put(a, base: 0)
                let reply = try await peer.request(
                    #"{"type":"txn","ops":[{"op":"check","key":\#(quoted(a)),"base":1},{"op":"check","key":\#(quoted(none)),"base":0}]}"#
                )
                try expectType(reply, "ack", "a txn of two checks that hold")
                let seq = try require(reply["seq"]?.int, "the ack has no integer seq: \(describe(reply))")
                let welcome = try require(try await peer.hello()["seq"]?.int, "welcome has no seq")
                try expect(
                    seq >= ack.seq && seq <= welcome,
                    "the checks' seq \(seq) is not the current seq (between \(ack.seq), acknowledged before, and \(welcome), reported after)"
                )
                try expectEqual(
                    reply["versions"],
                    .object([BytewiseString(a): .integer(1), BytewiseString(none): .integer(0)]),
                    "the versions in the ack of checks"
                )
                let stale = try await peer.request(
                    #"{"type":"txn","ops":[{"op":"check","key":\#(quoted(a)),"base":0}]}"#
                )
                try expectType(stale, "conflict", "a check that does not hold")
            }
        },
        ConformanceCase("3.4 txn: of 10 concurrent txns on the same bases exactly one applies, wholly") { context in
            let (a, b) = (context.key("a"), context.key("b"))
            try await context.connect { peer in
                try await peer.put(a, base: 0)
                try await peer.put(b, base: 0)
            }
            let writers = 10
            let replies = try await Workloads.simultaneously(context, connections: writers) { writer, peer in
                try await peer.request(
                    #"""
                    {"type":"txn","ops":[{"op":"put","key":\#(quoted(a)),"base":1,"data":{"w":\#(writer)}},\#
                    {"op":"patch","key":\#(quoted(b)),"base":1,"patch":{"w":\#(writer)}}]}
                    """#
                )
            }
            let winners = replies.filter { $0.result.type == "ack" }
            try expectEqual(winners.count, 1, "txns acknowledged out of \(writers) on the same bases")
            for (writer, reply) in replies where reply.type != "ack" {
                try expectType(reply, "conflict", "the txn of writer \(writer)")
                try expectEqual(reply["conflicts"]?.array?.count, 2, "stale ops listed for writer \(writer)")
            }
            let winner = winners[0].index
            try await context.connect { peer in
                for key in [a, b] {
                    let snapshot = try expectType(try await peer.get(key), "snapshot", "get \(key)")
                    try expectEqual(snapshot["version"]?.int, 2, "the version of \(key)")
                    try expectEqual(
                        snapshot["data"],
                        .literal(#"{"w":\#(winner)}"#),
                        "the data of \(key) (both from the winning txn)"
                    )
                }
            }
        },
    ]
}
