import VersoCore

extension ConformanceSuite {
    /// Section 5: subscribe, snapshots, since and reset, updates and their guarantees, unsubscribe.
    static let subscriptions: [ConformanceCase] = [
        ConformanceCase("5 subscribe: a prefix subscription answers subscribed, then snapshots at its seq in key order")
        { context in
            try await context.connect { peer in
                var last = Ack(key: "", version: 0, seq: 0)
                for name in ["c", "a", "b", "d"] {
                    last = try await peer.put(context.key("p/\(name)"), base: 0, data: #"{"n":\#(quoted(name))}"#)
                }
                try await peer.delete(context.key("p/d"), base: 1)
                try await peer.put(context.key("outside"), base: 0)
                let (reply, snapshots) = try await peer.subscribe(
                    #"{"type":"subscribe","rid":8,"prefix":\#(quoted(context.key("p/")))}"#
                )
                try expectEqual(reply["rid"], .integer(8), "the subscribed reply's rid")
                try expect(reply["sub"]?.int != nil, "subscribed has no integer sub: \(describe(reply))")
                let seq = try require(reply["seq"]?.int, "subscribed has no integer seq: \(describe(reply))")
                try expect(seq >= last.seq, "the subscription's seq \(seq) is before the changes \(last.seq) it shows")
                try expectEqual(reply["snapshots"]?.int, 3, "the number of snapshots (three live keys, one tombstone)")
                for (snapshot, name) in zip(snapshots, ["a", "b", "c"]) {
                    try expectEqual(
                        snapshot["key"]?.str,
                        context.key("p/\(name)"),
                        "the key of a snapshot, in key order"
                    )
                    try expectEqual(snapshot["version"]?.int, 1, "the version in the snapshot of \(name)")
                    try expectEqual(
                        snapshot["data"],
                        .literal(#"{"n":\#(quoted(name))}"#),
                        "the data in the snapshot of \(name)"
                    )
                    try expectEqual(snapshot["rid"], nil, "a rid in a subscription's snapshot")
                }
            }
        },
        ConformanceCase(
            "5 subscribe: a key that does not exist or is deleted sends no snapshot; its creation arrives as an update"
        ) { context in
            try await context.connect { peer in
                let (there, later, gone, barrier) = (
                    context.key("there"), context.key("later"), context.key("gone"), context.key("barrier")
                )
                try await peer.put(there, base: 0)
                try await peer.put(gone, base: 0)
                try await peer.delete(gone, base: 1)
                let keys = [there, later, gone, barrier].map(quoted).joined(separator: ",")
                let (reply, snapshots) = try await peer.subscribe(#"{"type":"subscribe","keys":[\#(keys)]}"#)
                try expectEqual(snapshots.compactMap { $0["key"]?.str }, [there], "the keys that got a snapshot")
                let created = try await peer.put(later, base: 0, data: #"{"new":1}"#)
                let recreated = try await peer.put(gone, base: 2, data: #"{"back":1}"#)
                let events = try await peer.events(before: barrier, subs: [reply["sub"]])
                let updates = try events.map { try Update($0, sub: reply["sub"], "an update after subscribing") }
                try expectEqual(
                    updates.map { "\($0.key) v\($0.version) seq \($0.seq)" },
                    [created, recreated].map { "\($0.key) v\($0.version) seq \($0.seq)" },
                    "the updates"
                )
            }
        },
        ConformanceCase(
            "5 updates: carry key, version, seq, data and deleted, to every matching subscriber; a delete's has data null"
        ) { context in
            let key = context.key("fan")
            try await context.connect(compression: true) { byPrefix in
                try await context.connect(compression: false) { byKey in
                    let prefixSub = try await byPrefix.subscribe(prefix: context.prefix).reply["sub"]
                    let keySub = try await byKey.subscribe(#"{"type":"subscribe","keys":[\#(quoted(key))]}"#).reply[
                        "sub"
                    ]
                    let acks = try await context.connect { writer in
                        [
                            try await writer.put(key, base: 0, data: #"{"v":1}"#),
                            try await writer.patch(key, base: 1, patch: #"{"w":2}"#),
                            try await writer.delete(key, base: 2),
                        ]
                    }
                    let expected = [JSONValue.literal(#"{"v":1}"#), .literal(#"{"v":1,"w":2}"#), .null]
                    for (subscriber, sub) in [(byPrefix, prefixSub), (byKey, keySub)] {
                        for (index, ack) in acks.enumerated() {
                            let update = try Update(try await subscriber.nextEvent(), sub: sub, "update \(index + 1)")
                            try expectEqual(update.key, key, "the key of update \(index + 1)")
                            try expectEqual(update.version, ack.version, "the version of update \(index + 1)")
                            try expectEqual(
                                update.seq,
                                ack.seq,
                                "the seq of update \(index + 1), which must be its ack's"
                            )
                            try expectEqual(update.data, expected[index], "the data of update \(index + 1)")
                            try expectEqual(update.deleted, index == 2, "deleted in update \(index + 1)")
                        }
                    }
                }
            }
        },
        ConformanceCase(
            "5 guarantee 1: per subscription, updates arrive in seq order and per key in version order while many write"
        ) { context in
            try await context.connect { peer in
                let keys = (0..<2).map { context.key("hot\($0)") }
                for key in keys { try await peer.put(key, base: 0, data: #"{"n":0}"#) }
                let sub = try await peer.subscribe(prefix: context.prefix).reply["sub"]
                let acks = try await Workloads.increments(context, keys: keys, clients: 4, perClient: 10)
                let events = try await peer.events(before: context.freshKey("barrier"), subs: [sub])
                let updates = try events.map { try Update($0, sub: sub, "an update") }
                var lastSeq: Int64 = 0
                var versions = Dictionary(uniqueKeysWithValues: keys.map { ($0, Int64(1)) })
                for update in updates {
                    try expect(
                        update.seq > lastSeq,
                        "an update with seq \(update.seq) came after one with seq \(lastSeq)"
                    )
                    try expectEqual(
                        update.version,
                        (versions[update.key] ?? 0) + 1,
                        "the version of the next update of \(update.key)"
                    )
                    lastSeq = update.seq
                    versions[update.key] = update.version
                }
                try expectEqual(
                    updates.map(\.seq),
                    acks.map(\.seq).sorted(),
                    "the seqs of the updates against the acknowledged writes"
                )
            }
        },
        ConformanceCase(
            "5 guarantee 2: snapshots and the updates that follow have no gap and no duplicate while writes go on"
        ) { context in
            try await context.connect { subscriber in
                let keys = (0..<3).map { context.key("k\($0)") }
                var acks: [Ack] = []
                for key in keys { acks.append(try await subscriber.put(key, base: 0)) }
                async let writes = Workloads.roundRobin(context, keys: keys, from: [1, 1, 1], count: 60)
                let (reply, snapshots) = try await subscriber.subscribe(prefix: context.prefix)
                acks += try await writes
                let seq = try require(reply["seq"]?.int, "subscribed has no integer seq: \(describe(reply))")
                let events = try await subscriber.events(before: context.freshKey("barrier"), subs: [reply["sub"]])
                try expectSeam(snapshots: snapshots, events: events, sub: reply["sub"], after: seq, acks: acks)
            }
        },
        ConformanceCase(
            "5 guarantee 2: a replay from since and the live updates that follow have no gap and no duplicate while writes go on"
        ) { context in
            try await context.connect { subscriber in
                let keys = (0..<3).map { context.key("k\($0)") }
                var acks: [Ack] = []
                var versions: [Int64] = [0, 0, 0]
                for round in 0..<10 {
                    let ack = try await subscriber.put(keys[round % 3], base: versions[round % 3])
                    versions[round % 3] = ack.version
                    acks.append(ack)
                }
                let since = acks[4].seq
                async let writes = Workloads.roundRobin(context, keys: keys, from: versions, count: 40)
                let epoch = try require(try await subscriber.hello()["epoch"], "welcome has no epoch")
                let (reply, snapshots) = try await subscriber.subscribe(
                    #"{"type":"subscribe","prefix":\#(quoted(context.prefix)),"since":\#(since),"epoch":\#(epoch.encodedString)}"#
                )
                acks += try await writes
                try expect(
                    reply["reset"] == nil || reply["reset"] == .bool(false),
                    "a replay from a recent since was reset: \(describe(reply))"
                )
                try expectEqual(snapshots.count, 0, "snapshots for a subscription with since")
                let events = try await subscriber.events(before: context.freshKey("barrier"), subs: [reply["sub"]])
                try expectSeam(snapshots: nil, events: events, sub: reply["sub"], after: since, acks: acks)
            }
        },
        ConformanceCase(
            "5 guarantee 3: on a connection that writes a key it subscribes to, the ack comes before the update"
        ) { context in
            try await context.connect { peer in
                let key = context.key("own")
                let sub = try await peer.subscribe(#"{"type":"subscribe","keys":[\#(quoted(key))]}"#).reply["sub"]
                for base in Int64(0)..<20 {
                    try await peer.send(#"{"type":"put","key":\#(quoted(key)),"base":\#(base),"data":{"v":\#(base)}}"#)
                    let first = try await peer.nextMessage()
                    let ack = try peer.ack(of: first, key: key, "the first message after a write on base \(base)")
                    let update = try Update(
                        try await peer.nextMessage(),
                        sub: sub,
                        "the second message after a write on base \(base)"
                    )
                    try expectEqual(update.seq, ack.seq, "the seq of the update that follows the ack")
                }
            }
        },
        ConformanceCase("5 guarantee 4: the ops of one txn arrive as separate updates with the same seq") { context in
            try await context.connect { peer in
                let (a, b, c, d, e) = (
                    context.key("a"), context.key("b"), context.key("c"), context.key("d"), context.key("e")
                )
                for key in [c, d, e] { try await peer.put(key, base: 0, data: #"{"old":true}"#) }
                let sub = try await peer.subscribe(prefix: context.prefix).reply["sub"]
                let reply = try await peer.request(
                    #"""
                    {"type":"txn","ops":[{"op":"put","key":\#(quoted(a)),"base":0,"data":{"a":1}},{"op":"put","key":\#(quoted(b)),"base":0,"data":{"b":1}},\#
                    {"op":"patch","key":\#(quoted(c)),"base":1,"patch":{"old":null,"c":1}},{"op":"check","key":\#(quoted(d)),"base":1},\#
                    {"op":"delete","key":\#(quoted(e)),"base":1}]}
                    """#
                )
                let seq = try require(try expectType(reply, "ack", "the txn")["seq"]?.int, "the txn's ack has no seq")
                let events = try await peer.events(before: context.freshKey("barrier"), subs: [sub])
                let updates = try events.map { try Update($0, sub: sub, "an update of the txn") }
                try expectEqual(updates.map(\.seq), [seq, seq, seq, seq], "the seqs of the txn's four changes")
                let byKey = Dictionary(updates.map { ($0.key, $0) }, uniquingKeysWith: { first, _ in first })
                try expectEqual(
                    byKey.keys.sorted(),
                    [a, b, c, e].sorted(),
                    "the keys updated by the txn (a check changes nothing)"
                )
                try expectEqual(byKey[a]?.data, .literal(#"{"a":1}"#), "the update of the put")
                try expectEqual(byKey[c]?.data, .literal(#"{"c":1}"#), "the update of the patch")
                try expectEqual(byKey[c]?.version, 2, "the version in the update of the patch")
                try expectEqual(byKey[e]?.deleted, true, "the update of the delete")
            }
        },
        ConformanceCase("5 since: a since with another store's epoch resets, with current snapshots") { context in
            try await context.connect { peer in
                let (a, b) = (context.key("a"), context.key("b"))
                let first = try await peer.put(a, base: 0)
                try await peer.put(a, base: 1, data: #"{"a":2}"#)
                try await peer.put(b, base: 0)
                let request =
                    #"{"type":"subscribe","prefix":\#(quoted(context.prefix)),"since":\#(first.seq),"epoch":"conformance-not-this-store"}"#
                let (reply, snapshots) = try await peer.subscribe(request)
                try expectEqual(reply["reset"], .bool(true), "reset for a since from another epoch")
                try expectEqual(
                    snapshots.map { "\($0["key"]?.str ?? "?") v\($0["version"]?.int ?? -1)" },
                    ["\(a) v2", "\(b) v1"],
                    "the snapshots after the reset"
                )
                let later = try await peer.put(b, base: 1)
                let update = try Update(
                    try await peer.nextEvent(),
                    sub: reply["sub"],
                    "the first update after the reset"
                )
                try expectEqual(update.seq, later.seq, "the seq of the first update after the reset")
            }
        },
        ConformanceCase("5 since: a since ahead of the store resets, with current snapshots") { context in
            try await context.connect { peer in
                let key = context.key("a")
                try await peer.put(key, base: 0)
                let now = try require(try await peer.hello()["seq"]?.int, "welcome has no seq")
                let (reply, snapshots) = try await peer.subscribe(
                    #"{"type":"subscribe","prefix":\#(quoted(context.prefix)),"since":\#(now + 1_000_000_000)}"#
                )
                try expectEqual(reply["reset"], .bool(true), "reset for a since a billion seqs ahead of the store")
                try expectEqual(snapshots.compactMap { $0["key"]?.str }, [key], "the snapshots after the reset")
            }
        },
        ConformanceCase(
            "5 subscribe: several subscriptions on one connection get distinct subs and each its own updates"
        ) { context in
            try await context.connect { peer in
                let (x, y, barrier) = (context.key("x"), context.key("y"), context.freshKey("barrier"))
                let all = try await peer.subscribe(prefix: context.prefix).reply["sub"]
                let some = try await peer.subscribe(#"{"type":"subscribe","keys":[\#(quoted(x)),\#(quoted(barrier))]}"#)
                    .reply["sub"]
                try expect(all != some, "two subscriptions on one connection got the same sub \(describe(all))")
                try await peer.put(x, base: 0)
                try await peer.put(y, base: 0)
                let events = try await peer.events(before: barrier, subs: [all, some])
                let seen = try events.map { event in
                    let update = try Update(event, sub: event["sub"], "an update")
                    return "\(update.key) for sub \(describe(event["sub"]))"
                }
                let expected = [
                    "\(x) for sub \(describe(all))", "\(y) for sub \(describe(all))", "\(x) for sub \(describe(some))",
                ]
                try expectEqual(seen.sorted(), expected.sorted(), "the updates of two subscriptions")
            }
        },
        ConformanceCase(
            "5 progress: an idle subscription asking for progress gets a bookmark after its updates, at a seq no older than the last write; resuming from it replays nothing twice"
        ) { context in
            try await context.connect { peer in
                let quiet = context.key("quiet/")
                let reply = try await peer.subscribe(
                    #"{"type":"subscribe","prefix":\#(quoted(quiet)),"progress":1}"#
                ).reply
                let sub = reply["sub"]
                let matching = try await peer.put(quiet + "a", base: 0)
                let elsewhere = try await peer.put(context.key("busy"), base: 0)
                let update = try await peer.nextEvent()
                try expectType(update, "update", "the update before the bookmark")
                try expectEqual(update["seq"]?.int, matching.seq, "the update's seq")
                // Bookmarks never go back, and one soon names the last write or a later seq (on
                // a slow server one may come between the two writes).
                var seq: Int64 = 0
                while seq < elsewhere.seq {
                    let bookmark = try expectType(
                        try await peer.nextEvent(timeout: .seconds(10)),
                        "progress",
                        "a bookmark within 10 s of an idle subscription asking for one every second"
                    )
                    try expectEqual(bookmark["sub"], sub, "the bookmark's sub")
                    let next = try require(bookmark["seq"]?.int, "the bookmark has no integer seq")
                    try expect(next >= max(seq, matching.seq), "a bookmark's seq \(next) went back")
                    seq = next
                }
                try await context.connect { resumed in
                    let again = try await resumed.subscribe(
                        #"{"type":"subscribe","prefix":\#(quoted(quiet)),"since":\#(seq)}"#
                    )
                    try expectEqual(again.reply["reset"], nil, "a resume from a bookmark's reset")
                    let later = try await resumed.put(quiet + "b", base: 0)
                    let events = try await resumed.events(
                        before: context.freshKey("quiet/barrier"),
                        subs: [again.reply["sub"]]
                    )
                    try expectEqual(
                        events.map { $0["seq"]?.int },
                        [later.seq],
                        "the updates after resuming from the bookmark"
                    )
                }
            }
        },
        ConformanceCase("5 unsubscribe: ends the subscription; an unknown sub is not_found") { context in
            try await context.connect { peer in
                let barrier = context.freshKey("barrier")
                let first = try require(try await peer.subscribe(prefix: context.prefix).reply["sub"]?.int, "no sub")
                let reply = try await peer.request(#"{"type":"unsubscribe","rid":10,"sub":\#(first)}"#)
                try expectType(reply, "unsubscribed", "unsubscribe")
                try expectEqual(reply["rid"], .integer(10), "the unsubscribed reply's rid")
                try expectEqual(reply["sub"]?.int, first, "the unsubscribed reply's sub")
                let watcher = try await peer.subscribe(#"{"type":"subscribe","keys":[\#(quoted(barrier))]}"#).reply[
                    "sub"
                ]
                try await peer.put(context.key("after"), base: 0)
                let late = try await peer.events(before: barrier, subs: [watcher])
                try expectEqual(late.count, 0, "updates for an ended subscription")
                let again = try await peer.request(#"{"type":"unsubscribe","rid":11,"sub":\#(first)}"#)
                try expectError(again, code: .notFound, rid: .integer(11), "unsubscribe of an ended subscription")
                let unknown = try await peer.request(#"{"type":"unsubscribe","rid":12,"sub":987654321}"#)
                try expectError(unknown, code: .notFound, rid: .integer(12), "unsubscribe of a sub never given")
            }
        },
    ]

    /// Checks section 5's guarantee 2 for a subscription that starts after `seq`: `snapshots`
    /// (when the subscription sent them) show, for each key, the last version acknowledged at
    /// or before `seq`, and `events` are exactly the changes acknowledged after `seq`, in seq order.
    private static func expectSeam(
        snapshots: [JSONValue]?,
        events: [JSONValue],
        sub: JSONValue?,
        after seq: Int64,
        acks: [Ack]
    ) throws {
        if let snapshots {
            var expected: [String: Int64] = [:]
            for ack in acks where ack.seq <= seq { expected[ack.key] = max(expected[ack.key] ?? 0, ack.version) }
            var got: [String: Int64] = [:]
            for snapshot in snapshots { got[snapshot["key"]?.str ?? "?"] = snapshot["version"]?.int ?? -1 }
            try expectEqual(
                got,
                expected,
                "the snapshot versions against the writes acknowledged at or before the subscription's seq \(seq)"
            )
        }
        let updates = try events.map { try Update($0, sub: sub, "an update") }
        let expected = acks.filter { $0.seq > seq }.sorted { $0.seq < $1.seq }.map {
            "\($0.key) v\($0.version) seq \($0.seq)"
        }
        try expectEqual(
            updates.map { "\($0.key) v\($0.version) seq \($0.seq)" },
            expected,
            "the updates against the writes acknowledged after seq \(seq)"
        )
    }
}
