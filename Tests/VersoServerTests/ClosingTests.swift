import Foundation
import Testing
import VersoClient
import VersoCore
import VersoServer
import VersoTesting
import VersoWire

/// A frame no client may send, and the close code it gets.
struct HostileFrame: Sendable, CustomTestStringConvertible {
    let name: String
    let bytes: [UInt8]
    let closeCode: UInt16
    var compression = false

    var testDescription: String { name }

    /// A deflate stream of a put whose record is 64 KiB of "a" (RFC 7692: without its final 00 00 ff ff).
    static let deflateBomb = Array(
        Data(
            base64Encoded:
                "7MkxCoRAFETBu3RsYOxtZtBIlhV2FhTx7v6DVEXdvDvjOrYsOf4jU/btqt2/n16nt1+VecraRsty56zWAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAoOR5XgA="
        )!
    )

    static let all: [HostileFrame] = [
        HostileFrame(
            name: "a reserved opcode (0x3)",
            bytes: RawSocket.frame(opcode: 0x3, Array("x".utf8)),
            closeCode: 1002
        ),
        HostileFrame(
            name: "RSV2 set",
            bytes: RawSocket.frame(opcode: 0x1, Array(#"{"type":"hello"}"#.utf8), reservedBits: 0b010),
            closeCode: 1002
        ),
        HostileFrame(
            name: "RSV3 set",
            bytes: RawSocket.frame(opcode: 0x1, Array(#"{"type":"hello"}"#.utf8), reservedBits: 0b001),
            closeCode: 1002
        ),
        HostileFrame(
            name: "RSV1 set without permessage-deflate",
            bytes: RawSocket.frame(opcode: 0x1, Array(#"{"type":"hello"}"#.utf8), reservedBits: 0b100),
            closeCode: 1002
        ),
        HostileFrame(
            name: "an unmasked frame (RFC 6455 5.1)",
            bytes: RawSocket.frame(opcode: 0x1, Array(#"{"type":"hello"}"#.utf8), masked: false),
            closeCode: 1002
        ),
        HostileFrame(
            name: "a frame over the size limit",
            bytes: RawSocket.frame(opcode: 0x1, Array(repeating: 0x20, count: 5000)),
            closeCode: 1009
        ),
        HostileFrame(
            name: "a deflate bomb",
            bytes: RawSocket.frame(opcode: 0x1, deflateBomb, reservedBits: 0b100),
            closeCode: 1009,
            compression: true
        ),
        // 0xFF starts a deflate block of the reserved type 3 (RFC 1951 section 3.2.3).
        HostileFrame(
            name: "a compressed message that does not inflate",
            bytes: RawSocket.frame(opcode: 0x1, [0xFF, 0xFF, 0xFF, 0xFF], reservedBits: 0b100),
            closeCode: 1007,
            compression: true
        ),
        HostileFrame(
            name: "a ping over 125 bytes (RFC 6455 5.5)",
            bytes: RawSocket.frame(opcode: 0x9, Array(repeating: 0x61, count: 126)),
            closeCode: 1002
        ),
        HostileFrame(
            name: "a 64-bit frame length with its most significant bit set (RFC 6455 5.2)",
            bytes: [0x81, 0x80 | 127, 0x80, 0, 0, 0, 0, 0, 0, 5, 0x37, 0xFA, 0x21, 0x3D],
            closeCode: 1002
        ),
        HostileFrame(
            name: "a fragmented ping (RFC 6455 5.5)",
            bytes: RawSocket.frame(opcode: 0x9, Array("x".utf8), fin: false),
            closeCode: 1002
        ),
        HostileFrame(
            name: "a text frame that starts a new message inside a fragmented one",
            bytes: RawSocket.frame(opcode: 0x1, Array(#"{"type":"#.utf8), fin: false)
                + RawSocket.frame(opcode: 0x1, Array(#"{"type":"hello"}"#.utf8)),
            closeCode: 1002
        ),
    ]
}

@Suite("Closing: once the server sends its close, nothing more from the client is applied")
struct ClosingTests {
    @Test(
        "after a frame-level protocol error, a put sent with it or after it is not applied, and the socket is closed within the closing timeout",
        arguments: HostileFrame.all
    )
    func nothingAppliedAfterClose(hostile: HostileFrame) async throws {
        try await TestServer.with(configure: { $0.maxMessageBytes = 4096 }) { server in
            let sameWrite = uniqueKey("after-close")
            let later = uniqueKey("after-close")
            try await RawSocket.with(port: server.port) { socket in
                try await socket.upgrade(
                    port: server.port,
                    extensions: hostile.compression ? "permessage-deflate" : nil
                )
                // The bad frame and a valid put in one write: the server reads both at once.
                try await socket.write(
                    hostile.bytes
                        + RawSocket.text(#"{"type":"put","rid":"1","key":"\#(sameWrite)","base":0,"data":{}}"#)
                )
                #expect(try await socket.wait { $0.closeCode != nil || $0.isClosed }, "no close after \(hostile.name)")
                #expect(socket.closeCode == hostile.closeCode, "close code after \(hostile.name)")
                // A put after the close frame came (a client that ignores it).
                try? await socket.write(
                    RawSocket.text(#"{"type":"put","rid":"2","key":"\#(later)","base":0,"data":{}}"#)
                )
                let start = ContinuousClock.now
                let released = try await socket.waitForRelease(timeout: .seconds(6))
                #expect(released, "the server kept the socket open after \(hostile.name)")
                #expect(ContinuousClock.now - start < .seconds(4), "let go within the 2 s closing timeout")
                #expect(
                    !socket.frames.contains { $0.opcode == 0x1 },
                    "no reply after the close: \(socket.frames.map(\.opcode))"
                )
            }
            try await TestClient.with(url: server.url) { client in
                for key in [sameWrite, later] {
                    let reply = try await client.request(#"{"type":"get","key":"\#(key)"}"#)
                    #expect(
                        reply["code"]?.str == "not_found",
                        "\(hostile.name): the put of \(key) was applied: \(reply.encodedString)"
                    )
                }
            }
        }
    }

    @Test(
        "a frame whose header announces more than the size limit is answered with 1009 before its payload comes, and the socket closed at once, not after the closing timeout"
    )
    func oversizedFrameHeader() async throws {
        // A closing timeout far longer than the test waits: only closing at once passes.
        try await TestServer.with(configure: {
            $0.maxMessageBytes = 4096
            $0.closeGracePeriod = .seconds(60)
        }) { server in
            try await RawSocket.with(port: server.port) { socket in
                try await socket.upgrade(port: server.port)
                // The header of a 1 MiB text frame, and its mask; no payload.
                try await socket.write([0x81, 0x80 | 127, 0, 0, 0, 0, 0, 0x10, 0, 0, 0x37, 0xFA, 0x21, 0x3D])
                #expect(try await socket.wait { $0.closeCode != nil }, "no close for the announced frame")
                #expect(socket.closeCode == 1009)
                #expect(try await socket.waitForRelease(timeout: .seconds(20)), "the socket was kept open")
            }
        }
    }

    @Test("a client that does not answer a ping within the ping interval is closed with 4001, not the 1001 of shutdown")
    func pingTimeout() async throws {
        // Short, but long enough for a client under a loaded test run to answer.
        try await TestServer.with(configure: { $0.pingInterval = .seconds(2) }) { server in
            try await RawSocket.with(port: server.port) { socket in
                try await socket.upgrade(port: server.port)
                #expect(try await socket.wait { $0.frames.contains { $0.opcode == 0x9 } }, "the server pings")
                #expect(
                    try await socket.wait(timeout: .seconds(10)) { $0.closeCode != nil },
                    "closed for not answering"
                )
                #expect(socket.closeCode == 4001)
                #expect(try await socket.waitForRelease(timeout: .seconds(5)), "and the socket let go")
            }
            // A client that answers (the WebSocket client does) stays connected across many intervals.
            try await TestClient.with(url: server.url) { client in
                let deadline = ContinuousClock.now + .seconds(5)
                while ContinuousClock.now < deadline {
                    #expect(try await client.request(#"{"type":"hello"}"#).type == "welcome")
                    try await Task.sleep(for: .milliseconds(100))
                }
            }
        }
    }

    @Test(
        "a client's ping is answered with a pong carrying its payload, and a client's close with 1000, after which the server closes the socket"
    )
    func pingAndClientClose() async throws {
        try await TestServer.with { server in
            try await RawSocket.with(port: server.port) { socket in
                try await socket.upgrade(port: server.port)
                try await socket.write(RawSocket.frame(opcode: 0x9, Array("are you there".utf8)))
                #expect(try await socket.wait { $0.frames.contains { $0.opcode == 0xA } }, "a pong")
                #expect(socket.frames.first { $0.opcode == 0xA }?.payload == Array("are you there".utf8))
                try await socket.write(RawSocket.frame(opcode: 0x8, [0x03, 0xE8] + Array("bye".utf8)))
                #expect(try await socket.wait { $0.closeCode != nil }, "the close answered")
                #expect(socket.closeCode == 1000)
                #expect(try await socket.waitForRelease(timeout: .seconds(5)), "and the socket closed")
            }
        }
    }

    /// A close frame's payload no endpoint may send (RFC 6455 sections 5.5.1 and 7.4).
    static let badClosePayloads: [(String, [UInt8])] = [
        ("one byte", [0x03]),
        ("code 1005, which is never sent", [0x03, 0xED]),
        ("code 999", [0x03, 0xE7]),
        ("code 5000", [0x13, 0x88]),
        ("a reason that is not UTF-8", [0x03, 0xE8, 0xC3, 0x28]),
    ]

    @Test("a client's close frame that is malformed is answered with 1002", arguments: badClosePayloads)
    func malformedClientClose(_ name: String, _ payload: [UInt8]) async throws {
        try await TestServer.with { server in
            try await RawSocket.with(port: server.port) { socket in
                try await socket.upgrade(port: server.port)
                try await socket.write(RawSocket.frame(opcode: 0x8, payload))
                #expect(try await socket.wait { $0.closeCode != nil }, "the close answered (\(name))")
                #expect(socket.closeCode == 1002, "\(name)")
                #expect(try await socket.waitForRelease(timeout: .seconds(5)), "and the socket closed (\(name))")
            }
        }
    }

    @Test("a code of the private range (4000-4999) is a normal close: answered with 1000")
    func privateCloseCode() async throws {
        try await TestServer.with { server in
            try await RawSocket.with(port: server.port) { socket in
                try await socket.upgrade(port: server.port)
                try await socket.write(RawSocket.frame(opcode: 0x8, [0x0F, 0xA0]))
                #expect(try await socket.wait { $0.closeCode != nil })
                #expect(socket.closeCode == 1000)
            }
        }
    }
}
