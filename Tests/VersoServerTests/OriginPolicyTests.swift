import Testing
@testable import VersoServer

/// The pure rules behind Protocol.md section 1's `403` and protected mode: origins, the
/// server's own origin, and which hosts are loopback.
@Suite("Origins and loopback: pure rules")
struct OriginPolicyTests {
    @Test(
        "origins compare case-insensitively in scheme and host, with default ports normalised",
        arguments: [
            ("HTTP://LocalHost", "http://localhost:80"),
            ("https://App.Example.com:443", "https://app.example.com"),
            ("http://127.0.0.1:7070", "http://127.0.0.1:7070"),
            ("http://[0:0:0:0:0:0:0:1]:7070", "http://[::1]:7070"),
            ("http://[::FFFF:127.0.0.1]", "http://[::ffff:127.0.0.1]:80"),
        ]
    )
    func sameOrigin(_ first: String, _ second: String) throws {
        #expect(try WebOrigin(parsing: first) == WebOrigin(parsing: second))
    }

    @Test(
        "different scheme, host or port is another origin",
        arguments: [
            ("http://localhost:7070", "https://localhost:7070"),
            ("http://localhost:7070", "http://127.0.0.1:7070"),
            ("http://localhost:7070", "http://localhost:7071"),
            ("http://localhost", "http://localhost:443"),
            ("https://example.com", "https://example.com.evil.example"),
        ]
    )
    func otherOrigin(_ first: String, _ second: String) throws {
        #expect(try WebOrigin(parsing: first) != WebOrigin(parsing: second))
    }

    @Test("an origin prints without its default port")
    func description() throws {
        #expect(try WebOrigin(parsing: "HTTPS://Example.COM:443").description == "https://example.com")
        #expect(try WebOrigin(parsing: "http://example.com:8443").description == "http://example.com:8443")
        #expect(try WebOrigin(parsing: "http://[0::1]:80").description == "http://[::1]")
    }

    @Test(
        "only scheme://host[:port] is an origin",
        arguments: [
            "localhost:8000", "//localhost", "http://", "http://a.example/", "http://a.example/app",
            "http://a.example?x=1",
            "http://a.example#top", "http://user:secret@a.example", "http://a.example:0", "http://a.example:65536",
            "http://a.example:80x", "http://a.example:", "http://::1", "http://[::1", "http://[not-v6]", "http://a b",
            "1http://a.example", "null", "*", "",
        ]
    )
    func notAnOrigin(_ text: String) {
        #expect(throws: OriginError.self) { try WebOrigin(parsing: text) }
    }

