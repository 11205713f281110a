import VersoCore

extension ConformanceSuite {
    /// Sections 2 (`at`), 3.9 (history) and 5.1 (presence).
    static let historyAndPresence: [ConformanceCase] = [
        ConformanceCase(
            "2 at: an update, a conflict and the history carry the same commit time for a change, in ms since the Unix epoch"
        ) { context in
            try await context.connect { peer in
                let key = context.key("stamped")
                let sub = try await peer.subscribe(#"{"type":"subscribe","keys":[\#(quoted(key))]}"#).reply["sub"]
                try await peer.put(key, base: 0)
                let update = try expectType(try await peer.nextEvent(), "update", "the update of the put")
                let at = try require(update["at"]?.int, "the update has no integer at: \(describe(update))")
                // 2020-01-01 to 2100-01-01: milliseconds, not seconds.
                try expect((1_577_836_800_000...4_102_444_800_000).contains(at), "at \(at) is not a time in ms")
                try expectEqual(update["sub"], sub, "the update's sub")
                let conflict = try await peer.tryPut(key, base: 0)
                try expectType(conflict, "conflict", "a put on a stale base")
                try expectEqual(conflict["at"]?.int, at, "the conflict's at (the current version's)")
                let history = try expectType(
                    try await peer.request(#"{"type":"history","key":\#(quoted(key))}"#),
                    "history",
                    "history"
                )
                try expectEqual(entry(history, 0)?["at"]?.int, at, "the history's at of the version")
            }
        },
        ConformanceCase(
            "3.9 history: a key's versions newest first with seq and data (a delete as a tombstone), paged by before and next down to version 1, nothing gone"
        ) { context in
            try await context.connect { peer in
                let key = context.key("hist")
                let first = try await peer.put(key, base: 0, data: #"{"n":1}"#)
                let second = try await peer.put(key, base: 1, data: #"{"n":2}"#)
                let deleted = try await peer.delete(key, base: 2)
                let fourth = try await peer.put(key, base: 3, data: #"{"n":4}"#)
                let page = try expectType(
                    try await peer.request(#"{"type":"history","rid":"h","key":\#(quoted(key)),"limit":2}"#),
                    "history",
                    "history with limit 2"
                )
                try expectEqual(page["rid"], .string("h"), "the history reply's rid")
                try expectEqual(page["key"]?.str, key, "the history reply's key")
                try expectEqual(versions(page), [4, 3], "the first page's versions")
                try expectEqual(entry(page, 0)?["seq"]?.int, fourth.seq, "version 4's seq")
                try expectEqual(entry(page, 0)?["data"], .literal(#"{"n":4}"#), "version 4's data")
                try expectEqual(entry(page, 1)?["seq"]?.int, deleted.seq, "the delete's seq")
                try expectEqual(entry(page, 1)?["data"], .null, "a delete's data")
                try expectEqual(entry(page, 1)?["deleted"], .bool(true), "a delete's deleted")
                try expectEqual(page["next"]?.int, 3, "the first page's next")
                let rest = try await peer.request(#"{"type":"history","key":\#(quoted(key)),"before":3,"limit":2}"#)
                try expectEqual(versions(rest), [2, 1], "the second page's versions")
                try expectEqual(entry(rest, 1)?["seq"]?.int, first.seq, "version 1's seq")
                try expectEqual(entry(rest, 0)?["seq"]?.int, second.seq, "version 2's seq")
                let last = try await peer.request(#"{"type":"history","key":\#(quoted(key)),"before":1}"#)
                try expectEqual(versions(last), [], "versions below version 1")
                try expectEqual(last["next"], .null, "next below version 1")
                try expectEqual(rest["gone"], nil, "gone for a key whose every version is kept")
            }
        },
        ConformanceCase(
            "3.9 history: a key that never existed is not_found; before under 1, a limit outside 1–100 or no key is bad_request"
        ) { context in
            try await context.connect { peer in
                let missing = try await peer.request(#"{"type":"history","key":\#(quoted(context.key("never")))}"#)
                try expectError(missing, code: .notFound, "history of a key that never existed")
                let key = quoted(context.key("some"))
                for bad in [#""before":0"#, #""limit":0"#, #""limit":101"#, #""limit":"5""#] {
                    let reply = try await peer.request(#"{"type":"history","key":\#(key),\#(bad)}"#)
                    try expectError(reply, code: .badRequest, "history with \(bad)")
                }
                try expectError(
                    try await peer.request(#"{"type":"history"}"#),
                    code: .badRequest,
                    "history without key"
                )
            }
        },
        ConformanceCase(
            "5.1 presence: set by one connection, it reaches the others' key and prefix subscriptions with session and client, not its own; null clears it"
        ) { context in
            try await context.connect { watcher in
                try await context.connect { editor in
                    let key = context.key("doc/1")
                    let session = try require(
                        try await editor.request(#"{"type":"hello","client":"conformance"}"#)["session"]?.str,
                        "welcome has no session"
                    )
                    let byKey = try await watcher.subscribe(#"{"type":"subscribe","keys":[\#(quoted(key))]}"#).reply
                    let byPrefix = try await watcher.subscribe(prefix: context.key("doc/")).reply
                    _ = try await editor.subscribe(#"{"type":"subscribe","keys":[\#(quoted(key))]}"#)
                    let echo = try expectType(
                        try await editor.request(
                            #"{"type":"presence","rid":5,"key":\#(quoted(key)),"state":{"field":"title"}}"#
                        ),
                        "presence",
                        "the reply to presence"
                    )
                    try expectEqual(echo["rid"], .integer(5), "the presence reply's rid")
                    try expectEqual(echo["session"]?.str, session, "the presence reply's session")
                    try expectEqual(echo["client"]?.str, "conformance", "the presence reply's client")
                    try expectEqual(echo["state"], .literal(#"{"field":"title"}"#), "the presence reply's state")
                    var subs: [JSONValue?] = []
                    for _ in 0..<2 {
                        let seen = try expectType(try await watcher.nextEvent(), "presence", "the others' presence")
                        try expectEqual(seen["key"]?.str, key, "the presence's key")
                        try expectEqual(seen["session"]?.str, session, "the presence's session")
                        try expectEqual(seen["state"], .literal(#"{"field":"title"}"#), "the presence's state")
                        subs.append(seen["sub"])
                    }
                    try expectEqual(
                        Set(subs.compactMap { $0?.int }),
                        Set([byKey["sub"]?.int, byPrefix["sub"]?.int].compactMap { $0 }),
                        "the subs the presence came through"
                    )
                    let own = try await editor.events(before: context.freshKey("barrier"), subs: [])
                    try expectEqual(own.count, 0, "presence messages sent to the connection that set it")
                    try await editor.send(#"{"type":"presence","key":\#(quoted(key)),"state":null}"#)
                    try expectType(try await editor.nextReply(), "presence", "the reply to clearing presence")
                    let cleared = try expectType(try await watcher.nextEvent(), "presence", "the cleared presence")
                    try expectEqual(cleared["state"], .null, "a cleared presence's state")
                }
            }
        },
        ConformanceCase(
            "5.1 presence: a subscribe's snapshots are followed by the others' current presence; closing a connection clears its presence"
        ) { context in
            try await context.connect { watcher in
                let key = context.key("open")
                let session = try await context.connect { editor -> String? in
                    try await editor.put(key, base: 0)
                    let echo = try await editor.request(#"{"type":"presence","key":\#(quoted(key)),"state":{"n":1}}"#)
                    let (reply, snapshots) = try await watcher.subscribe(
                        #"{"type":"subscribe","keys":[\#(quoted(key))]}"#
                    )
                    try expectEqual(snapshots.count, 1, "the snapshots before the presence")
                    let present = try expectType(try await watcher.nextEvent(), "presence", "the current presence")
                    try expectEqual(present["sub"], reply["sub"], "the current presence's sub")
                    try expectEqual(present["state"], .literal(#"{"n":1}"#), "the current presence's state")
                    return echo["session"]?.str
                }
                let left = try expectType(
                    try await watcher.nextEvent(),
                    "presence",
                    "the presence of a connection that closed"
                )
                try expectEqual(left["session"]?.str, session, "the closed connection's session")
                try expectEqual(left["state"], .null, "the closed connection's state")
            }
        },
        ConformanceCase(
            "5.1 presence limits: a state over 1 KiB is too_large, one not an object or missing bad_request, a 33rd key too_large"
        ) { context in
            try await context.connect { peer in
                let key = quoted(context.key("limits"))
                let big = #"{"x":""# + String(repeating: "a", count: 1020) + #""}"#
                try expectError(
                    try await peer.request(#"{"type":"presence","key":\#(key),"state":\#(big)}"#),
                    code: .tooLarge,
                    "a presence state over 1 KiB"
                )
                for bad in [#","state":[1]"#, #","state":"x""#, ""] {
                    try expectError(
                        try await peer.request(#"{"type":"presence","key":\#(key)\#(bad)}"#),
                        code: .badRequest,
                        "presence with \(bad.isEmpty ? "no state" : bad)"
                    )
                }
                for index in 0..<32 {
                    let reply = try await peer.request(
                        #"{"type":"presence","key":\#(quoted(context.key("limits/\(index)"))),"state":{}}"#
                    )
                    try expectType(reply, "presence", "presence on key \(index + 1) of 32")
                }
                try expectError(
                    try await peer.request(
                        #"{"type":"presence","key":\#(quoted(context.key("limits/32"))),"state":{}}"#
                    ),
                    code: .tooLarge,
                    "presence on a 33rd key"
                )
            }
        },
        ConformanceCase(
            "5.1 presence rate: 50 changes sent at once are answered each, and reach a subscriber coalesced, ending with the latest"
        ) { context in
            try await context.connect { watcher in
                try await context.connect { editor in
                    let key = context.key("busy")
                    _ = try await watcher.subscribe(#"{"type":"subscribe","keys":[\#(quoted(key))]}"#)
                    for index in 1...50 {
                        try await editor.send(#"{"type":"presence","key":\#(quoted(key)),"state":{"n":\#(index)}}"#)
                    }
                    for index in 1...50 {
                        try expectType(
                            try await editor.nextReply(),
                            "presence",
                            "the reply to presence change \(index)"
                        )
                    }
                    var seen: [Int64] = []
                    while seen.last != 50 {
                        let event = try expectType(
                            try await watcher.nextEvent(timeout: .seconds(10)),
                            "presence",
                            "a presence change within 10 s"
                        )
                        seen.append(try require(event["state"]?["n"]?.int, "a presence without n: \(describe(event))"))
                    }
                    try expect(seen.count < 50, "all 50 changes were sent one by one: not coalesced")
                    try expectEqual(seen, seen.sorted(), "the changes in the order set")
                }
            }
        },
    ]
}

/// The `version`s of a `history` reply's versions, in order.
private func versions(_ reply: JSONValue) -> [Int64] {
    guard case .array(let entries)? = reply["versions"] else { return [] }
    return entries.compactMap { $0["version"]?.int }
}

/// Entry `index` of a `history` reply's versions.
private func entry(_ reply: JSONValue, _ index: Int) -> JSONValue? {
    guard case .array(let entries)? = reply["versions"], entries.indices.contains(index) else { return nil }
    return entries[index]
}
