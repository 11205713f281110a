import Foundation
import NIOWebSocket
import Testing
import VersoClient
import VersoCore
import VersoServer
import VersoTesting
import VersoWire
import WSCore

/// A tokens file in a fresh folder: ann reads notes/ and writes notes/ann/; the inbox is
/// write-only for her; root may do everything, force included.
private struct TokensFile {
    static let ann = "ann-token-0123456789"
    static let root = "root-token-0123456789"
    static let json = """
        {"tokens": [
          {"token": "\(ann)", "user": "ann", "rules": [
            {"prefix": "notes/", "allow": ["read"]},
            {"prefix": "notes/ann/", "allow": ["read", "write"]},
            {"prefix": "inbox/", "allow": ["write"]}
          ]},
          {"token": "\(root)", "user": "root", "rules": [{"prefix": "", "allow": ["read", "write", "force"]}]}
        ]}
        """

    let directory = TestServer.makeDataDirectory()
    var path: String { (directory as NSString).appendingPathComponent("tokens.json") }

    func write(_ text: String = TokensFile.json) throws {
        try Data(text.utf8).write(to: URL(fileURLWithPath: path))
    }
}

/// Runs `body` with a server that authenticates with a fresh tokens file.
private func withAuthServer(
    allowForce: Bool = false,
    _ body: (TestServer, TokensFile) async throws -> Void
) async throws {
    let file = TokensFile()
    defer { try? FileManager.default.removeItem(atPath: file.directory) }
    try file.write()
    try await TestServer.with(configure: {
        $0.authentication = .tokens(file: file.path)
        $0.allowForce = allowForce
    }) { server in
        try await body(server, file)
    }
}

@Suite("Access: tokens and per-prefix rules decide who reads and writes what (Protocol.md 2.1)")
struct AccessTests {
    @Test("idempotency keys are per user: ann's key never answers root's write")
    func idempotencyKeysPerUser() async throws {
        try await withAuthServer { server, _ in
            let key = uniqueKey("notes/ann/idem")
            let put = #"{"type":"put","key":"\#(key)","base":0,"data":{},"idempotency_key":"shared-key"}"#
            try await TestClient.with(url: server.url, token: TokensFile.ann) { ann async throws in
                #expect(try await ann.request(put).type == "ack")
            }
            try await TestClient.with(url: server.url, token: TokensFile.root) { root in
                // Not a replay of ann's write: decided on its own, and stale.
                let reply = try await root.request(put)
                #expect(reply.type == "conflict")
                #expect(reply["replayed"] == nil)
            }
        }
    }

