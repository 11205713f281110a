import VersoClient
import VersoWire
extension ConformanceSuite {
    /// Section 1.2: the closing codes a client can provoke.
    static let closing: [ConformanceCase] = [
        ConformanceCase("1.2 closing codes: a normal close is answered with 1000") { context in
            try await context.connect { peer in
                _ = try await peer.hello()
                try await peer.wire.close()
                try await peer.expectClose(1000, "after the client closed normally")
            }
        },
        ConformanceCase("1.2 closing codes: a reserved opcode closes with 1002") { context in
            try await expectClose(1002, context, "after a frame with the reserved opcode 0x3") { peer in
                try await peer.sendFrame(opcode: 0x3, Array("x".utf8))
            }
        },
        ConformanceCase("1.2 closing codes: a frame with RSV2 set closes with 1002") { context in
            try await expectClose(1002, context, "after a text frame with RSV2 set") { peer in
                try await peer.sendFrame(opcode: 0x1, reservedBits: 0b010, Array(#"{"type":"hello"}"#.utf8))
            }
        },
        ConformanceCase("1.2 closing codes: a frame with RSV3 set closes with 1002") { context in
            try await expectClose(1002, context, "after a text frame with RSV3 set") { peer in
                try await peer.sendFrame(opcode: 0x1, reservedBits: 0b001, Array(#"{"type":"hello"}"#.utf8))
            }
        },
        ConformanceCase("1.2 closing codes: a continuation frame with no message to continue closes with 1002") {
            context in
            try await expectClose(1002, context, "after a continuation frame that continues nothing") { peer in
                try await peer.sendFrame(opcode: 0x0, Array(#"{"type":"hello"}"#.utf8))
            }
        },
        ConformanceCase(
            "1.2 closing codes: a text frame that starts a new message inside a fragmented one closes with 1002"
        ) { context in
            try await expectClose(1002, context, "after a text frame while a fragmented message was not finished") {
                peer in
                try await peer.sendFrame(opcode: 0x1, fin: false, Array(#"{"type":"#.utf8))
                try await peer.sendFrame(opcode: 0x1, Array(#"{"type":"hello"}"#.utf8))
            }
        },
        ConformanceCase("1.2 closing codes: a control frame over 125 bytes closes with 1002") { context in
            try await expectClose(1002, context, "after a ping of 126 bytes") { peer in
                try await peer.sendFrame(opcode: 0x9, Array(repeating: 0x61, count: 126))
            }
        },
        ConformanceCase("1.2 closing codes: a client's close with a code no endpoint may send is answered with 1002") {
            context in
            try await expectClose(1002, context, "after a close frame with code 1005") { peer in
                try await peer.sendFrame(opcode: 0x8, [0x03, 0xED])
            }
        },
        ConformanceCase("1.2 closing codes: a text message that is not valid UTF-8 closes with 1007") { context in
            try await expectClose(1007, context, "after a text frame holding the bytes 7B C3 28 7D") { peer in
                try await peer.sendFrame(opcode: 0x1, [0x7B, 0xC3, 0x28, 0x7D])
            }
        },
        ConformanceCase("1.2 closing codes: a fragmented text message that is not valid UTF-8 closes with 1007") {
            context in
            try await expectClose(1007, context, "after a fragmented text message ending in a cut UTF-8 sequence") {
                peer in
                // The message is {"type":"hello","x":"<C3>"}: "é" without its second byte.
                let bytes = Array(#"{"type":"hello","x":"é"#.utf8.dropLast()) + Array(#""}"#.utf8)
                try await peer.sendFragmented(bytes, at: [8])
            }
        },
    ]

    /// Opens a connection without compression (raw frames go out as they are), does `provoke`,
    /// expects the server to close with `code`, then checks a new connection still works.
    private static func expectClose(
        _ code: UInt16,
        _ context: CaseContext,
        _ what: String,
        provoke: (Peer) async throws -> Void
    ) async throws {
        try await context.connect(compression: false) { peer in
            try await provoke(peer)
            try await peer.expectClose(code, what)
        }
        try await context.connect { peer in _ = try await peer.hello() }
    }
}
