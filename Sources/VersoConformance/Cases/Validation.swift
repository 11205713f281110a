import VersoClient
import VersoCore
import VersoWire

extension ConformanceSuite {
    /// Sections 4 and 6: each kind of bad input gets an `error` (with its rid when it could be
    /// read), changes nothing, and leaves the connection working.
    static let validation: [ConformanceCase] = [
        ConformanceCase("4 validation: data and patch must be JSON objects") { context in
            try await refuse(context) { target, other in
                var inputs: [BadInput] = []
                for value in ["[1,2]", #""text""#, "5", "null", "true"] {
                    inputs.append(
                        BadInput(
                            "put with data \(value)",
                            #"{"type":"put","rid":"x","key":\#(target),"base":0,"data":\#(value)}"#
                        )
                    )
                    inputs.append(
                        BadInput(
                            "patch with patch \(value)",
                            #"{"type":"patch","rid":"x","key":\#(target),"base":0,"patch":\#(value)}"#
                        )
                    )
                }
                inputs.append(BadInput("put without data", #"{"type":"put","rid":"x","key":\#(target),"base":0}"#))
                inputs.append(BadInput("patch without patch", #"{"type":"patch","rid":"x","key":\#(target),"base":0}"#))
                inputs.append(
                    BadInput(
                        "a txn put with data [1]",
                        txn(
                            #"{"op":"put","key":\#(other),"base":0,"data":{}},{"op":"put","key":\#(target),"base":0,"data":[1]}"#
                        )
                    )
                )
                inputs.append(
                    BadInput(
                        "a txn patch with patch \"x\"",
                        txn(
                            #"{"op":"put","key":\#(other),"base":0,"data":{}},{"op":"patch","key":\#(target),"base":0,"patch":"x"}"#
                        )
                    )
                )
                return inputs
            }
        },
        ConformanceCase("4 validation: a key is 1–512 bytes of UTF-8 without control characters") { context in
            try await refuse(context) { target, _ in
                var inputs: [BadInput] = []
                let long = quoted(keyOfLength(513, prefix: context.prefix))
                let controls: [Unicode.Scalar] = ["\u{0}", "\u{7}", "\u{1F}", "\u{7F}", "\u{80}", "\u{9F}"]
                var bad = [
                    (#""""#, "an empty key"), (long, "a key of 513 bytes"), ("5", "a number as key"),
                    ("null", "null as key"),
                ]
                bad += controls.map {
                    (
                        quoted(context.key("c\(Character($0))")),
                        "a key with U+\(String($0.value, radix: 16, uppercase: true))"
                    )
                }
                for (key, what) in bad {
                    inputs.append(
                        BadInput("put of \(what)", #"{"type":"put","rid":"x","key":\#(key),"base":0,"data":{}}"#)
                    )
                    inputs.append(BadInput("get of \(what)", #"{"type":"get","rid":"x","key":\#(key)}"#))
                    inputs.append(BadInput("delete of \(what)", #"{"type":"delete","rid":"x","key":\#(key),"base":0}"#))
                    inputs.append(
                        BadInput("subscribe to \(what)", #"{"type":"subscribe","rid":"x","keys":[\#(target),\#(key)]}"#)
                    )
                    inputs.append(
                        BadInput(
                            "a txn op on \(what)",
                            txn(
                                #"{"op":"put","key":\#(target),"base":0,"data":{}},{"op":"check","key":\#(key),"base":0}"#
                            )
                        )
                    )
                }
                inputs.append(BadInput("put without key", #"{"type":"put","rid":"x","base":0,"data":{}}"#))
                inputs.append(BadInput("get without key", #"{"type":"get","rid":"x"}"#))
                return inputs
            } accepted: { peer in
                // Just outside the control ranges, and every other kind of character, are fine.
                for name in ["\u{A0}", "~", "a b", "😀", "\u{FFFD}", "é"] {
                    try await peer.put(context.key("valid-\(name)"), base: 0)
                }
            }
        },
        ConformanceCase("4 validation: a prefix follows the key rules but may be empty") { context in
            try await refuse(context) { _, _ in
                let long = quoted(keyOfLength(513, prefix: context.prefix))
                var inputs: [BadInput] = []
                for (prefix, what) in [
                    (long, "a prefix of 513 bytes"), (quoted(context.key("\u{1}")), "a prefix with U+1"),
                    ("5", "a number as prefix"),
                ] {
                    inputs.append(BadInput("list of \(what)", #"{"type":"list","rid":"x","prefix":\#(prefix)}"#))
                    inputs.append(
                        BadInput("subscribe to \(what)", #"{"type":"subscribe","rid":"x","prefix":\#(prefix)}"#)
                    )
                }
                return inputs
            } accepted: { peer in
                let all = try await peer.request(#"{"type":"list","prefix":"","limit":1}"#)
                try expectType(all, "records", "list with the empty prefix")
            }
        },
        ConformanceCase("4 validation: base, since and limit are integers without fraction or exponent") { context in
            try await refuse(context) { target, _ in
                var inputs: [BadInput] = []
                for base in ["-1", "1.0", "0.0", "1e0", "0E1", "1.5", #""0""#, "true", "null", "[0]"] {
                    inputs.append(
                        BadInput(
                            "put with base \(base)",
                            #"{"type":"put","rid":"x","key":\#(target),"base":\#(base),"data":{}}"#
                        )
                    )
                    inputs.append(
                        BadInput(
                            "delete with base \(base)",
                            #"{"type":"delete","rid":"x","key":\#(target),"base":\#(base)}"#
                        )
                    )
                    inputs.append(
                        BadInput(
                            "a txn check with base \(base)",
                            txn(#"{"op":"check","key":\#(target),"base":\#(base)}"#)
                        )
                    )
                }
                for since in ["1.0", "1e3", #""5""#, "true"] {
                    inputs.append(
                        BadInput(
                            "subscribe with since \(since)",
                            #"{"type":"subscribe","rid":"x","keys":[\#(target)],"since":\#(since)}"#
                        )
                    )
                }
                for limit in ["2.0", "1e1", #""5""#] {
                    inputs.append(
                        BadInput(
                            "list with limit \(limit)",
                            #"{"type":"list","rid":"x","prefix":\#(target),"limit":\#(limit)}"#
                        )
                    )
                }
                inputs.append(BadInput("put without base", #"{"type":"put","rid":"x","key":\#(target),"data":{}}"#))
                return inputs
            }
        },
        ConformanceCase("4 validation: a rid that is neither a string nor an integer is refused without a rid") {
            context in
            try await refuse(context) { target, _ in
                ["1.5", "1.0", "1e3", "true", "null", "[1]", #"{"a":1}"#].map { rid in
                    BadInput(
                        "put with rid \(rid)",
                        #"{"type":"put","rid":\#(rid),"key":\#(target),"base":0,"data":{}}"#,
                        rid: nil
                    )
                }
            }
        },
        ConformanceCase(
            "6 errors: malformed JSON, a non-object, an unknown type and missing or ill-typed fields get bad_request"
        ) { context in
            try await refuse(context) { target, _ in
                [
                    BadInput("malformed JSON", #"{"type":"put","key":\#(target),"base":0,"data":{}"#, rid: nil),
                    BadInput("text that is not JSON", "put it there", rid: nil),
                    BadInput("an empty message", "", rid: nil),
                    BadInput("trailing garbage after the object", #"{"type":"hello"} x"#, rid: nil),
                    BadInput("a JSON array", #"[{"type":"hello"}]"#, rid: nil),
                    BadInput("a JSON string", #""hello""#, rid: nil),
                    BadInput("a JSON number", "42", rid: nil),
                    BadInput("JSON null", "null", rid: nil),
                    BadInput("an unknown type", #"{"type":"frobnicate","rid":"x","key":\#(target)}"#),
                    BadInput("a missing type", #"{"rid":"x","key":\#(target),"base":0,"data":{}}"#),
                    BadInput("a type that is not a string", #"{"type":5,"rid":"x"}"#),
                    BadInput("a txn without ops", #"{"type":"txn","rid":"x"}"#),
                    BadInput(
                        "a txn whose ops is not an array",
                        #"{"type":"txn","rid":"x","ops":{"op":"check","key":\#(target),"base":0}}"#
                    ),
                    BadInput("a txn op that is not an object", txn("5")),
                    BadInput("a txn op with an unknown op", txn(#"{"op":"frobnicate","key":\#(target),"base":0}"#)),
                    BadInput("a txn op without op", txn(#"{"key":\#(target),"base":0}"#)),
                    BadInput("subscribe with neither keys nor prefix", #"{"type":"subscribe","rid":"x"}"#),
                    BadInput(
                        "subscribe with both keys and prefix",
                        #"{"type":"subscribe","rid":"x","keys":[\#(target)],"prefix":\#(target)}"#
                    ),
                    BadInput("subscribe with an empty keys array", #"{"type":"subscribe","rid":"x","keys":[]}"#),
                    BadInput(
                        "subscribe with keys that is not an array",
                        #"{"type":"subscribe","rid":"x","keys":\#(target)}"#
                    ),
                    BadInput(
                        "subscribe with an epoch that is not a string",
                        #"{"type":"subscribe","rid":"x","keys":[\#(target)],"since":0,"epoch":5}"#
                    ),
                    BadInput("unsubscribe without sub", #"{"type":"unsubscribe","rid":"x"}"#),
                    BadInput(
                        "unsubscribe with a sub that is not an integer",
                        #"{"type":"unsubscribe","rid":"x","sub":"1"}"#
                    ),
                ]
            }
        },
        ConformanceCase("6 errors: a binary message gets bad_request and the connection stays open") { context in
            try await context.connect { peer in
                let key = context.key("binary")
                try await peer.wire.send(
                    binary: Array(#"{"type":"put","key":\#(quoted(key)),"base":0,"data":{}}"#.utf8)
                )
                try expectError(try await peer.nextReply(), code: .badRequest, "a binary message")
                try await expectUntouched(key, peer: peer, after: "the binary message")
                try await peer.put(key, base: 0)
            }
        },
    ]

    /// A bad request, and the rid its error must echo (`nil`: no rid at all).
    struct BadInput {
        let what: String
        let text: String
        let rid: JSONValue?

        init(_ what: String, _ text: String, rid: JSONValue? = .string("x")) {
            self.what = what
            self.text = text
            self.rid = rid
        }
    }

    /// A txn with rid "x" and the given ops.
    private static func txn(_ ops: String) -> String {
        #"{"type":"txn","rid":"x","ops":[\#(ops)]}"#
    }

    /// Sends each input that `inputs` makes from two quoted keys, expects `bad_request` with the
    /// right rid, and after each checks that the connection answers and neither key was
    /// touched; then runs `accepted` (requests that must work) and writes both keys from base 0.
    private static func refuse(
        _ context: CaseContext,
        inputs: (_ target: String, _ other: String) -> [BadInput],
        accepted: (Peer) async throws -> Void = { _ in }
    ) async throws {
        let target = context.key("target")
        let other = context.key("other")
        try await context.connect { peer in
            for input in inputs(quoted(target), quoted(other)) {
                let reply = try await peer.request(input.text)
                try expectError(reply, code: .badRequest, rid: .some(input.rid), input.what)
                try await expectUntouched(target, peer: peer, after: input.what)
                try await expectUntouched(other, peer: peer, after: input.what)
            }
            try expectEqual(peer.bufferedEvents, 0, "subscription messages after refused requests")
            try await accepted(peer)
            try await peer.put(target, base: 0)
            try await peer.put(other, base: 0)
        }
    }
}
