import Foundation
import Logging
import Synchronization
import Testing
import VersoClient
import VersoCore
import VersoServer
import VersoTesting
import VersoWire

/// Keeps every log message in memory, for tests that check what the server logged.
final class LogCapture: Sendable {
    struct Entry: Sendable {
        var level: Logger.Level
        var message: String
        var metadata: [String: String]
    }

    private struct Handler: LogHandler {
        let capture: LogCapture
        var metadata: Logger.Metadata = [:]
        var metadataProvider: Logger.MetadataProvider?
        var logLevel: Logger.Level = .trace

        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }

        func log(event: LogEvent) {
            let merged = metadata.merging(event.metadata ?? [:]) { $1 }
            capture.entries.withLock {
                $0.append(
                    Entry(
                        level: event.level,
                        message: event.message.description,
                        metadata: merged.mapValues { "\($0)" }
                    )
                )
            }
        }
    }

    private let entries = Mutex<[Entry]>([])

    var logger: Logger { Logger(label: "verso.test") { _ in Handler(capture: self) } }

    var all: [Entry] { entries.withLock { $0 } }
}

/// A WebSocket handshake for `/v1/ws` on `port` with this `Host` (`host:port`) and, when
/// given, `Origin`, as a browser sends it.
func browserHandshake(port: Int, host: String = "127.0.0.1", origin: String?) -> String {
    var request = RawHTTP.handshake(host: host, port: port, extensions: nil)
    if let origin {
        // Before the blank line.
        request.insert(contentsOf: "Origin: \(origin)\r\n", at: request.index(before: request.endIndex))
    }
    return request
}

