import Foundation
import Testing
import VersoClient
import VersoCore
import VersoServer
import VersoTesting
import VersoWire

@Suite("Handshake: what a connection may cost before it is a WebSocket")
struct HandshakeTests {
    @Test("a silent socket is closed once the handshake timeout passes, with no answer")
    func silentSocket() async throws {
        try await TestServer.with(configure: { $0.handshakeTimeout = .milliseconds(500) }) { server in
            // Taken before connecting: the server's timer starts at accept, which a loaded
            // machine may take longer than the timeout to report to this side.
            let start = ContinuousClock.now
            try await RawSocket.with(port: server.port) { socket in
                let closed = try await socket.wait { $0.isClosed }
                #expect(closed, "the silent socket is still open")
                #expect(ContinuousClock.now - start >= .milliseconds(400), "not before the timeout")
                #expect(socket.received.isEmpty)
            }
        }
    }

    @Test(
        "half a request is answered 408 once the handshake timeout passes, and closed",
        arguments: [
            "GET /v1/ws HTTP/1.1\r\nHost: x\r\n",
            "GET /v1/w",
        ]
    )
    func partialRequest(request: String) async throws {
        // Long enough that even a loaded machine reads the half request before the timeout.
        try await TestServer.with(configure: { $0.handshakeTimeout = .milliseconds(1500) }) { server in
            try await RawSocket.with(port: server.port) { socket in
                try await socket.write(request)
                #expect(try await socket.wait(timeout: .seconds(8)) { $0.isClosed }, "the half request is still held")
                #expect(socket.text.hasPrefix("HTTP/1.1 408"), "answered \(socket.text)")
            }
        }
    }

    @Test("a WebSocket that upgraded in time stays open past the handshake timeout")
    func upgradedStaysOpen() async throws {
        try await TestServer.with(configure: { $0.handshakeTimeout = .milliseconds(1500) }) { server in
            try await TestClient.with(url: server.url) { client in
                try await Task.sleep(for: .milliseconds(2000))
                #expect(try await put(client, uniqueKey(), base: 0) == 1)
            }
        }
    }

    @Test("endless headers are answered 431 once past the request head limit, and closed")
    func endlessHeaders() async throws {
        try await TestServer.with { server in
            try await RawSocket.with(port: server.port) { socket in
                try await socket.write("GET /v1/ws HTTP/1.1\r\nHost: x\r\n")
                var sent = 0
                while sent < 64 << 10, !socket.isClosed {
                    try? await socket.write("X-Filler-\(sent): " + String(repeating: "y", count: 1000) + "\r\n")
                    sent += 1000
                }
                #expect(try await socket.wait { $0.isClosed }, "endless headers are still being read")
                #expect(socket.text.hasPrefix("HTTP/1.1 431"), "answered \(socket.text.prefix(200))")
            }
            // A request head just under the limit still upgrades.
            let header = "X-Filler: " + String(repeating: "y", count: 12 << 10) + "\r\n"
            var request = RawHTTP.handshake(port: server.port, extensions: nil)
            // Before the blank line ("\r\n" is one Character).
            request.insert(contentsOf: header, at: request.index(before: request.endIndex))
            #expect(try await RawHTTP.exchange(port: server.port, request: request).status == 101)
        }
    }

    @Test(
        "an upgrade with a Sec-WebSocket-Version other than 13 is answered 426 with Sec-WebSocket-Version: 13",
        arguments: ["8", "14", nil]
    )
    func wrongVersion(version: String?) async throws {
        try await TestServer.with { server in
            var request =
                "GET /v1/ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            if let version { request += "Sec-WebSocket-Version: \(version)\r\n" }
            let response = try await RawHTTP.exchange(port: server.port, request: request + "\r\n")
            #expect(response.status == 426)
            #expect(response.headers["sec-websocket-version"] == "13")
            #expect(try JSONParser.parse(response.body)["code"]?.str == "bad_request")
        }
    }

    @Test("an upgrade without a valid Sec-WebSocket-Key is answered 400", arguments: [nil, "c2hvcnQ=", "not base64!"])
    func badKey(key: String?) async throws {
        try await TestServer.with { server in
            var request =
                "GET /v1/ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
            if let key { request += "Sec-WebSocket-Key: \(key)\r\n" }
            let response = try await RawHTTP.exchange(port: server.port, request: request + "\r\n")
            #expect(response.status == 400)
            #expect(try JSONParser.parse(response.body)["code"]?.str == "bad_request")
        }
    }

    @Test("connections beyond --max-connections are answered 503 and closed, while the open ones keep working")
    func connectionLimit() async throws {
        try await TestServer.with(configure: { $0.maxConnections = 2 }) { server in
            try await TestClient.with(url: server.url) { first in
                try await TestClient.with(url: server.url) { second in
                    // The refusal comes at once, without waiting for a request.
                    try await RawSocket.with(port: server.port) { refused in
                        let closed = try await refused.wait { $0.isClosed }
                        #expect(closed, "the connection over the limit is still open")
                        #expect(refused.text.hasPrefix("HTTP/1.1 503"), "answered \(refused.text)")
                    }
                    #expect(try await put(first, uniqueKey(), base: 0) == 1)
                    #expect(try await put(second, uniqueKey(), base: 0) == 1)
                }
                // Once one closes, a new connection is let in.
                let deadline = ContinuousClock.now + .seconds(5)
                var admitted = false
                while !admitted, ContinuousClock.now < deadline {
                    let response = try await RawHTTP.exchange(
                        port: server.port,
                        request: RawHTTP.handshake(port: server.port, extensions: nil)
                    )
                    admitted = response.status == 101
                    if !admitted { try await Task.sleep(for: .milliseconds(20)) }
                }
                #expect(admitted)
            }
        }
    }
}
