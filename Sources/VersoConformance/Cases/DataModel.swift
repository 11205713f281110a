import VersoClient
import VersoCore
import VersoWire

extension ConformanceSuite {
    /// Section 2: versions, tombstones, seq, epoch, key order, prefixes, member order, numbers.
    static let dataModel: [ConformanceCase] = [
        ConformanceCase("2 data model: the first change makes version 1 and every accepted change adds exactly 1") {
            context in
            try await context.connect { peer in
                let key = context.key("counted")
                try expectEqual(try await peer.version(of: key), 0, "the version of a key that never existed")
                try expectEqual(try await peer.put(key, base: 0).version, 1, "put on base 0")
                try expectEqual(try await peer.patch(key, base: 1, patch: #"{"a":1}"#).version, 2, "patch on base 1")
                try expectEqual(try await peer.put(key, base: 2, data: #"{"b":2}"#).version, 3, "put on base 2")
                try expectEqual(try await peer.delete(key, base: 3).version, 4, "delete on base 3")
                try expectEqual(try await peer.put(key, base: 4).version, 5, "put on the tombstone's base 4")
                try expectEqual(try await peer.version(of: key), 5, "the version read back")
            }
        },
        ConformanceCase("2 data model: a delete leaves a tombstone whose version the next write continues from") {
            context in
            try await context.connect { peer in
                let key = context.key("tomb")
                try await peer.put(key, base: 0, data: #"{"old":true}"#)
                try await peer.delete(key, base: 1)
                let gone = try await peer.get(key)
                try expectError(gone, code: .notFound, "get a deleted key")
                try expectEqual(gone["version"]?.int, 2, "the tombstone's version")
                try expectEqual(gone["deleted"], .bool(true), "deleted in not_found for a tombstone")
                let listed = try await peer.list(prefix: context.prefix)
                try expectEqual(listed["records"]?.array?.count, 0, "records listed when the only key is a tombstone")
                let recreated = try await peer.put(key, base: 2, data: #"{"new":true}"#)
                try expectEqual(recreated.version, 3, "re-creating on the tombstone's version")
                let snapshot = try expectType(try await peer.get(key), "snapshot", "get the re-created key")
                try expectEqual(snapshot["data"], .literal(#"{"new":true}"#), "the re-created record's data")
            }
        },
        ConformanceCase("2 data model: every accepted change gets a higher seq, and welcome reports the last one") {
            context in
            try await context.connect { peer in
                var last: Int64 = -1
                for index in 0..<5 {
                    let ack = try await peer.put(context.key("s\(index)"), base: 0)
                    try expect(ack.seq > last, "seq \(ack.seq) of a later change is not higher than \(last)")
                    try expect(ack.seq >= 1, "seqs start at 1, got \(ack.seq)")
                    last = ack.seq
                }
                let welcome = try await peer.hello()
                let seq = try require(welcome["seq"]?.int, "welcome has no integer seq")
                try expect(seq >= last, "welcome's seq \(seq) is lower than the seq \(last) already acknowledged")
            }
        },
        ConformanceCase("2 data model: every connection sees the same epoch") { context in
            let first = try await context.connect { try await $0.hello()["epoch"] }
            let second = try await context.connect(compression: false) { try await $0.hello()["epoch"] }
            try expect(first?.str?.isEmpty == false, "welcome has no epoch string: \(describe(first))")
            try expectEqual(second, first, "the epoch on a second connection")
        },
        ConformanceCase("2 data model: keys are ordered by their UTF-8 bytes in lists and snapshots") { context in
            try await context.connect { peer in
                let names = ["b", "a", "ab", "A", "~", "é", "e\u{301}", "\u{FF5E}", "😀", "z", "\u{A0}"]
                let keys = names.map(context.key)
                for key in keys { try await peer.put(key, base: 0) }
                let expected = keys.map { Array($0.utf8) }.sorted { $0.lexicographicallyPrecedes($1) }
                let listed = try await peer.list(prefix: context.prefix)
                let listedKeys = (listed["records"]?.array ?? []).map { Array(($0["key"]?.str ?? "").utf8) }
                try expectEqual(listedKeys.map(text), expected.map(text), "the order of listed keys")
                let subscribed = try await peer.subscribe(prefix: context.prefix)
                let snapshotKeys = subscribed.snapshots.map { Array(($0["key"]?.str ?? "").utf8) }
                try expectEqual(snapshotKeys.map(text), expected.map(text), "the order of snapshots")
            }
        },
        ConformanceCase("2 data model: a prefix matches the keys whose bytes start with its bytes") { context in
            try await context.connect { peer in
                // "é" (U+00E9) and "e" + U+0301 look alike but are different bytes, so different keys.
                let names = ["p/a", "p/ab", "p/b", "p/é", "p/e\u{301}", "p/e", "q"]
                for name in names { try await peer.put(context.key(name), base: 0) }
                for (prefix, matching) in [
                    ("p/a", ["p/a", "p/ab"]), ("p/e", ["p/e", "p/e\u{301}"]), ("p/é", ["p/é"]),
                    ("p/", Array(names.dropLast())),
                ] {
                    let listed = try expectType(
                        try await peer.request(#"{"type":"list","prefix":\#(quoted(context.key(prefix)))}"#),
                        "records",
                        "list prefix \(prefix)"
                    )
                    let got = Set((listed["records"]?.array ?? []).map { text(Array(($0["key"]?.str ?? "").utf8)) })
                    let want = Set(matching.map { text(Array(context.key($0).utf8)) })
                    try expectEqual(got.sorted(), want.sorted(), "the keys listed under the prefix \(describe(prefix))")
                }
            }
        },
        ConformanceCase(
            "2 data model: record objects are sent with members in UTF-8 byte order and numbers exactly as written"
        ) { context in
            try await context.connect(compression: false) { peer in
                let key = context.key("exact")
                let data =
                    #"{"b":1,"a":1.50,"é":-0.0,"Z":1E+3,"big":123456789012345678901234567890,"nested":{"y":2,"x":[3.0e-1,{"d":1,"c":2}]},"ab":0}"#
                try await peer.put(key, base: 0, data: data)
                try await peer.send(#"{"type":"get","key":\#(quoted(key)),"rid":"order"}"#)
                let raw = try await peer.wire.nextText()
                if let violation = MemberOrder.firstViolation(in: raw, within: "data") {
                    throw ConformanceFailure(
                        "the data in a get reply has members out of UTF-8 byte order (\(violation)): \(describe(raw))"
                    )
                }
                let snapshot = try expectType(try JSONParser.parse(raw), "snapshot", "get \(key)")
                try expectEqual(snapshot["data"], .literal(data), "the data with its numbers as written")
                for (name, number) in [
                    ("a", "1.50"), ("é", "-0.0"), ("Z", "1E+3"), ("big", "123456789012345678901234567890"),
                ] {
                    try expectEqual(snapshot["data"]?[name], .number(number), "the number in member \(name)")
                }
                try await peer.send(#"{"type":"list","prefix":\#(quoted(context.prefix))}"#)
                let listed = try await peer.wire.nextText()
                if let violation = MemberOrder.firstViolation(in: listed, within: "data") {
                    throw ConformanceFailure(
                        "the data in a records reply has members out of UTF-8 byte order (\(violation)): \(describe(listed))"
                    )
                }
            }
        },
        ConformanceCase("2 data model: keys and member names that differ only by Unicode normalization are distinct") {
            context in
            // NFC "é" (C3 A9) and NFD "e" + U+0301 (65 CC 81) are canonically equivalent but different bytes.
            let (nfc, nfd) = ("\u{E9}", "e\u{301}")
            let (composed, decomposed) = (context.key(nfc), context.key(nfd))
            func bytes(_ value: JSONValue?) -> String { text(Array((value?.str ?? "").utf8)) }
            try await context.connect { writer in
                let ack = try await writer.request(
                    #"""
                    {"type":"txn","ops":[{"op":"put","key":\#(quoted(composed)),"base":0,"data":{"form":"nfc"}},\#
                    {"op":"put","key":\#(quoted(decomposed)),"base":0,"data":{"form":"nfd"}}]}
                    """#
                )
                try expectType(ack, "ack", "a txn putting both spellings of a key (two keys, not one named twice)")
                try expectEqual(ack["versions"]?.objectValue?.count, 2, "entries in the txn's versions")
                try expectEqual(
                    try await writer.get(decomposed)["data"],
                    .literal(#"{"form":"nfd"}"#),
                    "the data of the NFD key"
                )
                try expectEqual(
                    try await writer.get(composed)["data"],
                    .literal(#"{"form":"nfc"}"#),
                    "the data of the NFC key"
                )
                // The same bytes as `composed`, written with a \u escape.
                let escapedNFC = String(quoted(context.prefix).dropLast()) + #"\u00e9""#
                let twice = try await writer.request(
                    #"""
                    {"type":"txn","rid":"twice","ops":[{"op":"check","key":\#(quoted(composed)),"base":1},{"op":"check","key":\#(escapedNFC),"base":1}]}
                    """#
                )
                try expectError(
                    twice,
                    code: .badRequest,
                    rid: .string("twice"),
                    "a txn naming the same key bytes twice (once escaped)"
                )
                let (_, snapshots) = try await writer.subscribe(
                    #"{"type":"subscribe","keys":[\#(quoted(composed)),\#(quoted(decomposed))]}"#
                )
                try expectEqual(
                    snapshots.map { bytes($0["key"]) },
                    [bytes(.string(decomposed)), bytes(.string(composed))],
                    "the snapshots of a subscribe naming both keys, in byte order"
                )

                let member = context.key("members")
                try await writer.put(
                    member,
                    base: 0,
                    data: #"{\#(quoted(nfc)):"composed",\#(quoted(nfd)):"decomposed"}"#
                )
                let both = try expectType(
                    try await writer.get(member),
                    "snapshot",
                    "get a record with both spellings of a member name"
                )
                try expectEqual(
                    both["data"]?.objectValue?.count,
                    2,
                    "members of an object with both spellings of a name"
                )
                try await writer.patch(member, base: 1, patch: #"{\#(quoted(nfc)):null}"#)
                let patched = try expectType(
                    try await writer.get(member),
                    "snapshot",
                    "get the record after the merge patch"
                )
                try expectEqual(
                    patched["data"]?.encodedString.utf8.map { $0 },
                    Array(#"{\#(quoted(nfd)):"decomposed"}"#.utf8),
                    "the data after a merge patch removing the NFC member"
                )
            }
            // Each prefix subscription gets the changes under its own bytes and no other, whichever subscribed first.
            try await context.connect { first in
                try await context.connect { second in
                    let firstSub = try await first.subscribe(prefix: composed).reply["sub"]
                    let secondSub = try await second.subscribe(prefix: decomposed).reply["sub"]
                    try await second.put(decomposed, base: 1, data: #"{"form":"nfd","n":2}"#)
                    try await first.put(composed, base: 1, data: #"{"form":"nfc","n":2}"#)
                    let toFirst = try await first.events(before: context.freshKey(nfc), subs: [firstSub])
                    let toSecond = try await second.events(before: context.freshKey(nfd), subs: [secondSub])
                    try expectEqual(
                        toFirst.map { bytes($0["key"]) },
                        [bytes(.string(composed))],
                        "the updates of the subscription to the NFC prefix"
                    )
                    try expectEqual(
                        toSecond.map { bytes($0["key"]) },
                        [bytes(.string(decomposed))],
                        "the updates of the subscription to the NFD prefix, made second"
                    )
                }
            }
        },
    ]

    /// Bytes shown as text (invalid UTF-8 replaced), for comparing keys byte by byte.
    static func text(_ bytes: [UInt8]) -> String {
        bytes.map { String($0, radix: 16) }.joined(separator: " ") + " (" + String(decoding: bytes, as: UTF8.self) + ")"
    }
}
