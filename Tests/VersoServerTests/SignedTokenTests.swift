import Foundation
import JWTKit
import NIOWebSocket
import Testing
import VersoClient
import VersoCore
import VersoServer
import VersoTesting
import VersoWire
import WSCore

/// Any claims, for signing the tokens a test needs (valid or not).
private struct TestClaims: JWTPayload {
    struct Rule: Codable {
        var prefix: String
        var allow: [String]
    }
    struct Verso: Codable {
        var rules: [Rule]
    }
    var sub: SubjectClaim?
    var exp: ExpirationClaim?
    var nbf: NotBeforeClaim?
    var verso: Verso?

    func verify(using _: some JWTAlgorithm) async throws {}

    /// ann: reads notes/, writes notes/ann/.
    static func ann(expires: Date? = Date().addingTimeInterval(3600), notBefore: Date? = nil) -> TestClaims {
        TestClaims(
            sub: SubjectClaim(value: "ann"),
            exp: expires.map { ExpirationClaim(value: $0) },
            nbf: notBefore.map { NotBeforeClaim(value: $0) },
            verso: Verso(rules: [
                Rule(prefix: "notes/", allow: ["read"]), Rule(prefix: "notes/ann/", allow: ["read", "write"]),
            ])
        )
    }
}

/// A folder with the key files of one test.
private struct KeyFolder {
    let directory = TestServer.makeDataDirectory()

    func write(_ name: String, _ text: String) throws -> String {
        let path = (directory as NSString).appendingPathComponent(name)
        try Data(text.utf8).write(to: URL(fileURLWithPath: path))
        return path
    }

    static let secret = "0123456789abcdef0123456789abcdef-a-test-secret"
}

/// Signs `claims` with the HS256 `secret`.
private func hs256(_ claims: TestClaims, secret: String = KeyFolder.secret) async throws -> String {
    let keys = JWTKeyCollection()
    await keys.add(hmac: HMACKey(from: secret), digestAlgorithm: .sha256)
    return try await keys.sign(claims)
}

/// Runs `body` with a server that verifies JWTs with the keys of `source`.
private func withJWTServer(_ source: JWTKeySource, _ body: (TestServer) async throws -> Void) async throws {
    try await TestServer.with(configure: { $0.authentication = .jwt(keys: source) }) { server async throws in
        try await body(server)
    }
}

/// The status and JSON error of an upgrade that carries `token`.
private func upgrade(port: Int, token: String) async throws -> (status: Int, error: JSONValue?) {
    var request = RawHTTP.handshake(port: port, extensions: nil)
    request.removeLast()
    let response = try await RawHTTP.exchange(port: port, request: request + "Authorization: Bearer \(token)\r\n\r\n")
    return (response.status, try? JSONParser.parse(response.body))
}

@Suite("Signed tokens: --auth jwt verifies JSON Web Tokens and honours their claims (Protocol.md 2.1)")
struct SignedTokenTests {
    @Test("an HS256 token acts as its sub within its verso rules, given in the upgrade or in hello")
    func hs256Rules() async throws {
        let folder = KeyFolder()
        defer { try? FileManager.default.removeItem(atPath: folder.directory) }
        let secretFile = try folder.write("secret", KeyFolder.secret + "\n")
        try await withJWTServer(.secretFile(secretFile)) { server async throws in
            let token = try await hs256(.ann())
            let own = uniqueKey("notes/ann/j")
            try await TestClient.with(url: server.url, token: token) { ann async throws in
                #expect(try await ann.request(#"{"type":"hello"}"#)["user"]?.str == "ann")
                #expect(try await put(ann, own, base: 0) == 1)
                let refused = try await ann.request(#"{"type":"put","key":"notes/bob/x","base":0,"data":{}}"#)
                #expect(
                    refused["code"]?.str == "forbidden" && refused["key"]?.str == "notes/bob/x",
                    "\(refused.encodedString)"
                )
                #expect(try await ann.request(#"{"type":"get","key":"secret/x"}"#)["code"]?.str == "forbidden")
            }
            try await TestClient.with(url: server.url) { client async throws in
                #expect(try await client.request(#"{"type":"get","key":"\#(own)"}"#)["code"]?.str == "unauthorized")
                #expect(try await client.request(#"{"type":"hello","token":"\#(token)"}"#)["user"]?.str == "ann")
                #expect(try await client.request(#"{"type":"get","key":"\#(own)"}"#)["version"]?.int == 1)
            }
        }
    }

