import VersoCore

extension ConformanceSuite {
    /// 2 MiB + 1 bytes: over the default limit of 1 MiB, whatever the server says about itself.
    static let oversizedMessageBytes = 2 * 1024 * 1024 + 1

    /// Section 1.1: the limits a client can reach.
    static let limits: [ConformanceCase] = [
        ConformanceCase("1.1 limits: a key of 512 bytes of UTF-8 is accepted and one of 513 refused") { context in
            try await context.connect { peer in
                let key = keyOfLength(512, prefix: context.prefix)
                try expectEqual(key.utf8.count, 512, "the length of the long key")
                let tooLong = key + "x"
                try expectError(try await peer.tryPut(tooLong, base: 0), code: .badRequest, "put a 513-byte key")
                try expectError(try await peer.get(tooLong), code: .badRequest, "get a 513-byte key")
                try expectEqual(try await peer.put(key, base: 0).version, 1, "put a 512-byte key")
                let snapshot = try expectType(try await peer.get(key), "snapshot", "get a 512-byte key")
                try expectEqual(snapshot["key"]?.str.map { Array($0.utf8) }, Array(key.utf8), "the key in the snapshot")
            }
        },
        ConformanceCase("1.1 limits: JSON nested 64 levels deep is accepted and deeper is refused") { context in
            try await context.connect { peer in
                // Each unit nests one level ({"a":…}) or two ({"a":[…]}); the request object is
                // level 1 and data level 2, so `units` units inside data reach 2 + units × levels.
                for (unit, closing, levels) in [(#"{"a":"#, "}", 1), (#"{"a":["#, "]}", 2)] {
                    let key = context.freshKey("deep")
                    func request(depth: Int) -> String {
                        let units = (depth - 2) / levels
                        return
                            #"{"type":"put","key":\#(quoted(key)),"base":0,"data":\#(String(repeating: unit, count: units)){}\#(String(repeating: closing, count: units))}"#
                    }
                    let deeper = 64 + levels
                    try expectError(
                        try await peer.request(request(depth: deeper)),
                        code: .badRequest,
                        "a put nested \(deeper) levels deep"
                    )
                    try await expectUntouched(key, peer: peer, after: "the refused put nested \(deeper) levels deep")
                    try expectType(try await peer.request(request(depth: 64)), "ack", "a put nested 64 levels deep")
                    try expectType(try await peer.get(key), "snapshot", "get the record nested 64 levels deep")
                    // In a list reply this record would sit two levels deeper than the limit.
                    try await peer.delete(key, base: 1)
                }
            }
        },
        ConformanceCase("1.1 limits: a txn of 1000 ops is accepted and one of 1001 gets too_large") { context in
            try await context.connect { peer in
                func txn(_ count: Int) -> String {
                    let ops = (0..<count).map { #"{"op":"check","key":\#(quoted(context.key("t\($0)"))),"base":0}"# }
                    return #"{"type":"txn","rid":"big","ops":[\#(ops.joined(separator: ","))]}"#
                }
                try expectError(
                    try await peer.request(txn(1001)),
                    code: .tooLarge,
                    rid: .string("big"),
                    "a txn of 1001 ops"
                )
                let ack = try expectType(try await peer.request(txn(1000)), "ack", "a txn of 1000 checks that hold")
                try expectEqual(
                    ack["versions"]?.objectValue?.count,
                    1000,
                    "the number of versions in the ack of 1000 checks"
                )
            }
        },
        ConformanceCase("1.1 limits: a subscribe of 1000 keys is accepted and one of 1001 gets too_large") { context in
            try await context.connect { peer in
                func subscribe(_ count: Int) -> String {
                    let keys = (0..<count).map { quoted(context.key("s\($0)")) }
                    return #"{"type":"subscribe","rid":"big","keys":[\#(keys.joined(separator: ","))]}"#
                }
                try expectError(
                    try await peer.request(subscribe(1001)),
                    code: .tooLarge,
                    rid: .string("big"),
                    "a subscribe of 1001 keys"
                )
                let subscribed = try await peer.subscribe(subscribe(1000))
                try expectEqual(subscribed.snapshots.count, 0, "snapshots of 1000 keys that do not exist")
                let sub = try require(subscribed.reply["sub"]?.int, "subscribed has no sub")
                try expectType(
                    try await peer.request(#"{"type":"unsubscribe","sub":\#(sub)}"#),
                    "unsubscribed",
                    "unsubscribe"
                )
            }
        },
        ConformanceCase("1.1 limits: a list limit of 1 and of 1000 is accepted, 0 and 1001 are refused") { context in
            try await context.connect { peer in
                try await peer.put(context.key("a"), base: 0)
                try await peer.put(context.key("b"), base: 0)
                for limit in [0, 1001] {
                    let reply = try await peer.request(
                        #"{"type":"list","rid":\#(limit),"prefix":\#(quoted(context.prefix)),"limit":\#(limit)}"#
                    )
                    try expectError(reply, code: .badRequest, rid: .integer(Int64(limit)), "list with limit \(limit)")
                }
                let one = try expectType(
                    try await peer.request(#"{"type":"list","prefix":\#(quoted(context.prefix)),"limit":1}"#),
                    "records",
                    "list with limit 1"
                )
                try expectEqual(one["records"]?.array?.count, 1, "records listed with limit 1")
                let all = try expectType(
                    try await peer.request(#"{"type":"list","prefix":\#(quoted(context.prefix)),"limit":1000}"#),
                    "records",
                    "list with limit 1000"
                )
                try expectEqual(all["records"]?.array?.count, 2, "records listed with limit 1000")
            }
        },
        ConformanceCase("1.1 limits: a message of 2 MiB + 1 bytes closes the connection with 1009") { context in
            let key = context.key("oversized")
            try await context.connect(compression: false) { peer in
                try await peer.send(oversizedPut(key, compressible: false))
                try await peer.expectClose(1009, "after a message of 2 MiB + 1 bytes")
            }
            try await context.connect { peer in
                try await expectUntouched(key, peer: peer, after: "the message over the limit")
            }
        },
        ConformanceCase(
            "1.1 limits: a compressible message of 2 MiB + 1 bytes with permessage-deflate closes with 1009"
        ) { context in
            let key = context.key("oversized")
            try await context.connect(compression: true) { peer in
                // Deflate shrinks it to a few KiB on the wire; the limit counts it inflated.
                try await peer.send(oversizedPut(key, compressible: true))
                try await peer.expectClose(1009, "after a deflated message of 2 MiB + 1 bytes")
            }
            try await context.connect { peer in
                try await expectUntouched(key, peer: peer, after: "the message over the limit")
            }
        },
        ConformanceCase("1.1 limits: a message of 2 MiB + 1 bytes in fragments closes with 1009") { context in
            let key = context.key("oversized")
            try await context.connect(compression: false) { peer in
                let bytes = Array(oversizedPut(key, compressible: false).utf8)
                try await peer.sendFragmented(bytes, at: [bytes.count / 3, 2 * bytes.count / 3])
                try await peer.expectClose(1009, "after a fragmented message of 2 MiB + 1 bytes")
            }
            try await context.connect { peer in
                try await expectUntouched(key, peer: peer, after: "the message over the limit")
            }
        },
    ]

    /// A key of exactly `length` bytes of UTF-8 under `prefix`, mostly two-byte characters.
    static func keyOfLength(_ length: Int, prefix: String) -> String {
        let room = length - prefix.utf8.count
        return prefix + (room % 2 == 1 ? "x" : "") + String(repeating: "é", count: room / 2)
    }

    /// A valid `put` of exactly `oversizedMessageBytes` bytes: letters that deflate well, or
    /// pseudo-random ones that do not.
    static func oversizedPut(_ key: String, compressible: Bool) -> String {
        let head = #"{"type":"put","key":\#(quoted(key)),"base":0,"data":{"x":""#
        let tail = #""}}"#
        let count = oversizedMessageBytes - head.utf8.count - tail.utf8.count
        var filler = [UInt8](repeating: UInt8(ascii: "a"), count: count)
        if !compressible {
            var state: UInt64 = 0x9E37_79B9_7F4A_7C15
            for index in filler.indices {
                state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
                filler[index] = UInt8(ascii: "a") + UInt8((state >> 33) % 26)
            }
        }
        return head + String(decoding: filler, as: UTF8.self) + tail
    }

    /// Checks that `key` never existed: no refused request created it or gave it a version.
    static func expectUntouched(_ key: String, peer: Peer, after what: String) async throws {
        let reply = try await peer.get(key)
        try expectError(reply, code: .notFound, "get \(key) after \(what)")
        try expect(
            reply["deleted"] != .bool(true) && (reply["version"]?.int ?? 0) == 0,
            "\(what) changed \(key): \(describe(reply))"
        )
    }
}
