import Foundation
import NIOCore
import Testing
@testable import VersoLoad
import VersoTesting

/// The lean client's permessage-deflate rules (RFC 7692), without sockets.
@Suite struct WireTests {
    @Test func agreementNeedsServerNoContextTakeover() throws {
        let both = try DeflateAgreement(
            response: ["permessage-deflate; client_no_context_takeover; server_no_context_takeover"],
            offered: true
        )
        #expect(both == DeflateAgreement())
        #expect(
            try DeflateAgreement(response: ["permessage-deflate; server_no_context_takeover"], offered: true) != nil
        )
        // A server that keeps its window between messages: each message is inflated on its own here.
        #expect(throws: LoadError.self) { try DeflateAgreement(response: ["permessage-deflate"], offered: true) }
        #expect(try DeflateAgreement(response: [], offered: true) == nil)
        #expect(try DeflateAgreement(response: [], offered: false) == nil)
    }

    @Test func agreementRefusesWhatWasNotOffered() {
        #expect(throws: LoadError.self) {
            try DeflateAgreement(response: ["permessage-deflate; server_no_context_takeover"], offered: false)
        }
        #expect(throws: LoadError.self) {
            try DeflateAgreement(
                response: ["permessage-deflate; server_no_context_takeover; client_max_window_bits=10"],
                offered: true
            )
        }
        #expect(throws: LoadError.self) { try DeflateAgreement(response: ["x-webkit-deflate-frame"], offered: true) }
    }

    @Test func endpointReadsHostPortAndTarget() throws {
        let endpoint = try LeanWebSocket.Endpoint(url: "ws://127.0.0.1:7070/v1/ws?x=1")
        #expect(endpoint.host == "127.0.0.1" && endpoint.port == 7070)
        #expect(endpoint.target == "/v1/ws?x=1" && endpoint.authority == "127.0.0.1:7070")
        #expect(throws: LoadError.self) { try LeanWebSocket.Endpoint(url: "wss://example.com/") }
    }

    @Test func aRefusedHandshakeNamesTheStatus() async throws {
        try await TestServer.with { server in
            let wrongPath = server.url.replacingOccurrences(of: "/v1/ws", with: "/no-such-path")
            do {
                _ = try await LoadConnection.run(url: wrongPath, compression: true) { _ in 0 }
                Issue.record("the handshake should have been refused")
            } catch let error as LoadError {
                #expect(error.description.contains("rejected the WebSocket handshake with HTTP status 4"))
            }
        }
    }
}
