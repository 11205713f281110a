import Foundation
import VersoClient
import VersoCore
import VersoWire

extension ConformanceSuite {
    /// Section 1: WebSocket, permessage-deflate, fragmentation, the plain HTTP endpoints.
    static let transport: [ConformanceCase] = [
        ConformanceCase("1 transport: a normal exchange works with permessage-deflate offered") { context in
            try await normalExchange(context, compression: true)
        },
        ConformanceCase("1 transport: a normal exchange works without permessage-deflate") { context in
            try await normalExchange(context, compression: false)
        },
        ConformanceCase("1 transport: permessage-deflate is negotiated whenever the client offers it") { context in
            let response = try await handshake(context, extensions: "permessage-deflate; client_max_window_bits")
            let accepted = response.headers["sec-websocket-extensions"] ?? ""
            try expect(
                accepted.hasPrefix("permessage-deflate"),
                "the handshake offered permessage-deflate but the response's Sec-WebSocket-Extensions is \(describe(accepted))"
            )
        },
        ConformanceCase("1 transport: permessage-deflate is not negotiated when the client does not offer it") {
            context in
            let response = try await handshake(context, extensions: nil)
            try expectEqual(
                response.headers["sec-websocket-extensions"],
                nil,
                "Sec-WebSocket-Extensions in a response to a handshake that offered none"
            )
        },
        ConformanceCase("1 transport: a text message fragmented over several frames is one message") { context in
            try await context.connect(compression: false) { peer in
                let key = context.key("fragmented")
                let bytes = Array(
                    #"{"type":"put","rid":"f","key":\#(quoted(key)),"base":0,"data":{"text":"déjà vu"}}"#.utf8
                )
                // The second cut falls inside the two bytes of "é": UTF-8 is checked per message.
                let accent = try require(bytes.firstIndex(of: 0xC3), "no é in the message")
                try await peer.sendFragmented(bytes, at: [10, accent + 1])
                let reply = try await peer.nextReply()
                try expectType(reply, "ack", "a put sent in three frames")
                try expectEqual(reply["rid"], .string("f"), "the ack's rid")
                let snapshot = try expectType(try await peer.get(key), "snapshot", "get \(key)")
                try expectEqual(snapshot["data"], .literal(#"{"text":"déjà vu"}"#), "the data written in fragments")
            }
        },
        ConformanceCase("1 transport: GET /healthz answers 200") { context in
            let response = try await context.http(context.httpGet("/healthz"))
            try expectEqual(response.status, 200, "the status of GET /healthz")
        },
        ConformanceCase("1 transport: a plain HTTP request to the WebSocket path answers 400 with a JSON error") {
            context in
            let response = try await context.http(context.httpGet(context.address.path))
            try expectEqual(response.status, 400, "the status of a plain GET \(context.address.path)")
            try expectJSONError(response, code: .badRequest, "the 400 body")
        },
        ConformanceCase(
            "1 transport: an upgrade with a Sec-WebSocket-Version other than 13 is answered 426 with Sec-WebSocket-Version: 13"
        ) { context in
            let request = handshakeRequest(context).replacingOccurrences(
                of: "Sec-WebSocket-Version: 13",
                with: "Sec-WebSocket-Version: 8"
            )
            let response = try await context.http(request)
            try expectEqual(response.status, 426, "the status of an upgrade asking for WebSocket version 8")
            try expectEqual(response.headers["sec-websocket-version"], "13", "the Sec-WebSocket-Version of the 426")
            try expectJSONError(response, code: .badRequest, "the 426 body")
        },
        ConformanceCase("1 transport: an upgrade without a valid Sec-WebSocket-Key is answered 400") { context in
            let request = handshakeRequest(context).replacingOccurrences(
                of: "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n",
                with: ""
            )
            let response = try await context.http(request)
            try expectEqual(response.status, 400, "the status of an upgrade without Sec-WebSocket-Key")
            try expectJSONError(response, code: .badRequest, "the 400 body")
        },
        ConformanceCase("1 transport: a request line and headers over the 16 KiB request head limit are answered 431") {
            context in
            // 64 KiB of headers: over the default limit and any limit a server is likely to set.
            let padding = (0..<64).map { "X-Padding-\($0): \(String(repeating: "p", count: 1000))\r\n" }.joined()
            var head = handshakeRequest(context)
            head.removeLast()  // the blank line's CRLF (one Character)
            let response = try await context.http(head + padding + "\r\n")
            try expectEqual(response.status, 431, "the status of a 64 KiB request head")
            try expectJSONError(response, code: .tooLarge, "the 431 body")
        },
    ]

    /// The request line and headers of a valid handshake on the WebSocket path, no extensions.
    private static func handshakeRequest(_ context: CaseContext) -> String {
        RawHTTP.handshake(
            host: context.address.host,
            port: context.address.port,
            path: context.address.path,
            extensions: nil
        )
    }

    /// Expects `response`'s body to be a JSON `error` with `code`.
    private static func expectJSONError(_ response: RawHTTP.Response, code: ErrorCode, _ what: String) throws {
        let body: JSONValue
        do { body = try JSONParser.parse(response.body) } catch {
            throw ConformanceFailure("\(what) is not JSON (\(error)): \(describe(response.body))")
        }
        try expectError(body, code: code, what)
    }

    /// A handshake on the WebSocket path, offering `extensions`; expects 101.
    private static func handshake(_ context: CaseContext, extensions: String?) async throws -> RawHTTP.Response {
        let address = context.address
        let request = RawHTTP.handshake(
            host: address.host,
            port: address.port,
            path: address.path,
            extensions: extensions
        )
        let response = try await context.http(request)
        try expectEqual(response.status, 101, "the status of a WebSocket handshake")
        return response
    }

    /// hello, then a write, a read and a subscription update of a record big enough that both
    /// sides compress it when permessage-deflate is on.
    private static func normalExchange(_ context: CaseContext, compression: Bool) async throws {
        try await context.connect(compression: compression) { peer in
            _ = try await peer.hello()
            let key = context.key("exchange")
            let data = #"{"text":"\#(String(repeating: "all work and no play ", count: 40))"}"#
            let subscribed = try await peer.subscribe(#"{"type":"subscribe","keys":[\#(quoted(key))]}"#)
            let ack = try await peer.put(key, base: 0, data: data)
            try expectEqual(ack.version, 1, "the version of a new record")
            let snapshot = try expectType(try await peer.get(key), "snapshot", "get \(key)")
            try expectEqual(snapshot["data"], .literal(data), "the data read back")
            let update = try Update(try await peer.nextEvent(), sub: subscribed.reply["sub"], "the update of \(key)")
            try expectEqual(update.data, .literal(data), "the data in the update")
        }
    }
}
