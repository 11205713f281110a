import VersoCore

extension ConformanceSuite {
    /// Section 3.6: forced writes, refused or (with --allow-force) applied at current+1.
    static let forcedWrites: [ConformanceCase] = [
        ConformanceCase("3.6 forced writes: every kind is refused with forbidden when the server does not allow force")
        { context in
            try await context.connect { peer in
                let key = context.key("f")
                try await peer.put(key, base: 0, data: #"{"v":1}"#)
                if try await forceAllowed(context, peer: peer) {
                    throw ConformanceSkip(
                        "this server allows forced writes (--allow-force); the case for allowed forced writes checks them"
                    )
                }
                let other = context.key("other")
                let forced = [
                    #"{"type":"put","rid":1,"key":\#(quoted(key)),"force":true,"data":{"x":1}}"#,
                    #"{"type":"patch","rid":2,"key":\#(quoted(key)),"force":true,"patch":{"x":1}}"#,
                    #"{"type":"delete","rid":3,"key":\#(quoted(key)),"force":true}"#,
                    #"{"type":"txn","rid":4,"ops":[{"op":"put","key":\#(quoted(other)),"base":0,"data":{}},{"op":"put","key":\#(quoted(key)),"force":true,"data":{}}]}"#,
                ]
                for (index, request) in forced.enumerated() {
                    try expectError(
                        try await peer.request(request),
                        code: .forbidden,
                        rid: .integer(Int64(index + 1)),
                        "a forced write: \(request)"
                    )
                    let snapshot = try expectType(
                        try await peer.get(key),
                        "snapshot",
                        "get after a refused forced write"
                    )
                    try expectEqual(snapshot["version"]?.int, 1, "the version after a refused forced write")
                    try expectEqual(snapshot["data"], .literal(#"{"v":1}"#), "the data after a refused forced write")
                }
                try await expectUntouched(other, peer: peer, after: "the txn refused for its forced op")
            }
        },
        ConformanceCase(
            "3.6 forced writes: when allowed, each takes version current+1 and is broadcast; a forced delete of a missing key is not_found"
        ) { context in
            try await context.connect { peer in
                guard try await forceAllowed(context, peer: peer) else {
                    throw ConformanceSkip(
                        "this server refuses forced writes (no --allow-force); the case for refused forced writes checks that"
                    )
                }
                let (key, missing, other) = (context.key("f"), context.key("missing"), context.key("other"))
                try await peer.put(key, base: 0)
                try await peer.put(key, base: 1)
                let subscribed = try await peer.subscribe(
                    #"{"type":"subscribe","keys":[\#(quoted(key)),\#(quoted(other))]}"#
                )
                let sub = subscribed.reply["sub"]
                let steps: [(String, Int64, String?)] = [
                    (#"{"type":"put","key":\#(quoted(key)),"force":true,"data":{"forced":1}}"#, 3, #"{"forced":1}"#),
                    (
                        #"{"type":"patch","key":\#(quoted(key)),"force":true,"patch":{"more":2}}"#, 4,
                        #"{"forced":1,"more":2}"#
                    ),
                    (#"{"type":"delete","key":\#(quoted(key)),"force":true}"#, 5, nil),
                    (#"{"type":"put","key":\#(quoted(key)),"force":true,"data":{"back":3}}"#, 6, #"{"back":3}"#),
                ]
                for (request, version, data) in steps {
                    let ack = try peer.ack(of: try await peer.request(request), key: key, "a forced write: \(request)")
                    try expectEqual(ack.version, version, "the version a forced write takes")
                    let update = try Update(try await peer.nextEvent(), sub: sub, "the update of a forced write")
                    try expectEqual(update.version, version, "the version in the update of a forced write")
                    try expectEqual(update.seq, ack.seq, "the seq in the update of a forced write")
                    try expectEqual(
                        update.data,
                        data.map(JSONValue.literal) ?? .null,
                        "the data in the update of a forced write"
                    )
                }
                try await peer.delete(key, base: 6)
                _ = try await peer.nextEvent()
                let again = try await peer.request(#"{"type":"delete","rid":"d","key":\#(quoted(key)),"force":true}"#)
                try expectError(again, code: .notFound, rid: .string("d"), "a forced delete of a deleted key")
                try expectEqual(again["deleted"], .bool(true), "deleted in not_found for a tombstone")
                let never = try await peer.request(
                    #"{"type":"delete","rid":"n","key":\#(quoted(missing)),"force":true}"#
                )
                try expectError(
                    never,
                    code: .notFound,
                    rid: .string("n"),
                    "a forced delete of a key that never existed"
                )
                let txn = try await peer.request(
                    #"{"type":"txn","ops":[{"op":"put","key":\#(quoted(other)),"force":true,"data":{}},{"op":"put","key":\#(quoted(key)),"force":true,"data":{}}]}"#
                )
                try expectType(txn, "ack", "a txn of forced puts")
                try expectEqual(
                    txn["versions"],
                    .object([BytewiseString(other): .integer(1), BytewiseString(key): .integer(8)]),
                    "the versions a txn of forced puts takes"
                )
            }
        },
    ]

    /// Tries a forced put of a fresh key: true when accepted, false when forbidden.
    private static func forceAllowed(_ context: CaseContext, peer: Peer) async throws -> Bool {
        let reply = try await peer.request(
            #"{"type":"put","key":\#(quoted(context.freshKey("probe"))),"force":true,"data":{}}"#
        )
        switch (reply.type, reply["code"]?.str) {
        case ("ack", _): return true
        case ("error", "forbidden"): return false
        default:
            throw ConformanceFailure.mismatch(
                "a forced put",
                expected: "ack (force allowed) or error forbidden",
                actual: describe(reply)
            )
        }
    }
}
