import Foundation
import NIOCore
import Testing
@testable import VersoLoad
import VersoTesting

/// The lean client's permessage-deflate rules (RFC 7692), without sockets.
@Suite struct WireTests {
    @Test func agreementReadsBothNoContextTakeoverParameters() throws {
        let both = try DeflateAgreement(
            response: ["permessage-deflate; client_no_context_takeover; server_no_context_takeover"],
            offered: true
        )
        #expect(both == DeflateAgreement(clientNoContextTakeover: true, serverNoContextTakeover: true))
        let takeover = try DeflateAgreement(response: ["permessage-deflate"], offered: true)
        #expect(takeover == DeflateAgreement())
        #expect(try DeflateAgreement(response: [], offered: true) == nil)
        #expect(try DeflateAgreement(response: [], offered: false) == nil)
    }

    @Test func agreementRefusesWhatWasNotOffered() {
        #expect(throws: LoadError.self) { try DeflateAgreement(response: ["permessage-deflate"], offered: false) }
        #expect(throws: LoadError.self) {
            try DeflateAgreement(response: ["permessage-deflate; client_max_window_bits=10"], offered: true)
        }
        #expect(throws: LoadError.self) { try DeflateAgreement(response: ["x-webkit-deflate-frame"], offered: true) }
    }

    /// Messages round-trip with and without context takeover; with takeover, a later message
    /// refers back to an earlier one, so the decompressor must keep its window too.
    @Test(arguments: [false, true])
    func messagesRoundTripThroughDeflate(reset: Bool) throws {
        let compressor = try MessageDeflate.makeCompressor()
        let decompressor = try MessageDeflate.makeDecompressor()
        let messages = (0..<5).map {
            #"{"type":"put","key":"k\#($0)","data":{"p":""# + String(repeating: "abc", count: 400 + $0) + #""}}"#
        }
        for message in messages {
            var plain = ByteBuffer(string: message)
            var packed = try MessageDeflate.compress(&plain, with: compressor, reset: reset)
            #expect(packed.readableBytes < message.utf8.count / 4)
            let unpacked = try MessageDeflate.decompress(&packed, with: decompressor, maxSize: 1 << 20, reset: reset)
            #expect(String(buffer: unpacked) == message)
        }
    }

    @Test func inflatingPastTheLimitFails() throws {
        var plain = ByteBuffer(string: String(repeating: "a", count: 100_000))
        var packed = try MessageDeflate.compress(&plain, with: MessageDeflate.makeCompressor(), reset: true)
        #expect(throws: LoadError.self) {
            try MessageDeflate.decompress(
                &packed,
                with: MessageDeflate.makeDecompressor(),
                maxSize: 10_000,
                reset: true
            )
        }
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