    @Test("without a token every request but hello is unauthorized and changes nothing")
    func noToken() async throws {
        try await withAuthServer { server, _ in
            let key = uniqueKey("notes/ann/x")
            try await TestClient.with(url: server.url) { client in
                let welcome = try await client.request(#"{"type":"hello"}"#)
                #expect(welcome.type == "welcome" && welcome["user"] == nil)
                for request in [
                    #"{"type":"get","key":"\#(key)"}"#, #"{"type":"put","key":"\#(key)","base":0,"data":{}}"#,
                    #"{"type":"list","prefix":"notes/"}"#, #"{"type":"subscribe","prefix":"notes/"}"#,
                    #"{"type":"txn","ops":[{"op":"put","key":"\#(key)","base":0,"data":{}}]}"#,
                ] {
                    let reply = try await client.request(request)
                    #expect(reply["code"]?.str == "unauthorized", "\(request): \(reply.encodedString)")
                }
            }
            try await TestClient.with(url: server.url, token: TokensFile.root) { root async throws in
                #expect(try await root.request(#"{"type":"get","key":"\#(key)"}"#)["code"]?.str == "not_found")
            }
        }
    }

    @Test("a token in the upgrade's Authorization header or in hello acts as its user, within its rules")
    func tokenWaysAndRules() async throws {
        try await withAuthServer { server, _ in
            let own = uniqueKey("notes/ann/own")
            let others = uniqueKey("notes/bob/theirs")
            let secret = uniqueKey("secret/x")
            try await TestClient.with(url: server.url, token: TokensFile.root) { root in
                try await put(root, others, base: 0, #"{"by":"bob"}"#)
                try await put(root, secret, base: 0)
            }
            // The header.
            try await TestClient.with(url: server.url, token: TokensFile.ann) { ann in
                #expect(try await ann.request(#"{"type":"hello"}"#)["user"]?.str == "ann")
                #expect(try await put(ann, own, base: 0) == 1)
                #expect(try await ann.request(#"{"type":"get","key":"\#(others)"}"#)["data"]?["by"]?.str == "bob")
                let write = try await ann.request(#"{"type":"patch","key":"\#(others)","base":1,"patch":{"by":"ann"}}"#)
                #expect(write["code"]?.str == "forbidden" && write["key"]?.str == others, "\(write.encodedString)")
                let read = try await ann.request(#"{"type":"get","key":"\#(secret)"}"#)
                #expect(read["code"]?.str == "forbidden" && read["key"]?.str == secret, "\(read.encodedString)")
            }
            // hello.
            try await TestClient.with(url: server.url) { client in
                let bad = try await client.request(#"{"type":"hello","token":"not-a-token"}"#)
                #expect(bad["code"]?.str == "unauthorized")
                #expect(
                    try await client.request(#"{"type":"hello","token":"\#(TokensFile.ann)"}"#)["user"]?.str == "ann"
                )
                #expect(try await client.request(#"{"type":"get","key":"\#(own)"}"#)["version"]?.int == 1)
            }
            // Nothing the refused write asked for was applied.
            try await TestClient.with(url: server.url, token: TokensFile.root) { root async throws in
                #expect(try await root.request(#"{"type":"get","key":"\#(others)"}"#)["data"]?["by"]?.str == "bob")
            }
        }
    }

    @Test("an upgrade with a token that is not valid is answered 401 with a JSON error")
    func badTokenInUpgrade() async throws {
        try await withAuthServer { server, _ in
            var request = RawHTTP.handshake(port: server.port, extensions: nil)
            request.removeLast()
            let response = try await RawHTTP.exchange(
                port: server.port,
                request: request + "Authorization: Bearer wrong\r\n\r\n"
            )
            #expect(response.status == 401)
            #expect(response.headers["www-authenticate"] == "Bearer")
            #expect(try JSONParser.parse(response.body)["code"]?.str == "unauthorized")
        }
    }

    @Test(
        "a browser's token comes as the subprotocol verso.bearer.TOKEN; the server selects verso.v1 and never echoes the token"
    )
    func tokenAsSubprotocol() async throws {
        try await withAuthServer { server, _ in
            var request = RawHTTP.handshake(port: server.port, extensions: nil)
            request.removeLast()
            try await RawSocket.with(port: server.port) { socket in
                try await socket.write(
                    request + "Sec-WebSocket-Protocol: verso.v1, verso.bearer.\(TokensFile.ann)\r\n\r\n"
                )
                #expect(try await socket.wait { $0.text.contains("\r\n\r\n") || $0.isClosed })
                #expect(socket.text.hasPrefix("HTTP/1.1 101"), "\(socket.text)")
                #expect(socket.text.lowercased().contains("sec-websocket-protocol: verso.v1\r\n"), "\(socket.text)")
                #expect(!socket.text.contains(TokensFile.ann))
            }
            var wrong = RawHTTP.handshake(port: server.port, extensions: nil)
            wrong.removeLast()
            let refused = try await RawHTTP.exchange(
                port: server.port,
                request: wrong + "Sec-WebSocket-Protocol: verso.v1, verso.bearer.wrong\r\n\r\n"
            )
            #expect(refused.status == 401)
        }
    }

    @Test("a txn with one op outside the rules is refused whole; a check needs read; force needs the force right")
    func txnAndForce() async throws {
        try await withAuthServer(allowForce: true) { server, _ in
            let own = uniqueKey("notes/ann/t")
            let others = uniqueKey("notes/bob/t")
            try await TestClient.with(url: server.url, token: TokensFile.ann) { ann in
                let txn = try await ann.request(
                    #"{"type":"txn","ops":[{"op":"put","key":"\#(own)","base":0,"data":{}},{"op":"put","key":"\#(others)","base":0,"data":{}}]}"#
                )
                #expect(txn["code"]?.str == "forbidden" && txn["key"]?.str == others, "\(txn.encodedString)")
                #expect(try await ann.request(#"{"type":"get","key":"\#(own)"}"#)["code"]?.str == "not_found")
                let checked = try await ann.request(
                    #"{"type":"txn","ops":[{"op":"check","key":"\#(others)","base":0},{"op":"put","key":"\#(own)","base":0,"data":{}}]}"#
                )
                #expect(checked.type == "ack", "\(checked.encodedString)")
                let inboxCheck = try await ann.request(
                    #"{"type":"txn","ops":[{"op":"check","key":"inbox/a","base":0}]}"#
                )
                #expect(inboxCheck["code"]?.str == "forbidden")
                let forced = try await ann.request(#"{"type":"put","key":"\#(own)","force":true,"data":{}}"#)
                #expect(
                    forced["code"]?.str == "forbidden" && forced["message"]?.str?.contains("force") == true,
                    "\(forced.encodedString)"
                )
            }
            try await TestClient.with(url: server.url, token: TokensFile.root) { root async throws in
                #expect(try await root.request(#"{"type":"put","key":"\#(own)","force":true,"data":{}}"#).type == "ack")
            }
        }
    }

    @Test("subscribing needs read on each key, or one rule giving read on the whole prefix")
    func subscriptions() async throws {
        try await withAuthServer { server, _ in
            try await TestClient.with(url: server.url, token: TokensFile.ann) { ann in
                #expect(try await ann.request(#"{"type":"subscribe","prefix":"notes/"}"#).type == "subscribed")
                #expect(try await ann.request(#"{"type":"subscribe","prefix":"notes/ann/"}"#).type == "subscribed")
                let wide = try await ann.request(#"{"type":"subscribe","prefix":"note"}"#)
                #expect(wide["code"]?.str == "forbidden", "\(wide.encodedString)")
                let everything = try await ann.request(#"{"type":"subscribe","prefix":""}"#)
                #expect(everything["code"]?.str == "forbidden")
                let keys = try await ann.request(#"{"type":"subscribe","keys":["notes/a","inbox/a"]}"#)
                #expect(keys["code"]?.str == "forbidden" && keys["key"]?.str == "inbox/a", "\(keys.encodedString)")
            }
        }
    }

    @Test("list never shows a key the token may not read")
    func listHidesUnreadable() async throws {
        try await withAuthServer { server, _ in
            let run = uniqueKey("run")
            try await TestClient.with(url: server.url, token: TokensFile.root) { root in
                for key in ["notes/\(run)/a", "notesx/\(run)", "inbox/\(run)", "secret/\(run)"] {
                    try await put(root, key, base: 0)
                }
            }
            try await TestClient.with(url: server.url, token: TokensFile.ann) { ann in
                var seen: [String] = []
                var after: String?
                repeat {
                    let afterField = after.map { #","after":"\#($0)""# } ?? ""
                    let page = try await ann.request(#"{"type":"list","prefix":"","limit":2\#(afterField)}"#)
                    #expect(page.type == "records", "\(page.encodedString)")
                    if case .array(let records)? = page["records"] { seen += records.compactMap { $0["key"]?.str } }
                    after = page["next"]?.str
                } while after != nil
                #expect(seen.contains("notes/\(run)/a"))
                #expect(!seen.contains { $0.hasSuffix(run) && !$0.hasPrefix("notes/") }, "\(seen)")
            }
        }
    }

    @Test("a conflict on a key the writer may not read withholds the data, and the paths changed since its base")
    func conflictWithheld() async throws {
        try await withAuthServer { server, _ in
            let key = uniqueKey("inbox/c")
            _ = try await TestClient.with(url: server.url, token: TokensFile.root) { root in
                try await put(root, key, base: 0, #"{"private":true}"#)
                try await put(root, key, base: 1, #"{"private":true,"secret":1}"#)
            }
            try await TestClient.with(url: server.url, token: TokensFile.ann) { ann in
                for base in [0, 1] {
                    let conflict = try await ann.request(#"{"type":"put","key":"\#(key)","base":\#(base),"data":{}}"#)
                    #expect(conflict.type == "conflict" && conflict["version"]?.int == 2)
                    #expect(
                        conflict["data"] == .null && conflict["hidden"] == .bool(true)
                            && conflict["deleted"] == .bool(false) && conflict["changed"] == nil
                            && conflict["by"] == nil && conflict["at"]?.int != nil,
                        "\(conflict.encodedString)"
                    )
                    #expect(!conflict.encodedString.contains("private") && !conflict.encodedString.contains("secret"))
                }
            }
        }
    }

    @Test(
        "each change records its writer's user as by, in updates, conflicts and history; history needs read; presence needs presence or write and shows the user"
    )
    func authorsAndPresence() async throws {
        try await withAuthServer { server, _ in
            let key = uniqueKey("notes/ann/doc")
            try await TestClient.with(url: server.url, token: TokensFile.ann) { ann in
                let subscribed = try await ann.request(#"{"type":"subscribe","keys":["\#(key)"]}"#)
                #expect(subscribed.type == "subscribed")
                try await TestClient.with(url: server.url, token: TokensFile.root) { root in
                    try await put(root, key, base: 0, #"{"v":1}"#)
                }
                let update = try await ann.next()
                #expect(update.type == "update" && update["by"]?.str == "root", "\(update.encodedString)")
                try await ann.send(#"{"type":"put","rid":1,"key":"\#(key)","base":1,"data":{"v":2}}"#)
                #expect(try await ann.next().type == "ack")
                #expect(try await ann.next()["by"]?.str == "ann")
                let conflict = try await ann.request(#"{"type":"put","key":"\#(key)","base":1,"data":{}}"#)
                #expect(conflict.type == "conflict" && conflict["by"]?.str == "ann", "\(conflict.encodedString)")
                let history = try await ann.request(#"{"type":"history","key":"\#(key)"}"#)
                guard case .array(let versions)? = history["versions"] else {
                    Issue.record("no versions: \(history.encodedString)")
                    return
                }
                #expect(versions.map { $0["by"]?.str } == ["ann", "root"])
                let secret = try await ann.request(#"{"type":"history","key":"secret/x"}"#)
                #expect(secret["code"]?.str == "forbidden" && secret["key"]?.str == "secret/x")

                // Presence: ann may only read notes/bob/, and writes notes/ann/.
                let refused = try await ann.request(#"{"type":"presence","key":"notes/bob/x","state":{}}"#)
                #expect(refused["code"]?.str == "forbidden" && refused["key"]?.str == "notes/bob/x")
                try await TestClient.with(url: server.url, token: TokensFile.root) { root in
                    _ = try await root.request(#"{"type":"subscribe","keys":["\#(key)"]}"#)
                    _ = try await root.next()  // the snapshot
                    let echo = try await ann.request(#"{"type":"presence","key":"\#(key)","state":{"f":"v"}}"#)
                    #expect(echo.type == "presence" && echo["user"]?.str == "ann", "\(echo.encodedString)")
                    let seen = try await root.next()
                    #expect(seen.type == "presence" && seen["user"]?.str == "ann", "\(seen.encodedString)")
                }
            }
        }
    }

    @Test("reloading the tokens file takes a removed token away at once; a file with an error changes nothing")
    func reload() async throws {
        try await withAuthServer { server, file in
            try await TestClient.with(url: server.url, token: TokensFile.ann) { ann in
                #expect(try await ann.request(#"{"type":"get","key":"notes/r"}"#)["code"]?.str == "not_found")
                try file.write("{\"tokens\": [")
                #expect(await server.server.reloadTokens() != nil)
                #expect(try await ann.request(#"{"type":"get","key":"notes/r"}"#)["code"]?.str == "not_found")
                try file.write(TokensFile.json.replacingOccurrences(of: TokensFile.ann, with: "ann-new-token"))
                #expect(await server.server.reloadTokens() == nil)
                // The connection is told why, then closed with 4401.
                let notice = try await ann.next(timeout: .seconds(10))
                #expect(
                    notice["code"]?.str == "unauthorized" && notice["message"]?.str?.contains("taken out") == true,
                    "\(notice.encodedString)"
                )
                let close = try await ann.waitForClose(timeout: .seconds(10))
                #expect(close?.closeCode == .unknown(4401), "\(String(describing: close))")
            }
            try await TestClient.with(url: server.url, token: "ann-new-token") { ann async throws in
                #expect(try await ann.request(#"{"type":"hello"}"#)["user"]?.str == "ann")
            }
        }
    }

    @Test(
        "a reload that changes a token's rules ends the connections using it, subscriptions and all; a connection with an unchanged token goes on"
    )
    func reloadEndsChangedTokens() async throws {
        try await withAuthServer { server, file in
            let key = uniqueKey("notes/sub")
            try await TestClient.with(url: server.url, token: TokensFile.ann) { ann in
                try await TestClient.with(url: server.url, token: TokensFile.root) { root in
                    #expect(try await ann.request(#"{"type":"subscribe","prefix":"notes/"}"#).type == "subscribed")
                    #expect(try await root.request(#"{"type":"subscribe","prefix":"notes/"}"#).type == "subscribed")
                    // Ann may no longer read notes/: her subscription must not deliver it.
                    try file.write(
                        TokensFile.json.replacingOccurrences(of: #"{"prefix": "notes/", "allow": ["read"]},"#, with: "")
                    )
                    #expect(await server.server.reloadTokens() == nil)
                    let notice = try await ann.next(timeout: .seconds(10))
                    #expect(
                        notice["code"]?.str == "unauthorized" && notice["message"]?.str?.contains("rules") == true,
                        "\(notice.encodedString)"
                    )
                    #expect(try await ann.waitForClose(timeout: .seconds(10))?.closeCode == .unknown(4401))
                    // Root's token did not change: its connection and subscription go on.
                    #expect(try await put(root, key, base: 0) == 1)
                    let update = try await root.next(timeout: .seconds(10))
                    #expect(update.type == "update" && update["key"]?.str == key, "\(update.encodedString)")
                }
            }
        }
    }

    @Test("a token in hello may refresh the connection's identity but not change it")
    func helloKeepsIdentity() async throws {
        try await withAuthServer { server, _ in
            try await TestClient.with(url: server.url, token: TokensFile.ann) { ann in
                let other = try await ann.request(#"{"type":"hello","token":"\#(TokensFile.root)"}"#)
                #expect(
                    other["code"]?.str == "forbidden" && other["message"]?.str?.contains("another user") == true,
                    "\(other.encodedString)"
                )
                // Still ann, with her rules.
                #expect(try await ann.request(#"{"type":"hello"}"#)["user"]?.str == "ann")
                #expect(try await ann.request(#"{"type":"get","key":"secret/x"}"#)["code"]?.str == "forbidden")
                // The same token again is a refresh.
                #expect(try await ann.request(#"{"type":"hello","token":"\#(TokensFile.ann)"}"#)["user"]?.str == "ann")
            }
        }
    }

    @Test("SIGHUP makes a running verso-server read its tokens file again")
    func sighup() async throws {
        let file = TokensFile()
        defer { try? FileManager.default.removeItem(atPath: file.directory) }
        try file.write()
        let process = try await ServerProcess.start(
            dataDirectory: file.directory,
            arguments: ["--auth", "tokens", "--tokens-file", file.path]
        )
        try await TestClient.with(url: process.url, token: TokensFile.ann) { ann in
            #expect(try await ann.request(#"{"type":"hello"}"#)["user"]?.str == "ann")
            try file.write(TokensFile.json.replacingOccurrences(of: TokensFile.ann, with: "ann-new-token"))
            process.send(signal: SIGHUP)
            try await waitUntilAsync("the old token refused") {
                try await ann.request(#"{"type":"get","key":"notes/s"}"#)["code"]?.str == "unauthorized"
            }
        }
        process.send(signal: SIGTERM)
        #expect(await process.waitForExit() == 0)
    }
}

/// Polls an async `condition` until it holds, for at most 10 s.
private func waitUntilAsync(_ what: String, _ condition: () async throws -> Bool) async throws {
    let deadline = ContinuousClock.now + .seconds(10)
    while try await !condition() {
        guard ContinuousClock.now < deadline else { throw TestFailure("\(what) did not happen within 10 s") }
        try await Task.sleep(for: .milliseconds(20))
    }
}