/// Sends `handshake` on a raw socket, and at once after it a put of `key`, as an eager client
/// would; returns the HTTP status and, when upgraded, the reply to the put.
private func handshakeThenPut(
    port: Int,
    handshake: String,
    key: String
) async throws -> (status: Int?, reply: JSONValue?, text: String) {
    try await RawSocket.with(port: port) { socket in
        let put = RawSocket.text(#"{"type":"put","rid":"p","key":"\#(key)","base":0,"data":{"from":"page"}}"#)
        let status = try await socket.handshake(Array(handshake.utf8) + put)
        guard status == 101 else {
            try await socket.wait { $0.isClosed }
            return (status, nil, socket.text)
        }
        try await socket.wait { $0.frames.contains { $0.opcode == 0x1 } }
        let reply = try socket.frames.first { $0.opcode == 0x1 }.map {
            try JSONParser.parse(String(decoding: $0.payload, as: UTF8.self))
        }
        return (status, reply, socket.text)
    }
}

/// Whether `key` exists, asked over a client that sends no Origin.
private func exists(_ key: String, url: String) async throws -> Bool {
    try await TestClient.with(url: url) { client in
        let reply = try await client.request(#"{"type":"get","key":"\#(key)"}"#)
        return reply.type == "snapshot"
    }
}

@Suite(
    "Origins: a WebSocket from a web page is accepted only from the server's own origin and listed ones (Protocol.md 1)"
)
struct OriginTests {
    @Test(
        "an upgrade with a foreign Origin is answered 403 with a forbidden error and closed; the put sent behind it is not applied; the refusal is logged"
    )
    func foreignOriginRefused() async throws {
        let logs = LogCapture()
        try await TestServer.with(logger: logs.logger) { server in
            let key = uniqueKey("origin")
            let handshake = browserHandshake(port: server.port, origin: "https://evil.example")
            let (status, reply, text) = try await handshakeThenPut(port: server.port, handshake: handshake, key: key)
            #expect(status == 403, "answered \(text)")
            #expect(reply == nil)
            let body = try #require(text.range(of: "\r\n\r\n")).upperBound
            let error = try JSONParser.parse(String(text[body...]))
            #expect(error.type == "error")
            #expect(error["code"]?.str == "forbidden")
            #expect(error["message"]?.str?.contains("https://evil.example") == true)
            #expect(text.contains("Connection: close\r\n"))
            #expect(try await exists(key, url: server.url) == false, "the put behind a refused handshake was applied")
            let refusals = logs.all.filter { $0.metadata["verso.origin"] != nil }
            #expect(refusals.count == 1)
            #expect(refusals.first?.level == .warning)
            #expect(refusals.first?.metadata["verso.origin"] == "https://evil.example")
        }
    }

    @Test("a flood of refused origins is logged once a second, with the number of refusals in between")
    func refusalsAreRateLimited() async throws {
        let logs = LogCapture()
        try await TestServer.with(logger: logs.logger) { server in
            let handshake = browserHandshake(port: server.port, origin: "https://evil.example")
            let started = ContinuousClock.now
            for _ in 0..<5 {
                #expect(
                    try await handshakeThenPut(port: server.port, handshake: handshake, key: uniqueKey("flood")).status
                        == 403
                )
            }
            let burst = logs.all.filter { $0.metadata["verso.origin"] != nil }
            // All five came within the second (one line), unless this machine was very slow.
            if ContinuousClock.now - started < .milliseconds(900) {
                #expect(burst.count == 1, "\(burst.count) lines for five refusals within a second")
            }
            try await Task.sleep(for: .milliseconds(1_100))
            #expect(
                try await handshakeThenPut(port: server.port, handshake: handshake, key: uniqueKey("flood")).status
                    == 403
            )
            let lines = logs.all.filter { $0.metadata["verso.origin"] != nil }
            #expect(lines.count == burst.count + 1)
            let unlogged = burst.count == 1 ? "4" : nil
            if let unlogged {
                #expect(lines.last?.metadata["verso.unlogged_refusals"] == unlogged, "\(lines.last?.metadata ?? [:])")
            }
        }
    }

    @Test(
        "the page's own origin upgrades, under each name the server was reached by",
        arguments: ["127.0.0.1", "localhost", "[::1]"]
    )
    func ownOrigin(host: String) async throws {
        try await TestServer.with { server in
            let key = uniqueKey("origin")
            let handshake = browserHandshake(port: server.port, host: host, origin: "http://\(host):\(server.port)")
            let (status, reply, text) = try await handshakeThenPut(port: server.port, handshake: handshake, key: key)
            #expect(status == 101, "answered \(text)")
            #expect(reply?.type == "ack")
            #expect(try await exists(key, url: server.url))
        }
    }

    @Test(
        "another name of this machine, another port, https, or a Host that is a DNS name (rebinding) is not the own origin",
        arguments: [
            ("localhost", "http://127.0.0.1:PORT"),
            ("127.0.0.1", "http://localhost:PORT"),
            ("127.0.0.1", "http://127.0.0.1:1"),
            ("127.0.0.1", "https://127.0.0.1:PORT"),
            ("evil.example", "http://evil.example:PORT"),
            ("127.0.0.1", "null"),
        ]
    )
    func notOwnOrigin(host: String, origin: String) async throws {
        try await TestServer.with { server in
            let key = uniqueKey("origin")
            let handshake = browserHandshake(
                port: server.port,
                host: host,
                origin: origin.replacingOccurrences(of: "PORT", with: "\(server.port)")
            )
            let (status, _, text) = try await handshakeThenPut(port: server.port, handshake: handshake, key: key)
            #expect(status == 403, "answered \(text)")
            #expect(try await exists(key, url: server.url) == false)
        }
    }

    @Test("an origin listed with --allow-origin upgrades (default port normalised); an unlisted one is still refused")
    func listedOrigin() async throws {
        try await TestServer.with(configure: {
            $0.allowedOrigins = ["http://localhost:8000", "https://app.example.com"]
        }) { server in
            for (origin, expected) in [
                ("http://localhost:8000", 101), ("https://APP.example.com:443", 101), ("http://localhost:8001", 403),
                ("https://evil.example", 403),
            ] {
                let key = uniqueKey("origin")
                let (status, reply, text) = try await handshakeThenPut(
                    port: server.port,
                    handshake: browserHandshake(port: server.port, origin: origin),
                    key: key
                )
                #expect(status == expected, "\(origin) answered \(text)")
                #expect((reply?.type == "ack") == (expected == 101), "\(origin)")
                #expect(try await exists(key, url: server.url) == (expected == 101), "\(origin)")
            }
        }
    }

    @Test("--allow-any-origin accepts a page from any origin")
    func anyOrigin() async throws {
        try await TestServer.with(configure: { $0.allowAnyOrigin = true }) { server in
            let key = uniqueKey("origin")
            let (status, reply, text) = try await handshakeThenPut(
                port: server.port,
                handshake: browserHandshake(port: server.port, origin: "https://evil.example"),
                key: key
            )
            #expect(status == 101, "answered \(text)")
            #expect(reply?.type == "ack")
        }
    }

    @Test(
        "an upgrade without Origin, or with a ws:// or wss:// one (a WebSocket library, not a browser), is unaffected",
        arguments: [nil, "ws://127.0.0.1", "wss://verso.example.com"]
    )
    func notFromAPage(origin: String?) async throws {
        try await TestServer.with { server in
            let key = uniqueKey("origin")
            let (status, reply, text) = try await handshakeThenPut(
                port: server.port,
                handshake: browserHandshake(port: server.port, origin: origin),
                key: key
            )
            #expect(status == 101, "answered \(text)")
            #expect(reply?.type == "ack")
        }
    }

    @Test(
        "a foreign upgrade pipelined behind a plain request on one connection is not upgraded, and its put is not applied"
    )
    func pipelined() async throws {
        try await TestServer.with { server in
            let key = uniqueKey("origin")
            let plain = "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:\(server.port)\r\n\r\n"
            let handshake = plain + browserHandshake(port: server.port, origin: "https://evil.example")
            let text = try await RawSocket.with(port: server.port) { socket in
                let put = RawSocket.text(#"{"type":"put","rid":"p","key":"\#(key)","base":0,"data":{}}"#)
                try await socket.write(Array(handshake.utf8) + put)
                try await socket.wait(timeout: .seconds(8)) { $0.isClosed }
                return socket.text
            }
            #expect(text.hasPrefix("HTTP/1.1 200"), "answered \(text)")
            #expect(!text.contains("HTTP/1.1 101"), "upgraded: \(text)")
            #expect(try await exists(key, url: server.url) == false)
        }
    }
}