    @Test(
        "a token that is expired, not yet valid, badly signed, without sub or without verso rules is refused with 401 saying why"
    )
    func refusedTokens() async throws {
        let folder = KeyFolder()
        defer { try? FileManager.default.removeItem(atPath: folder.directory) }
        let secretFile = try folder.write("secret", KeyFolder.secret)
        try await withJWTServer(.secretFile(secretFile)) { server async throws in
            let cases: [(String, String, String)] = [
                ("expired", try await hs256(.ann(expires: Date().addingTimeInterval(-60))), "expired"),
                ("not yet valid", try await hs256(.ann(notBefore: Date().addingTimeInterval(600))), "not valid yet"),
                ("another key", try await hs256(.ann(), secret: String(repeating: "x", count: 40)), "signature"),
                (
                    "no verso claim",
                    try await hs256(
                        TestClaims(sub: SubjectClaim(value: "ann"), exp: .init(value: Date().addingTimeInterval(60)))
                    ), "verso"
                ),
                (
                    "a bad right",
                    try await hs256(
                        TestClaims(
                            sub: SubjectClaim(value: "ann"),
                            verso: .init(rules: [.init(prefix: "", allow: ["admin"])])
                        )
                    ), "admin"
                ),
                ("not a JWT", "abc.def", "JSON Web Token"),
            ]
            for (name, token, reason) in cases {
                let (status, error) = try await upgrade(port: server.port, token: token)
                #expect(status == 401, "\(name)")
                #expect(error?["code"]?.str == "unauthorized", "\(name)")
                #expect(
                    error?["message"]?.str?.contains(reason) == true,
                    "\(name): \(error?.encodedString ?? "no body")"
                )
                #expect(error?.encodedString.contains(token) == false, "\(name): the token is echoed")
            }
            // The same refusal in hello changes nothing about the connection.
            try await TestClient.with(url: server.url) { client async throws in
                let expired = try await hs256(.ann(expires: Date().addingTimeInterval(-60)))
                let reply = try await client.request(#"{"type":"hello","token":"\#(expired)"}"#)
                #expect(
                    reply["code"]?.str == "unauthorized" && reply["message"]?.str?.contains("expired") == true,
                    "\(reply.encodedString)"
                )
                #expect(try await client.request(#"{"type":"get","key":"notes/x"}"#)["code"]?.str == "unauthorized")
            }
        }
    }

    @Test("a token that expires while connected gets an unauthorized error, then the close code 4401")
    func expiresWhileConnected() async throws {
        let folder = KeyFolder()
        defer { try? FileManager.default.removeItem(atPath: folder.directory) }
        let secretFile = try folder.write("secret", KeyFolder.secret)
        try await withJWTServer(.secretFile(secretFile)) { server async throws in
            // JWT times are whole seconds: this one ends 5 to 6 s from now, time enough on a busy
            // machine to connect and be served first.
            let token = try await hs256(.ann(expires: Date().addingTimeInterval(6)))
            try await TestClient.with(url: server.url, token: token) { ann async throws in
                #expect(try await ann.request(#"{"type":"get","key":"notes/e"}"#)["code"]?.str == "not_found")
                let notice = try await ann.next(timeout: .seconds(15))
                #expect(
                    notice["code"]?.str == "unauthorized" && notice["message"]?.str?.contains("expired") == true,
                    "\(notice.encodedString)"
                )
                let close = try await ann.waitForClose(timeout: .seconds(10))
                #expect(close?.closeCode == .unknown(4401), "\(String(describing: close))")
            }
        }
    }

    @Test("a fresh token in hello before the old one expires keeps the connection open")
    func refreshInHello() async throws {
        let folder = KeyFolder()
        defer { try? FileManager.default.removeItem(atPath: folder.directory) }
        let secretFile = try folder.write("secret", KeyFolder.secret)
        try await withJWTServer(.secretFile(secretFile)) { server async throws in
            // Ends 5 to 6 s from now (JWT times are whole seconds): time to connect and refresh first.
            let short = try await hs256(.ann(expires: Date().addingTimeInterval(6)))
            let fresh = try await hs256(.ann())
            try await TestClient.with(url: server.url, token: short) { ann async throws in
                #expect(try await ann.request(#"{"type":"hello","token":"\#(fresh)"}"#)["user"]?.str == "ann")
                try await Task.sleep(for: .seconds(7))
                #expect(try await ann.request(#"{"type":"get","key":"notes/f"}"#)["code"]?.str == "not_found")
            }
        }
    }

    @Test("ES256 and EdDSA tokens verify against a PEM public key file, and EdDSA against a JWKS file by kid")
    func publicKeys() async throws {
        let folder = KeyFolder()
        defer { try? FileManager.default.removeItem(atPath: folder.directory) }
        let es256 = ES256PrivateKey()
        let esKeys = JWTKeyCollection()
        await esKeys.add(ecdsa: es256)
        let esFile = try folder.write("es256.pem", es256.publicKey.pemRepresentation)
        try await withJWTServer(.publicKeyFile(esFile)) { server async throws in
            let token = try await esKeys.sign(TestClaims.ann())
            try await TestClient.with(url: server.url, token: token) { ann async throws in
                #expect(try await ann.request(#"{"type":"hello"}"#)["user"]?.str == "ann")
            }
            #expect(try await upgrade(port: server.port, token: try await hs256(.ann())).status == 401)
        }
        let ed = try EdDSA.PrivateKey(curve: .ed25519)
        let edKeys = JWTKeyCollection()
        await edKeys.add(eddsa: ed, kid: "k2")
        let edFile = try folder.write("ed.pem", ed.publicKey.pemRepresentation)
        let edToken = try await edKeys.sign(TestClaims.ann(), kid: "k2")
        try await withJWTServer(.publicKeyFile(edFile)) { server async throws in
            try await TestClient.with(url: server.url, token: edToken) { ann async throws in
                #expect(try await ann.request(#"{"type":"hello"}"#)["user"]?.str == "ann")
            }
        }
        let x = ed.publicKey.rawRepresentation.base64EncodedString()
            .replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_").replacingOccurrences(
                of: "=",
                with: ""
            )
        let jwks = try folder.write(
            "keys.json",
            #"{"keys":[{"kty":"OKP","crv":"Ed25519","alg":"EdDSA","kid":"k2","x":"\#(x)"}]}"#
        )
        try await withJWTServer(.jwksFile(jwks)) { server async throws in
            try await TestClient.with(url: server.url, token: edToken) { ann async throws in
                #expect(try await ann.request(#"{"type":"hello"}"#)["user"]?.str == "ann")
            }
            let stranger = JWTKeyCollection()
            await stranger.add(eddsa: try EdDSA.PrivateKey(curve: .ed25519), kid: "k2")
            let forged = try await stranger.sign(TestClaims.ann(), kid: "k2")
            #expect(try await upgrade(port: server.port, token: forged).status == 401)
        }
    }

    @Test("reloading the key file (as SIGHUP does) rotates keys for new tokens; a bad file changes nothing")
    func reloadKeys() async throws {
        let folder = KeyFolder()
        defer { try? FileManager.default.removeItem(atPath: folder.directory) }
        let secretFile = try folder.write("secret", KeyFolder.secret)
        try await withJWTServer(.secretFile(secretFile)) { server async throws in
            let newSecret = String(repeating: "n", count: 40)
            _ = try folder.write("secret", "short")
            #expect(await server.server.reloadTokens() != nil)
            #expect(try await upgrade(port: server.port, token: try await hs256(.ann())).status == 101)
            _ = try folder.write("secret", newSecret)
            #expect(await server.server.reloadTokens() == nil)
            #expect(try await upgrade(port: server.port, token: try await hs256(.ann())).status == 401)
            #expect(
                try await upgrade(port: server.port, token: try await hs256(.ann(), secret: newSecret)).status == 101
            )
        }
    }

    @Test("verso-server token mints a token the server accepts, with the rules given")
    func mint() async throws {
        let folder = KeyFolder()
        defer { try? FileManager.default.removeItem(atPath: folder.directory) }
        let secretFile = try folder.write("secret", KeyFolder.secret)
        let rules = AccessRules([AccessRule(prefix: "notes/", rights: [.read, .write])])
        let token = try await SignedTokens.mint(
            secretFile: secretFile,
            identity: Identity(user: "cli", rules: rules),
            lifetime: .seconds(60)
        )
        try await withJWTServer(.secretFile(secretFile)) { server async throws in
            try await TestClient.with(url: server.url, token: token) { client async throws in
                #expect(try await client.request(#"{"type":"hello"}"#)["user"]?.str == "cli")
                #expect(try await put(client, uniqueKey("notes/m"), base: 0) == 1)
                #expect(try await client.request(#"{"type":"get","key":"other/x"}"#)["code"]?.str == "forbidden")
            }
        }
    }

    @Test("a secret shorter than 32 bytes, or a file with no usable key, stops the server with a message")
    func badKeyFiles() async throws {
        let folder = KeyFolder()
        defer { try? FileManager.default.removeItem(atPath: folder.directory) }
        let short = try folder.write("short", "too-short\n")
        let notKey = try folder.write("notkey.pem", "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n")
        let notJWKS = try folder.write("jwks.json", "{}")
        for (source, words) in [
            (JWTKeySource.secretFile(short), "at least 32"), (.publicKeyFile(notKey), "no public key"),
            (.jwksFile(notJWKS), "JSON Web Key Set"),
        ] {
            do {
                try await withJWTServer(source) { _ in }
                Issue.record("\(source) was accepted")
            } catch let error as ConfigurationError {
                #expect(error.description.contains(words), "\(error)")
            }
        }
    }
}
