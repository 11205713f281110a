import Foundation
import VersoClient
import VersoCore
import VersoWire

extension ConformanceSuite {
    /// Section 2.1: identities and access rules, for a server started with `--auth`. The cases
    /// skip themselves when the suite has no token (a server without `--auth`), and those that
    /// need a token limited to `conformance/` when it has no `--restricted-token`.
    static let access: [ConformanceCase] = [
        ConformanceCase(
            "2.1 access: an upgrade with a token that is not valid is answered 401 with an unauthorized error that does not echo it"
        ) { context in
            try requirePrimaryToken(context)
            let token = "verso-conformance-not-a-token"
            let handshake = RawHTTP.handshake(
                host: context.address.host,
                port: context.address.port,
                path: context.address.path,
                extensions: nil
            )
            let request = handshake.replacingOccurrences(
                of: "\r\n\r\n",
                with: "\r\nAuthorization: Bearer \(token)\r\n\r\n"
            )
            let response = try await context.http(request)
            try expectEqual(response.status, 401, "the status of an upgrade with a token the server does not know")
            try expect(
                response.headers["www-authenticate"]?.hasPrefix("Bearer") == true,
                "401 without WWW-Authenticate: Bearer: \(response.headers)"
            )
            let body: JSONValue
            do { body = try JSONParser.parse(response.body) } catch {
                throw ConformanceFailure.mismatch(
                    "the body of the 401",
                    expected: "a JSON error",
                    actual: response.body
                )
            }
            try expectError(body, code: .unauthorized, "the body of the 401")
            try expect(!response.body.contains(token), "the 401 echoes the token: \(response.body)")
        },
        ConformanceCase(
            "2.1 access: without a token, hello is answered and every other request is unauthorized and changes nothing"
        ) { context in
            try requirePrimaryToken(context)
            let key = context.freshKey("anonymous")
            try await context.connect(as: .anonymous) { anonymous in
                _ = try await anonymous.hello()
                try expectError(try await anonymous.tryPut(key, base: 0), code: .unauthorized, "a put without a token")
                try expectError(try await anonymous.get(key), code: .unauthorized, "a get without a token")
                let list = try await anonymous.request(#"{"type":"list","prefix":\#(quoted(context.prefix))}"#)
                try expectError(list, code: .unauthorized, "a list without a token")
            }
            try await context.connect { peer in
                try expectError(
                    try await peer.get(key),
                    code: .notFound,
                    "the key a put without a token tried to create"
                )
            }
        },
        ConformanceCase(
            "2.1 access: a request outside the token's rules is answered forbidden with the key and changes nothing; inside them it is served"
        ) { context in
            let outside = outsideKey()
            try await context.connect(as: .restricted) { restricted in
                try restricted.ack(
                    of: try await restricted.tryPut(context.key("inside"), base: 0),
                    key: context.key("inside"),
                    "a put inside the token's rules"
                )
                let refused = try await restricted.tryPut(outside, base: 0)
                try expectError(refused, code: .forbidden, "a put outside the token's rules")
                try expectEqual(refused["key"]?.str, outside, "the key of the forbidden error")
                try expectError(try await restricted.get(outside), code: .forbidden, "a get outside the token's rules")
            }
            try await context.connect { peer in
                try expectError(
                    try await peer.get(outside),
                    code: .notFound,
                    "the key a forbidden put tried to create"
                )
            }
        },
        ConformanceCase("2.1 access: a txn with one op outside the token's rules is refused whole") { context in
            let inside = context.key("txn-inside")
            let outside = outsideKey()
            try await context.connect(as: .restricted) { restricted in
                let ops = [inside, outside].map { #"{"op":"put","key":\#(quoted($0)),"base":0,"data":{}}"# }
                let reply = try await restricted.request(#"{"type":"txn","ops":[\#(ops.joined(separator: ","))]}"#)
                try expectError(reply, code: .forbidden, "a txn with one op outside the token's rules")
                try expectEqual(reply["key"]?.str, outside, "the key of the forbidden error")
            }
            try await context.connect { peer in
                try expectError(try await peer.get(inside), code: .notFound, "the allowed op of a refused txn")
            }
        },
        ConformanceCase("2.1 access: subscribing to a prefix needs read on the whole prefix") { context in
            try await context.connect(as: .restricted) { restricted in
                // "conformance/" is covered; "" and "conf" (which also matches "conference") are not.
                for prefix in ["", String(SuiteTokens.restrictedPrefix.prefix(4))] {
                    let reply = try await restricted.request(#"{"type":"subscribe","prefix":\#(quoted(prefix))}"#)
                    try expectError(reply, code: .forbidden, "a subscribe to the prefix \(quoted(prefix))")
                }
                let (reply, _) = try await restricted.subscribe(prefix: context.prefix)
                try expectType(reply, "subscribed", "a subscribe to a prefix inside the token's rules")
            }
        },
        ConformanceCase("2.1 access: a list never shows a key the token may not read") { context in
            // The one key the suite writes outside conformance/: under a prefix of its own,
            // deleted before the case ends.
            let outsidePrefix = outsidePrefix()
            let outside = outsidePrefix + "key"
            // Skips now, before writing, without a restricted token.
            try await context.connect(as: .restricted) { _ in }
            let written = try await context.connect { peer in try await peer.put(outside, base: 0) }
            do {
                try await context.connect(as: .restricted) { restricted in
                    let hidden = try expectType(
                        try await restricted.list(prefix: outsidePrefix),
                        "records",
                        "a list of a prefix the token may not read"
                    )
                    try expectEqual(hidden["records"], .array([]), "the records of a prefix the token may not read")
                    let all = try expectType(try await restricted.list(prefix: ""), "records", "a list of every key")
                    for record in all["records"]?.array ?? [] {
                        let key = record["key"]?.str ?? ""
                        try expect(
                            key.hasPrefix(SuiteTokens.restrictedPrefix),
                            "a list of every key shows \(quoted(key)), which the token may not read"
                        )
                    }
                }
            } catch {
                try? await context.connect { peer in _ = try await peer.delete(outside, base: written.version) }
                throw error
            }
            try await context.connect { peer in _ = try await peer.delete(outside, base: written.version) }
        },
        ConformanceCase(
            "6 errors: unauthorized: a request without a valid token, with a message saying how to give one"
        ) { context in
            try requirePrimaryToken(context)
            try await context.connect(as: .anonymous) { anonymous in
                let reply = try await anonymous.request(#"{"type":"get","rid":"u","key":\#(quoted(context.key("u")))}"#)
                try expectError(reply, code: .unauthorized, rid: .string("u"), "a get without a token")
            }
        },
    ]

    /// Fails as a skip when the suite has no token: the server is then taken to run without `--auth`.
    private static func requirePrimaryToken(_ context: CaseContext) throws {
        guard context.tokens.primary != nil else {
            throw ConformanceSkip("needs --token: the server is taken to run without --auth")
        }
    }

    /// A prefix outside `conformance/` that no other call returns.
    private static func outsidePrefix() -> String {
        "verso-conformance-outside/\(String(UInt64.random(in: 0 ... .max), radix: 36))/"
    }

    /// A key outside `conformance/` that no other call returns.
    private static func outsideKey() -> String {
        outsidePrefix() + "key"
    }
}
