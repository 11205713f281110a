import NIOCore
import NIOWebSocket
import Testing
import VersoClient
import VersoCore
import VersoServer
import VersoTesting
import VersoWire
import WSCore

@Suite("Bad input: a clear error, nothing changed, the connection still usable")
struct BadInputTests {
    static let badRequests: [(String, String)] = [
        ("malformed JSON", #"{"type":"put","#),
        ("a JSON value that is not an object", #"[1,2,3]"#),
        ("an unknown type", #"{"type":"frobnicate","rid":"x"}"#),
        ("a missing base", #"{"type":"put","rid":"x","key":"b/a","data":{}}"#),
        ("a base that is not a non-negative integer", #"{"type":"put","rid":"x","key":"b/a","base":-1,"data":{}}"#),
        ("data that is not an object", #"{"type":"put","rid":"x","key":"b/a","base":0,"data":5}"#),
        ("a missing patch", #"{"type":"patch","rid":"x","key":"b/a","base":0}"#),
        ("an invalid key", #"{"type":"put","rid":"x","key":"","base":0,"data":{}}"#),
        (
            "a txn with a bad op",
            #"{"type":"txn","rid":"x","ops":[{"op":"put","key":"b/a","base":0,"data":{}},{"op":"put","key":"b/b","data":{}}]}"#
        ),
    ]

    @Test(
        "each bad request gets bad_request with a message and its rid, changes nothing, and the connection goes on",
        arguments: compressionModes
    )
    func badRequests(compression: Bool) async throws {
        try await TestServer.with { server in
            try await TestClient.with(url: server.url, compression: compression) { client in
                for (what, text) in Self.badRequests {
                    let reply = try await client.request(text)
                    #expect(reply.type == "error", "\(what)")
                    #expect(reply["code"]?.str == "bad_request", "\(what)")
                    #expect((reply["message"]?.str?.count ?? 0) > 5, "\(what)")
                    if text.contains(#""rid":"x""#) {
                        #expect(reply["rid"]?.str == "x", "\(what): the rid comes back when it could be read")
                    }
                }
                try await client.send(binary: Array(#"{"type":"hello"}"#.utf8))
                let binary = try await client.next()
                #expect(binary["code"]?.str == "bad_request")
                #expect(try await client.request(#"{"type":"hello"}"#)["seq"]?.int == 0, "nothing changed")
                #expect(try await put(client, "b/a", base: 0) == 1, "the connection still works")
            }
        }
    }

    @Test("a plain HTTP request to the WebSocket path gets 400 with a JSON error")
    func plainHTTP() async throws {
        try await TestServer.with { server in
            let response = try await RawHTTP.exchange(
                port: server.port,
                request: "GET /v1/ws HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
            )
            #expect(response.status == 400)
            let body = try JSONParser.parse(response.body)
            #expect(body.type == "error")
            #expect(body["code"]?.str == "bad_request")
            let health = try await RawHTTP.exchange(
                port: server.port,
                request: "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
            )
            #expect(health.status == 200)
        }
    }

    @Test("permessage-deflate is negotiated whenever the client offers it, and not otherwise")
    func deflateNegotiation() async throws {
        try await TestServer.with { server in
            let offered = try await RawHTTP.exchange(
                port: server.port,
                request: RawHTTP.handshake(port: server.port, extensions: "permessage-deflate; client_max_window_bits")
            )
            #expect(offered.status == 101)
            #expect(offered.headers["sec-websocket-extensions"]?.hasPrefix("permessage-deflate") == true)
            let plain = try await RawHTTP.exchange(
                port: server.port,
                request: RawHTTP.handshake(port: server.port, extensions: nil)
            )
            #expect(plain.status == 101)
            #expect(plain.headers["sec-websocket-extensions"] == nil)
        }
    }

    @Test(
        "permessage-deflate: no context takeover either way, the client's window honoured, offers it cannot meet declined"
    )
    func deflateParameters() async throws {
        try await TestServer.with { server in
            func accepted(_ offer: String) async throws -> String? {
                let response = try await RawHTTP.exchange(
                    port: server.port,
                    request: RawHTTP.handshake(port: server.port, extensions: offer)
                )
                #expect(response.status == 101, "offer: \(offer)")
                return response.headers["sec-websocket-extensions"]
            }
            let plain = try await accepted("permessage-deflate")
            #expect(plain == "permessage-deflate; server_no_context_takeover; client_no_context_takeover")
            let smallWindow = try await accepted(
                "permessage-deflate; server_max_window_bits=10; client_max_window_bits"
            )
            #expect(smallWindow?.contains("server_max_window_bits=10") == true)
            #expect(smallWindow?.contains("client_no_context_takeover") == true)
            // zlib cannot compress with a 256-byte window: that offer is declined, the next taken.
            #expect(try await accepted("permessage-deflate; server_max_window_bits=8") == nil)
            #expect(try await accepted("permessage-deflate; server_max_window_bits=16") == nil)
            #expect(try await accepted("permessage-deflate; frobnicate") == nil)
        }
    }

    /// Each compressed subscriber's update is its own head (with its subscription id) spliced
    /// before the update's tail, compressed once for all of them.
    @Test("with permessage-deflate, large records round-trip intact in replies and in updates, to every subscriber")
    func deflateLargeMessages() async throws {
        try await TestServer.with { server in
            try await TestClient.with(url: server.url, compression: true) { watcher in
                try await TestClient.with(url: server.url, compression: true) { other in
                    try await TestClient.with(url: server.url, compression: true) { writer in
                        var subs: [Int64] = []
                        for client in [watcher, other, watcher] {
                            let subscribed = try await client.request(
                                #"{"type":"subscribe","rid":"s","keys":["big/one"]}"#
                            )
                            #expect(subscribed.type == "subscribed", "\(subscribed)")
                            subs.append(subscribed["sub"]?.int ?? -1)
                        }
                        for round in 1...3 {
                            let text = (0..<2000).map { "w\($0 % 97)-\(round)" }.joined(separator: " ")
                            let ack = try await writer.request(
                                #"{"type":"put","rid":"p","key":"big/one","base":\#(round - 1),"data":{"text":"\#(text)"}}"#
                            )
                            #expect(ack.type == "ack", "\(ack)")
                            let got = try await writer.request(#"{"type":"get","rid":"g","key":"big/one"}"#)
                            #expect(got["data"]?["text"]?.str == text)
                            // The watcher holds two subscriptions, the other client one.
                            var seen: [Int64] = []
                            for client in [watcher, watcher, other] {
                                var update = try await client.next()
                                while update.type != "update" { update = try await client.next() }
                                #expect(update["version"]?.int == Int64(round))
                                #expect(update["data"]?["text"]?.str == text)
                                seen.append(update["sub"]?.int ?? -1)
                            }
                            #expect(seen.sorted() == subs.sorted(), "each subscription's own id")
                        }
                    }
                }
            }
        }
    }

    @Test(
        "a message over the size limit closes with 1009, counted after decompression and across fragments",
        arguments: compressionModes
    )
    func oversized(compression: Bool) async throws {
        try await TestServer.with(configure: { $0.maxMessageBytes = 4096 }) { server in
            let big =
                #"{"type":"put","key":"big","base":0,"data":{"x":""# + String(repeating: "a", count: 5000) + #""}}"#
            try await TestClient.with(url: server.url, compression: compression) { client in
                // Just under the limit is fine.
                let fits =
                    #"{"type":"put","key":"fits","base":0,"data":{"x":""# + String(repeating: "a", count: 3000)
                    + #""}}"#
                #expect(try await client.request(fits).type == "ack")
                try await client.send(big)
                let close = try await client.waitForClose()
                #expect(close?.closeCode == .messageTooLarge)
            }
            try await TestClient.with(url: server.url, compression: compression) { client in
                let half = ByteBuffer(string: String(repeating: " ", count: 3000))
                try await client.send(
                    frame: WebSocketFrame(fin: false, opcode: .text, data: ByteBuffer(string: "{\"type\":\"hello\""))
                )
                try await client.send(frame: WebSocketFrame(fin: false, opcode: .continuation, data: half))
                try await client.send(frame: WebSocketFrame(fin: true, opcode: .continuation, data: half))
                let close = try await client.waitForClose()
                #expect(close?.closeCode == .messageTooLarge)
            }
            try await TestClient.with(url: server.url) { client in
                let reply = try await client.request(#"{"type":"get","key":"big"}"#)
                #expect(reply["code"]?.str == "not_found", "nothing changed")
            }
        }
    }

    @Test("invalid UTF-8 in a text frame closes with 1007")
    func invalidUTF8() async throws {
        try await TestServer.with { server in
            try await TestClient.with(url: server.url, compression: false) { client in
                try await client.send(
                    frame: WebSocketFrame(fin: true, opcode: .text, data: ByteBuffer(bytes: [0x7B, 0xC3, 0x28, 0x7D]))
                )
                let close = try await client.waitForClose()
                #expect(close?.closeCode == .dataInconsistentWithMessage)
            }
        }
    }

    /// Requests are parsed straight from their bytes, with no `String` made first: this one is
    /// well-formed JSON around a string holding a cut UTF-8 sequence, and must still close with
    /// 1007 rather than be answered as a bad request.
    @Test("invalid UTF-8 inside a JSON string of a one-frame message closes with 1007")
    func invalidUTF8InString() async throws {
        try await TestServer.with { server in
            try await TestClient.with(url: server.url, compression: false) { client in
                let bytes = Array(#"{"type":"put","key":"a/"#.utf8) + [0xC3] + Array(#"","base":0,"data":{}}"#.utf8)
                try await client.send(frame: WebSocketFrame(fin: true, opcode: .text, data: ByteBuffer(bytes: bytes)))
                let close = try await client.waitForClose()
                #expect(close?.closeCode == .dataInconsistentWithMessage)
            }
        }
    }

    @Test("a reserved opcode closes with 1002")
    func reservedOpcode() async throws {
        try await TestServer.with { server in
            try await TestClient.with(url: server.url, compression: false) { client in
                let opcode = try #require(WebSocketOpcode(encodedWebSocketOpcode: 0x3))
                try await client.send(frame: WebSocketFrame(fin: true, opcode: opcode, data: ByteBuffer(string: "x")))
                let close = try await client.waitForClose()
                #expect(close?.closeCode == .protocolError)
            }
        }
    }

    @Test("a misbehaving client does not stall the others")
    func othersUnaffected() async throws {
        try await TestServer.with { server in
            try await TestClient.with(url: server.url) { good in
                try await TestClient.with(url: server.url, compression: false) { bad in
                    for _ in 0..<20 { try await bad.send("{not json") }
                    #expect(try await put(good, "ok/a", base: 0) == 1)
                    try await bad.send(frame: WebSocketFrame(fin: true, opcode: .text, data: ByteBuffer(bytes: [0xFF])))
                    _ = try await bad.waitForClose()
                    #expect(try await put(good, "ok/a", base: 1) == 2)
                }
            }
        }
    }
}
