import VersoCore

extension ConformanceSuite {
    /// Section 3.3: put, patch, delete, conflicts, and the versioning rule under concurrency.
    static let writes: [ConformanceCase] = [
        ConformanceCase("3.3 put: base 0 creates, and a put replaces the whole object") { context in
            try await context.connect { peer in
                let key = context.key("put")
                let reply = try await peer.request(
                    #"{"type":"put","rid":3,"key":\#(quoted(key)),"base":0,"data":{"a":1,"b":{"c":2}}}"#
                )
                let ack = try peer.ack(of: reply, key: key, "put on base 0")
                try expectEqual(reply["rid"], .integer(3), "the ack's rid")
                try expectEqual(ack.version, 1, "the version a put on base 0 makes")
                try await peer.put(key, base: 1, data: #"{"b":{"d":3}}"#)
                let snapshot = try expectType(try await peer.get(key), "snapshot", "get after two puts")
                try expectEqual(snapshot["data"], .literal(#"{"b":{"d":3}}"#), "the data after a put replaced it")
            }
        },
        ConformanceCase("3.3 patch: applies an RFC 7396 merge patch to the current object") { context in
            try await context.connect { peer in
                let key = context.key("patch")
                try await peer.put(key, base: 0, data: #"{"a":"b","c":{"d":"e","f":"g"},"tags":["x","y"],"keep":1}"#)
                // RFC 7396's own example, plus array replacement, a new nested object and a null for a missing member.
                let reply = try await peer.request(
                    #"{"type":"patch","rid":4,"key":\#(quoted(key)),"base":1,"patch":{"a":"z","c":{"f":null},"tags":["q"],"new":{"n":{"m":1}},"absent":null}}"#
                )
                try expectEqual(
                    try peer.ack(of: reply, key: key, "patch on base 1").version,
                    2,
                    "the version after a patch"
                )
                try expectEqual(reply["rid"], .integer(4), "the ack's rid")
                let snapshot = try expectType(try await peer.get(key), "snapshot", "get after the patch")
                try expectEqual(
                    snapshot["data"],
                    .literal(#"{"a":"z","c":{"d":"e"},"tags":["q"],"new":{"n":{"m":1}},"keep":1}"#),
                    "the merged data"
                )
            }
        },
        ConformanceCase("3.3 patch: a key that does not exist or is deleted is patched from {}") { context in
            try await context.connect { peer in
                let key = context.key("patch-new")
                try await peer.patch(key, base: 0, patch: #"{"a":1,"b":null,"c":{"d":null,"e":2}}"#)
                let created = try expectType(
                    try await peer.get(key),
                    "snapshot",
                    "get after a patch that created the key"
                )
                try expectEqual(created["data"], .literal(#"{"a":1,"c":{"e":2}}"#), "the data a patch on base 0 makes")
                try await peer.delete(key, base: 1)
                try expectEqual(
                    try await peer.patch(key, base: 2, patch: #"{"x":1}"#).version,
                    3,
                    "a patch on the tombstone's version"
                )
                let revived = try expectType(try await peer.get(key), "snapshot", "get after a patch of a tombstone")
                try expectEqual(
                    revived["data"],
                    .literal(#"{"x":1}"#),
                    "the data of a patched tombstone (nothing of the old record)"
                )
            }
        },
        ConformanceCase("3.3 delete: acknowledged with the new version, leaving a tombstone") { context in
            try await context.connect { peer in
                let key = context.key("delete")
                try await peer.put(key, base: 0)
                let reply = try await peer.request(#"{"type":"delete","rid":5,"key":\#(quoted(key)),"base":1}"#)
                try expectEqual(
                    try peer.ack(of: reply, key: key, "delete on base 1").version,
                    2,
                    "the version a delete makes"
                )
                try expectEqual(reply["rid"], .integer(5), "the ack's rid")
                let gone = try await peer.get(key)
                try expectError(gone, code: .notFound, "get after delete")
                try expectEqual(gone["deleted"], .bool(true), "deleted after delete")
            }
        },
        ConformanceCase(
            "3.3 writes: a stale base gets conflict with the current state (and the paths changed since a base the log holds) and changes nothing"
        ) {
            context in
            try await context.connect { peer in
                let key = context.key("stale")
                try await peer.put(key, base: 0, data: #"{"v":1}"#)
                try await peer.put(key, base: 1, data: #"{"theirs":true}"#)
                let current = JSONValue.literal(#"{"theirs":true}"#)
                for (index, write) in staleWrites(key).enumerated() {
                    for base in [1, 0, 3, 99] {
                        let reply = try await peer.request(write(base, index))
                        try expectConflict(
                            reply,
                            key: key,
                            base: base,
                            version: 2,
                            data: current,
                            deleted: false,
                            rid: .integer(Int64(index)),
                            "\(writeName(index)) on stale base \(base)"
                        )
                        // The paths changed since a base the log holds (version 1 to 2: "v"
                        // removed, "theirs" added); none for base 0 or a base not reached yet.
                        try expectEqual(
                            reply["changed"],
                            base == 1 ? JSONValue.literal(#"["/theirs","/v"]"#) : nil,
                            "\(writeName(index)) on stale base \(base): the conflict's changed"
                        )
                    }
                }
                let snapshot = try expectType(try await peer.get(key), "snapshot", "get after the refused writes")
                try expectEqual(snapshot["version"]?.int, 2, "the version after refused writes")
                try expectEqual(snapshot["data"], current, "the data after refused writes")
            }
        },
        ConformanceCase("3.3 writes: a conflict on a deleted key carries data null and deleted true") { context in
            try await context.connect { peer in
                let key = context.key("stale-tomb")
                try await peer.put(key, base: 0)
                try await peer.delete(key, base: 1)
                for (index, write) in staleWrites(key).enumerated() {
                    let reply = try await peer.request(write(0, index))
                    try expectConflict(
                        reply,
                        key: key,
                        base: 0,
                        version: 2,
                        data: .null,
                        deleted: true,
                        rid: .integer(Int64(index)),
                        "\(writeName(index)) of a tombstone on base 0"
                    )
                }
            }
        },
        ConformanceCase(
            "3.3 writes: a conflict on a key that never existed carries version 0, data null, deleted false"
        ) { context in
            try await context.connect { peer in
                let key = context.key("stale-none")
                for (index, write) in staleWrites(key).enumerated() {
                    let reply = try await peer.request(write(3, index))
                    try expectConflict(
                        reply,
                        key: key,
                        base: 3,
                        version: 0,
                        data: .null,
                        deleted: false,
                        rid: .integer(Int64(index)),
                        "\(writeName(index)) of a missing key on base 3"
                    )
                }
                try await expectUntouched(key, peer: peer, after: "the refused writes")
            }
        },
        ConformanceCase("3.3 delete: a missing or deleted key with the right base is not_found and makes no version") {
            context in
            try await context.connect { peer in
                let missing = context.key("missing")
                let reply = try await peer.request(#"{"type":"delete","rid":1,"key":\#(quoted(missing)),"base":0}"#)
                try expectError(reply, code: .notFound, rid: .integer(1), "delete a key that never existed")
                try expect(
                    reply["deleted"] != .bool(true),
                    "not_found for a key that never existed says deleted: \(describe(reply))"
                )
                try expectEqual(
                    try await peer.put(missing, base: 0).version,
                    1,
                    "the first write after the refused delete"
                )
                let deleted = context.key("deleted")
                try await peer.put(deleted, base: 0)
                try await peer.delete(deleted, base: 1)
                let again = try await peer.request(#"{"type":"delete","rid":2,"key":\#(quoted(deleted)),"base":2}"#)
                try expectError(again, code: .notFound, rid: .integer(2), "delete a deleted key on its version")
                try expectEqual(again["version"]?.int, 2, "the version in not_found for a tombstone")
                try expectEqual(again["deleted"], .bool(true), "deleted in not_found for a tombstone")
                try expectEqual(
                    try await peer.put(deleted, base: 2).version,
                    3,
                    "the first write after the refused delete"
                )
            }
        },
        ConformanceCase("3.3 versioning rule: of 50 concurrent writes on the same base exactly one is accepted") {
            context in
            let key = context.key("race")
            _ = try await context.connect { try await $0.put(key, base: 0, data: #"{"writer":-1}"#) }
            let writers = 50
            let replies = try await Workloads.simultaneously(context, connections: writers) { writer, peer in
                try await peer.request(#"{"type":"put","key":\#(quoted(key)),"base":1,"data":{"writer":\#(writer)}}"#)
            }
            let winners = replies.filter { $0.result.type == "ack" }
            try expectEqual(winners.count, 1, "writes acknowledged out of \(writers) on base 1")
            let (winner, ack) = winners[0]
            try expectEqual(ack["version"]?.int, 2, "the winner's version")
            let data = JSONValue.literal(#"{"writer":\#(winner)}"#)
            for (writer, reply) in replies where writer != winner {
                try expectConflict(
                    reply,
                    key: key,
                    base: 1,
                    version: 2,
                    data: data,
                    deleted: false,
                    rid: nil,
                    "writer \(writer), which lost to writer \(winner)"
                )
            }
            let final = try await context.connect { try await $0.get(key) }
            try expectEqual(final["version"]?.int, 2, "the version after the race")
            try expectEqual(final["data"], data, "the data after the race")
        },
        ConformanceCase("3.3 versioning rule: 8 clients × 25 retried increments on 3 hot keys add up to exactly 200") {
            context in
            let keys = (0..<3).map { context.key("hot\($0)") }
            try await context.connect { peer in
                for key in keys { try await peer.put(key, base: 0, data: #"{"n":0}"#) }
            }
            let acks = try await Workloads.increments(context, keys: keys, clients: 8, perClient: 25)
            try expectEqual(acks.count, 200, "acknowledged increments")
            try expectEqual(Set(acks.map(\.seq)).count, acks.count, "distinct seqs among acknowledged writes")
            try await context.connect { peer in
                var total: Int64 = 0
                for key in keys {
                    let versions = acks.filter { $0.key == key }.map(\.version).sorted()
                    try expectEqual(
                        versions,
                        Array(2..<(2 + Int64(versions.count))),
                        "the versions acknowledged for \(key) (each once, none missing)"
                    )
                    let snapshot = try expectType(try await peer.get(key), "snapshot", "get \(key)")
                    try expectEqual(snapshot["version"]?.int, 1 + Int64(versions.count), "the final version of \(key)")
                    let n = try require(snapshot["data"]?["n"]?.int, "no counter in \(describe(snapshot))")
                    try expectEqual(
                        n,
                        Int64(versions.count),
                        "the counter of \(key) against its acknowledged increments"
                    )
                    total += n
                }
                try expectEqual(total, 200, "the sum of the counters")
            }
        },
    ]

    /// A put, a patch and a delete of `key`, each as a function of base and rid.
    private static func staleWrites(_ key: String) -> [(Int, Int) -> String] {
        let key = quoted(key)
        return [
            { #"{"type":"put","rid":\#($1),"key":\#(key),"base":\#($0),"data":{"mine":true}}"# },
            { #"{"type":"patch","rid":\#($1),"key":\#(key),"base":\#($0),"patch":{"mine":true}}"# },
            { #"{"type":"delete","rid":\#($1),"key":\#(key),"base":\#($0)}"# },
        ]
    }

    private static func writeName(_ index: Int) -> String { ["put", "patch", "delete"][index] }

    /// Checks a single-key `conflict` reply member by member; `rid: nil` skips the rid.
    static func expectConflict(
        _ reply: JSONValue,
        key: String,
        base: Int,
        version: Int64,
        data: JSONValue,
        deleted: Bool,
        rid: JSONValue?,
        _ what: String
    ) throws {
        try expectType(reply, "conflict", what)
        if let rid { try expectEqual(reply["rid"], rid, "\(what): the conflict's rid") }
        try expectEqual(reply["key"]?.str, key, "\(what): the conflict's key")
        try expectEqual(reply["base"]?.int, Int64(base), "\(what): the conflict's base")
        try expectEqual(reply["version"]?.int, version, "\(what): the conflict's version")
        try expectEqual(reply["data"], data, "\(what): the conflict's data")
        try expectEqual(reply["deleted"], .bool(deleted), "\(what): the conflict's deleted")
    }
}
