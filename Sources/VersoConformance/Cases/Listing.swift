import VersoCore

extension ConformanceSuite {
    /// Section 3.5: list.
    static let listing: [ConformanceCase] = [
        ConformanceCase("3.5 list: live records in key order after a key, at most limit, with next to page on") {
            context in
            try await context.connect { peer in
                let names = (0..<7).map { "l/\($0)" }
                for name in names.shuffled() {
                    try await peer.put(context.key(name), base: 0, data: #"{"k":\#(quoted(name))}"#)
                }
                try await peer.put(context.key("lz"), base: 0)
                try await peer.delete(context.key("l/3"), base: 1)
                let prefix = context.key("l/")
                var seen: [String] = []
                var after = "null"
                for _ in 0..<10 {
                    let page = try expectType(
                        try await peer.request(
                            #"{"type":"list","rid":"p","prefix":\#(quoted(prefix)),"after":\#(after),"limit":2}"#
                        ),
                        "records",
                        "list"
                    )
                    try expectEqual(page["rid"], .string("p"), "the records reply's rid")
                    let records = try require(
                        page["records"]?.array,
                        "the records reply has no records array: \(describe(page))"
                    )
                    try expect(records.count <= 2, "a page of limit 2 has \(records.count) records")
                    for record in records {
                        let key = try require(record["key"]?.str, "a record without key: \(describe(record))")
                        let name = String(key.dropFirst(context.prefix.count))
                        try expectEqual(record["version"]?.int, 1, "the version of \(key)")
                        try expectEqual(record["data"], .literal(#"{"k":\#(quoted(name))}"#), "the data of \(key)")
                        seen.append(name)
                    }
                    guard page["next"] != .null else { break }
                    let next = try require(page["next"]?.str, "next is neither a key nor null: \(describe(page))")
                    try expectEqual(next, records.last?["key"]?.str, "next, which must be the last key returned")
                    after = quoted(next)
                }
                try expectEqual(seen, ["l/0", "l/1", "l/2", "l/4", "l/5", "l/6"], "the keys listed page by page")
                let from = try await peer.request(
                    #"{"type":"list","prefix":\#(quoted(prefix)),"after":\#(quoted(context.key("l/3")))}"#
                )
                try expectEqual(
                    from["records"]?.array?.first?["key"]?.str,
                    context.key("l/4"),
                    "the first key after a key that is not live"
                )
            }
        },
        ConformanceCase("3.5 list: without limit at most 100 records come, and next leads to the rest") { context in
            try await context.connect { peer in
                let keys = (0..<101).map { context.key(format3($0)) }
                let ops = keys.map { #"{"op":"put","key":\#(quoted($0)),"base":0,"data":{}}"# }
                try expectType(
                    try await peer.request(#"{"type":"txn","ops":[\#(ops.joined(separator: ","))]}"#),
                    "ack",
                    "a txn of 101 puts"
                )
                let first = try await peer.list(prefix: context.prefix)
                let records = first["records"]?.array ?? []
                try expectEqual(records.count, 100, "records in a list without limit")
                try expectEqual(first["next"]?.str, keys[99], "next after the first 100")
                let rest = try expectType(
                    try await peer.request(
                        #"{"type":"list","prefix":\#(quoted(context.prefix)),"after":\#(quoted(keys[99]))}"#
                    ),
                    "records",
                    "list after"
                )
                try expectEqual(rest["records"]?.array?.compactMap { $0["key"]?.str }, [keys[100]], "the rest")
                try expectEqual(rest["next"], .null, "next when the listing is complete")
            }
        },
        ConformanceCase("3.5 list: a prefix with no live records gives no records and next null") { context in
            try await context.connect { peer in
                let reply = try expectType(
                    try await peer.request(#"{"type":"list","prefix":\#(quoted(context.key("empty/")))}"#),
                    "records",
                    "list"
                )
                try expectEqual(reply["records"], .array([]), "the records under an empty prefix")
                try expectEqual(reply["next"], .null, "next under an empty prefix")
            }
        },
    ]

    /// `index` with three digits, so the keys sort as the numbers do.
    private static func format3(_ index: Int) -> String {
        String(repeating: "0", count: max(0, 3 - String(index).count)) + String(index)
    }
}
