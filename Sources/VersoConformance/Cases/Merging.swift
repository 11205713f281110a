import VersoCore

extension ConformanceSuite {
    /// Section 3.3: `"merge": "fields"`.
    static let merging: [ConformanceCase] = [
        ConformanceCase("3.3 merge: writes to different fields on one base both land; the later ack says merged") {
            context in
            try await context.connect { peer in
                let key = context.key("m")
                try await peer.put(key, base: 0, data: #"{"title":"a","body":"b","meta":{"x":1,"y":1}}"#)
                let first = try await peer.request(
                    #"{"type":"patch","key":\#(quoted(key)),"base":1,"merge":"fields","patch":{"title":"A","meta":{"x":2}}}"#
                )
                let firstAck = try peer.ack(of: first, key: key, "a merge write on the current version")
                try expectEqual(first["merged"], nil, "\"merged\" on a write whose base was current")
                let second = try await peer.request(
                    #"{"type":"put","rid":"m","key":\#(quoted(key)),"base":1,"merge":"fields","data":{"title":"a","body":"B","meta":{"x":1,"y":2}}}"#
                )
                let secondAck = try peer.ack(of: second, key: key, "a put of other fields on the same base")
                try expectEqual(second["merged"], .bool(true), "the merged ack's \"merged\"")
                try expectEqual(secondAck.version, firstAck.version + 1, "the merged write's version")
                try expectEqual(
                    try await peer.get(key)["data"],
                    .literal(#"{"body":"B","meta":{"x":2,"y":2},"title":"A"}"#),
                    "the record after both writes"
                )
            }
        },
        ConformanceCase("3.3 merge: a clash is a conflict with reason clash, the clashing paths and every path changed")
        { context in
            try await context.connect { peer in
                let key = context.key("m")
                try await peer.put(key, base: 0, data: #"{"title":"a","meta":{"x":1},"n":1}"#)
                try await peer.put(key, base: 1, data: #"{"title":"b","meta":{"x":1},"n":1}"#)
                try await peer.put(key, base: 2, data: #"{"title":"b","meta":5,"n":1}"#)
                let reply = try await peer.request(
                    #"{"type":"patch","rid":4,"key":\#(quoted(key)),"base":1,"merge":"fields","patch":{"title":"c","meta":{"x":2},"n":3}}"#
                )
                try expectType(reply, "conflict", "a merge write whose fields clash")
                try expectEqual(reply["version"]?.int, 3, "the conflict's version")
                try expectEqual(reply["data"], .literal(#"{"meta":5,"n":1,"title":"b"}"#), "the conflict's data")
                try expectEqual(reply["reason"]?.str, "clash", "the conflict's reason")
                try expectEqual(reply["clashes"], .literal(#"["/meta/x","/title"]"#), "the clashing paths")
                try expectEqual(reply["changed"], .literal(#"["/meta","/title"]"#), "the paths changed since base")
                try expectEqual(try await peer.version(of: key), 3, "the version after the refused merge")
            }
        },
        ConformanceCase("3.3 merge: a record deleted, or deleted and created again, since base is a conflict saying so")
        { context in
            try await context.connect { peer in
                let key = context.key("m")
                try await peer.put(key, base: 0, data: #"{"a":1}"#)
                try await peer.put(key, base: 1, data: #"{"a":2}"#)
                try await peer.delete(key, base: 2)
                let patch = #"{"type":"patch","key":\#(quoted(key)),"base":1,"merge":"fields","patch":{"b":1}}"#
                let deleted = try expectType(try await peer.request(patch), "conflict", "a merge on a deleted record")
                try expectEqual(deleted["reason"]?.str, "deleted", "the reason for a deleted record")
                try expectEqual(deleted["deleted"], .bool(true), "the conflict's deleted")
                try await peer.put(key, base: 3, data: #"{"a":2}"#)
                let recreated = try expectType(
                    try await peer.request(patch),
                    "conflict",
                    "a merge on a record re-created since base"
                )
                try expectEqual(recreated["reason"]?.str, "recreated", "the reason for a re-created record")
                try expectEqual(recreated["clashes"], .literal("[]"), "the clashes of a re-created record")
            }
        },
        ConformanceCase(
            "3.3 merge: only \"fields\", only on put and patch, never with force; anything else is bad_request"
        ) { context in
            try await context.connect { peer in
                let key = context.key("m")
                for (index, request) in [
                    #"{"type":"put","rid":1,"key":\#(quoted(key)),"base":0,"merge":"all","data":{}}"#,
                    #"{"type":"delete","rid":2,"key":\#(quoted(key)),"base":0,"merge":"fields"}"#,
                    #"{"type":"put","rid":3,"key":\#(quoted(key)),"force":true,"merge":"fields","data":{}}"#,
                    #"{"type":"txn","rid":4,"ops":[{"op":"check","key":\#(quoted(key)),"base":0,"merge":"fields"}]}"#,
                ].enumerated() {
                    try expectError(
                        try await peer.request(request),
                        code: .badRequest,
                        rid: .integer(Int64(index + 1)),
                        "a write with a \"merge\" it may not have: \(request)"
                    )
                }
                try await expectUntouched(key, peer: peer, after: "the refused merge writes")
            }
        },
    ]

    /// Section 3.7: idempotency keys.
    static let idempotency: [ConformanceCase] = [
        ConformanceCase("3.7 idempotency: a retry on a new connection gets the original ack marked replayed") {
            context in
            let key = context.key("i")
            let idempotencyKey = "conformance-" + String(UInt64.random(in: 0 ... .max), radix: 36)
            let request =
                #"{"type":"put","key":\#(quoted(key)),"base":0,"data":{"n":1},"idempotency_key":\#(quoted(idempotencyKey))}"#
            let first = try await context.connect { peer in
                try peer.ack(of: try await peer.request(request), key: key, "a put with an idempotency key")
            }
            try await context.connect { peer in
                let again = try await peer.request(request)
                let ack = try peer.ack(of: again, key: key, "the same put retried with its key")
                try expectEqual(again["replayed"], .bool(true), "the retried ack's \"replayed\"")
                try expectEqual(ack, first, "the retried ack's key, version and seq")
                try expectEqual(try await peer.version(of: key), 1, "the version after the retry")
            }
        },
        ConformanceCase("3.7 idempotency: the same key with another request is bad_request and changes nothing") {
            context in
            try await context.connect { peer in
                let key = context.key("i")
                let idempotencyKey = quoted("conformance-" + String(UInt64.random(in: 0 ... .max), radix: 36))
                try await peer.ack(
                    of: try await peer.request(
                        #"{"type":"put","key":\#(quoted(key)),"base":0,"data":{"n":1},"idempotency_key":\#(idempotencyKey)}"#
                    ),
                    key: key,
                    "a put with an idempotency key"
                )
                try expectError(
                    try await peer.request(
                        #"{"type":"put","rid":2,"key":\#(quoted(key)),"base":0,"data":{"n":2},"idempotency_key":\#(idempotencyKey)}"#
                    ),
                    code: .badRequest,
                    rid: .integer(2),
                    "the key again with other data"
                )
                try expectEqual(
                    try await peer.get(key)["data"],
                    .literal(#"{"n":1}"#),
                    "the data after the refused reuse"
                )
            }
        },
    ]

    /// Section 3.8: batch.
    static let batches: [ConformanceCase] = [
        ConformanceCase(
            "3.8 batch: one result per op in order, acks, conflicts and errors, each op after the ones before"
        ) { context in
            try await context.connect { peer in
                let (a, b, missing) = (context.key("a"), context.key("b"), context.key("missing"))
                let before = try await peer.put(b, base: 0, data: #"{"y":1}"#)
                let reply = try await peer.request(
                    #"""
                    {"type":"batch","rid":13,"ops":[{"op":"put","key":\#(quoted(a)),"base":0,"data":{"x":1}},\#
                    {"op":"put","key":\#(quoted(b)),"base":0,"data":{}},{"op":"delete","key":\#(quoted(missing)),"base":0},\#
                    {"op":"patch","key":\#(quoted(a)),"base":1,"patch":{"z":3}}]}
                    """#
                )
                try expectType(reply, "results", "a batch")
                try expectEqual(reply["rid"], .integer(13), "the results' rid")
                let results = try require(
                    reply["results"]?.array,
                    "the batch's reply has no results: \(describe(reply))"
                )
                try expectEqual(results.count, 4, "results in the reply")
                let first = try peer.ack(of: results[0], key: a, "the batch's put of a new key")
                try expect(first.seq > before.seq, "the batch's first seq \(first.seq) is not after \(before.seq)")
                let conflict = try expectType(results[1], "conflict", "the batch's put on a stale base")
                try expectEqual(conflict["data"], .literal(#"{"y":1}"#), "the stale op's conflict data")
                try expectError(results[2], code: .notFound, "the batch's delete of a missing key")
                let last = try peer.ack(of: results[3], key: a, "the batch's patch of the key it put")
                try expectEqual(last.version, 2, "the version the patch made after the put in the same batch")
                try expect(last.seq > first.seq, "the second applied op's seq \(last.seq) is not after \(first.seq)")
                try expectEqual(try await peer.get(a)["data"], .literal(#"{"x":1,"z":3}"#), "the record the batch made")
                try expectEqual(try await peer.version(of: b), 1, "the version of the key whose op conflicted")
            }
        }
    ]
}
