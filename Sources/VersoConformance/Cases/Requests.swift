import VersoCore

extension ConformanceSuite {
    /// Sections 3, 3.1 and 3.2: rids, unknown members, reply order, hello, get.
    static let requests: [ConformanceCase] = [
        ConformanceCase("3 requests: the rid is echoed verbatim, string or integer") { context in
            try await context.connect { peer in
                for rid in [#""abc""#, #""""#, #""é \"quoted\" 😀""#, "0", "-5", "9007199254740993", "123456789012"] {
                    let welcome = try await peer.request(#"{"type":"hello","rid":\#(rid)}"#)
                    try expectEqual(welcome["rid"], .literal(rid), "the rid of the reply to hello with rid \(rid)")
                }
                let missing = try await peer.request(#"{"type":"get","rid":7,"key":\#(quoted(context.key("none")))}"#)
                try expectError(missing, code: .notFound, rid: .integer(7), "get of a missing key with rid 7")
            }
        },
        ConformanceCase("3 requests: members the server does not know are ignored") { context in
            try await context.connect { peer in
                let key = context.key("extra")
                let extra = #""x-unknown":{"nested":[1,"two"]},"zzz":null"#
                try expectType(
                    try await peer.request(#"{"type":"hello",\#(extra)}"#),
                    "welcome",
                    "hello with unknown members"
                )
                let put = try await peer.request(
                    #"{"type":"put","key":\#(quoted(key)),"base":0,"data":{"k":1},\#(extra)}"#
                )
                try expectType(put, "ack", "put with unknown members")
                let get = try await peer.request(#"{"type":"get","key":\#(quoted(key)),\#(extra)}"#)
                try expectEqual(
                    try expectType(get, "snapshot", "get with unknown members")["data"],
                    .literal(#"{"k":1}"#),
                    "the data"
                )
            }
        },
        ConformanceCase("3 requests: replies come in request order") { context in
            try await context.connect { peer in
                // 40 requests of every kind, sent before any reply is read.
                var requests: [String] = []
                for index in 0..<40 {
                    let key = quoted(context.key("o\(index % 8)"))
                    switch index % 5 {
                    case 0:
                        requests.append(
                            #"{"type":"put","rid":\#(index),"key":\#(key),"base":0,"data":{"i":\#(index)}}"#
                        )
                    case 1: requests.append(#"{"type":"get","rid":\#(index),"key":\#(key)}"#)
                    case 2:
                        requests.append(
                            #"{"type":"list","rid":\#(index),"prefix":\#(quoted(context.prefix)),"limit":3}"#
                        )
                    case 3: requests.append(#"{"type":"hello","rid":\#(index)}"#)
                    default: requests.append(#"{"type":"no-such-type","rid":\#(index)}"#)
                    }
                }
                for request in requests { try await peer.send(request) }
                for index in 0..<requests.count {
                    let reply = try await peer.nextReply()
                    try expectEqual(
                        reply["rid"],
                        .integer(Int64(index)),
                        "the rid of reply \(index + 1) of \(requests.count) pipelined requests"
                    )
                }
            }
        },
        ConformanceCase("3 requests: pipelined writes are decided in the order sent, and a later request sees them") {
            context in
            try await context.connect { peer in
                // More writes than the server keeps in flight for one connection (128).
                let key = quoted(context.key("pipelined"))
                let count = 200
                for base in 0..<count {
                    try await peer.send(
                        #"{"type":"put","rid":\#(base),"key":\#(key),"base":\#(base),"data":{"n":\#(base)}}"#
                    )
                }
                try await peer.send(#"{"type":"get","rid":"after","key":\#(key)}"#)
                for base in 0..<count {
                    let ack = try expectType(
                        try await peer.nextReply(),
                        "ack",
                        "the reply to pipelined put \(base + 1) of \(count)"
                    )
                    try expectEqual(
                        ack["rid"],
                        .integer(Int64(base)),
                        "the rid of the reply to pipelined put \(base + 1)"
                    )
                    try expectEqual(
                        ack["version"],
                        .integer(Int64(base + 1)),
                        "the version acknowledged for pipelined put \(base + 1)"
                    )
                }
                let get = try expectType(
                    try await peer.nextReply(),
                    "snapshot",
                    "the get sent after \(count) pipelined puts"
                )
                try expectEqual(
                    get["version"],
                    .integer(Int64(count)),
                    "the version a get sees after \(count) pipelined puts"
                )
            }
        },
        ConformanceCase("3.1 hello: welcome carries the rid, a session, the epoch, the last seq and the server") {
            context in
            try await context.connect { peer in
                let ack = try await peer.put(context.key("before-hello"), base: 0)
                let welcome = try expectType(
                    try await peer.request(#"{"type":"hello","rid":1,"client":"conformance"}"#),
                    "welcome",
                    "hello"
                )
                try expectEqual(welcome["rid"], .integer(1), "the welcome's rid")
                let session = try require(
                    welcome["session"]?.str,
                    "welcome has no session string: \(describe(welcome))"
                )
                try expect(!session.isEmpty, "welcome's session is empty")
                try expect(welcome["epoch"]?.str?.isEmpty == false, "welcome has no epoch string: \(describe(welcome))")
                try expect(
                    welcome["server"]?.str?.isEmpty == false,
                    "welcome has no server string: \(describe(welcome))"
                )
                let seq = try require(welcome["seq"]?.int, "welcome has no integer seq: \(describe(welcome))")
                try expect(
                    seq >= ack.seq,
                    "welcome's seq \(seq) is lower than the seq \(ack.seq) acknowledged before it"
                )
                let other = try await context.connect { try await $0.hello()["session"] }
                try expect(other != welcome["session"], "two connections got the same session \(session)")
            }
        },
        ConformanceCase("3.1 hello: a client may send requests without hello") { context in
            try await context.connect { peer in
                let key = context.key("no-hello")
                try expectError(try await peer.get(key), code: .notFound, "get as the first request")
                try await peer.put(key, base: 0)
            }
        },
        ConformanceCase("3.2 get: a record's snapshot carries the rid, key, version and data") { context in
            try await context.connect { peer in
                let key = context.key("got")
                try await peer.put(key, base: 0, data: #"{"title":"hi"}"#)
                try await peer.patch(key, base: 1, patch: #"{"tags":["a"]}"#)
                let snapshot = try expectType(
                    try await peer.request(#"{"type":"get","rid":"g","key":\#(quoted(key))}"#),
                    "snapshot",
                    "get"
                )
                try expectEqual(snapshot["rid"], .string("g"), "the snapshot's rid")
                try expectEqual(snapshot["key"]?.str, key, "the snapshot's key")
                try expectEqual(snapshot["version"]?.int, 2, "the snapshot's version")
                try expectEqual(snapshot["data"], .literal(#"{"tags":["a"],"title":"hi"}"#), "the snapshot's data")
                try expectEqual(snapshot["sub"], nil, "a sub in the reply to get")
            }
        },
        ConformanceCase("3.2 get: a key that never existed is not_found with the key") { context in
            try await context.connect { peer in
                let key = context.key("never")
                let reply = try await peer.request(#"{"type":"get","rid":2,"key":\#(quoted(key))}"#)
                try expectError(reply, code: .notFound, rid: .integer(2), "get a key that never existed")
                try expectEqual(reply["key"]?.str, key, "the key in not_found")
                try expect(
                    reply["deleted"] != .bool(true),
                    "not_found for a key that never existed says deleted: \(describe(reply))"
                )
            }
        },
        ConformanceCase("3.2 get: a deleted key is not_found with its version and deleted true") { context in
            try await context.connect { peer in
                let key = context.key("deleted")
                try await peer.put(key, base: 0)
                try await peer.put(key, base: 1)
                try await peer.delete(key, base: 2)
                let reply = try await peer.request(#"{"type":"get","rid":3,"key":\#(quoted(key))}"#)
                try expectError(reply, code: .notFound, rid: .integer(3), "get a deleted key")
                try expectEqual(reply["key"]?.str, key, "the key in not_found")
                try expectEqual(reply["version"]?.int, 3, "the version in not_found for a tombstone")
                try expectEqual(reply["deleted"], .bool(true), "deleted in not_found for a tombstone")
            }
        },
    ]
}