    @Test("--allow-origin takes origins; '*' only with --allow-any-origin")
    func allowingValues() throws {
        let policy = try OriginPolicy(
            allowing: ["http://localhost:8000", "HTTPS://App.Example.com:443"],
            allowAnyOrigin: false
        )
        #expect(
            policy.listed == [
                try WebOrigin(parsing: "http://localhost:8000"), try WebOrigin(parsing: "https://app.example.com"),
            ]
        )
        let star = #expect(throws: ConfigurationError.self) { try OriginPolicy(allowing: ["*"], allowAnyOrigin: false) }
        #expect(star?.description.contains("--allow-any-origin") == true)
        #expect(try OriginPolicy(allowing: ["*"], allowAnyOrigin: true).allowsAnyOrigin)
        let path = #expect(throws: ConfigurationError.self) {
            try OriginPolicy(allowing: ["http://ok.example", "https://a.example/app"], allowAnyOrigin: false)
        }
        #expect(
            path?.description.hasPrefix("--allow-origin https://a.example/app is not an origin: it has a path") == true
        )
    }

    /// (Origin, Host, verdict) with nothing listed.
    static let unlistedVerdicts: [(String?, String?, OriginPolicy.Verdict)] = [
        // Clients that are not browsers send no Origin.
        (nil, "127.0.0.1:7070", .noOrigin),
        (nil, nil, .noOrigin),
        // swift-websocket's client sends its URL's scheme and host, which no browser does.
        ("ws://127.0.0.1", "127.0.0.1:7070", .webSocketClient),
        ("WSS://verso.example.com", "verso.example.com", .webSocketClient),
        ("ws://::1", "[::1]:7070", .webSocketClient),
        // The page served at / connects back to the host it was loaded from, under each name.
        ("http://127.0.0.1:7070", "127.0.0.1:7070", .ownOrigin),
        ("http://localhost:7070", "localhost:7070", .ownOrigin),
        ("http://LOCALHOST:7070", "localhost:7070", .ownOrigin),
        ("http://[::1]:7070", "[::1]:7070", .ownOrigin),
        ("http://[::1]:7070", "[0:0::1]:7070", .ownOrigin),
        ("http://192.168.1.5:7070", "192.168.1.5:7070", .ownOrigin),
        ("http://localhost", "localhost", .ownOrigin),
        ("http://localhost:80", "localhost", .ownOrigin),
        // Each name matches only itself: a page from another name is another origin.
        ("http://localhost:7070", "127.0.0.1:7070", .refused),
        ("http://127.0.0.1:7070", "localhost:7070", .refused),
        ("http://127.0.0.1:7070", "[::1]:7070", .refused),
        ("http://127.0.0.1:7071", "127.0.0.1:7070", .refused),
        // The server serves no https: its own page is http.
        ("https://127.0.0.1:7070", "127.0.0.1:7070", .refused),
        // DNS rebinding: a page under a name the attacker pointed at this server.
        ("http://evil.example:7070", "evil.example:7070", .refused),
        ("http://verso.lan:7070", "verso.lan:7070", .refused),
        ("https://evil.example", "127.0.0.1:7070", .refused),
        ("null", "127.0.0.1:7070", .refused),
        ("", "127.0.0.1:7070", .refused),
        ("http://127.0.0.1:7070, https://evil.example", "127.0.0.1:7070", .refused),
        ("http://127.0.0.1:7070", nil, .refused),
    ]

    @Test(
        "an Origin is accepted only from the server's own origin (an IP address or localhost as Host)",
        arguments: unlistedVerdicts
    )
    func unlisted(_ origin: String?, _ host: String?, _ verdict: OriginPolicy.Verdict) {
        #expect(OriginPolicy().verdict(origin: origin, host: host) == verdict)
    }

    @Test("a listed origin is accepted, compared after normalising; others are still refused")
    func listed() throws {
        let policy = try OriginPolicy(
            allowing: ["http://localhost:8000", "https://app.example.com", "http://verso.lan:7070"],
            allowAnyOrigin: false
        )
        #expect(policy.verdict(origin: "http://localhost:8000", host: "127.0.0.1:7070") == .listed)
        #expect(policy.verdict(origin: "HTTPS://APP.example.com:443", host: "127.0.0.1:7070") == .listed)
        #expect(policy.verdict(origin: "http://verso.lan:7070", host: "verso.lan:7070") == .listed)
        #expect(policy.verdict(origin: "http://localhost:8001", host: "127.0.0.1:7070") == .refused)
        #expect(policy.verdict(origin: "http://app.example.com", host: "127.0.0.1:7070") == .refused)
        #expect(policy.verdict(origin: "https://evil.example", host: "127.0.0.1:7070") == .refused)
        #expect(policy.verdict(origin: "http://127.0.0.1:7070", host: "127.0.0.1:7070") == .ownOrigin)
        #expect(policy.verdict(origin: nil, host: "127.0.0.1:7070") == .noOrigin)
    }

    @Test("--allow-any-origin accepts every Origin, even one that is not an origin")
    func anyOrigin() {
        let policy = OriginPolicy(allowsAnyOrigin: true)
        for origin in ["https://evil.example", "null", "not an origin"] {
            #expect(policy.verdict(origin: origin, host: "127.0.0.1:7070") == .anyOrigin)
        }
        #expect(policy.verdict(origin: nil, host: "127.0.0.1:7070") == .noOrigin)
    }

    @Test("an Origin is shown as parsed, or as at most 100 printable characters")
    func displayable() {
        #expect(OriginPolicy.displayable("HTTPS://Evil.Example:443") == "https://evil.example")
        #expect(OriginPolicy.displayable("bad\u{1B}[31m\r\nvalue") == "bad[31mvalue")
        #expect(
            OriginPolicy.displayable(String(repeating: "x", count: 300)) == String(repeating: "x", count: 100) + "…"
        )
    }

    @Test(
        "loopback is 127.0.0.0/8, ::1 and localhost",
        arguments: [
            ("127.0.0.1", true), ("127.0.0.2", true), ("127.255.255.254", true), ("localhost", true),
            ("LocalHost", true),
            ("::1", true), ("[::1]", true), ("0:0:0:0:0:0:0:1", true), ("::ffff:127.0.0.1", true),
            ("0.0.0.0", false), ("::", false), ("[::]", false), ("192.168.1.5", false), ("10.0.0.1", false),
            ("128.0.0.1", false),
            ("::2", false), ("::ffff:10.0.0.1", false), ("example.com", false), ("localhost.example.com", false),
            ("myhost", false),
            ("127.1", false),
        ]
    )
    func loopback(_ host: String, _ isLoopback: Bool) {
        #expect(HostAddress.isLoopback(host) == isLoopback)
    }

    @Test(
        "protected mode: a host that is not loopback is refused unless insecure",
        arguments: ["0.0.0.0", "::", "192.168.1.5", "verso.example.com"]
    )
    func protectedMode(_ host: String) throws {
        var configuration = ServerConfiguration(host: host)
        let error = #expect(throws: ConfigurationError.self) { try configuration.validate() }
        #expect(error?.description.hasPrefix("--host \(host) is not a loopback address") == true)
        #expect(error?.description.contains("--insecure (VERSO_INSECURE=1)") == true)
        configuration.insecure = true
        try configuration.validate()
        for loopback in ["127.0.0.1", "::1", "localhost"] {
            try ServerConfiguration(host: loopback).validate()
        }
    }
}
