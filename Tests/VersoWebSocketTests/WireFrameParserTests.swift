import NIOCore
import NIOEmbedded
import NIOWebSocket
import Testing
import VersoWebSocket

@Suite("WebSocket frames: the parser and the encoding the server and verso-load share (RFC 6455 section 5.2)")
struct WireFrameParserTests {
    /// A frame as the parser returns it, comparable: its payload unmasked.
    private struct Seen: Equatable {
        var fin: Bool
        var rsv: [Bool]
        var opcode: WebSocketOpcode
        var maskKey: WebSocketMaskingKey?
        var payload: [UInt8]

        init(_ frame: WireFrame) {
            fin = frame.fin
            rsv = [frame.rsv1, frame.rsv2, frame.rsv3]
            opcode = frame.opcode
            maskKey = frame.maskKey
            payload = Array(frame.unmaskedPayload.readableBytesView)
        }

        init(_ frame: WebSocketFrame) {
            fin = frame.fin
            rsv = [frame.rsv1, frame.rsv2, frame.rsv3]
            opcode = frame.opcode
            maskKey = frame.maskKey
            payload = Array(frame.unmaskedData.readableBytesView)
        }
    }

    /// Feeds `reads` to one parser and collects the frames and the failure.
    private static func parse(
        _ reads: [[UInt8]],
        maxFrameBytes: Int = 1 << 20
    ) -> (frames: [Seen], failure: WireFrameParser.Failure?, buffered: Int) {
        var parser = WireFrameParser(maxFrameBytes: maxFrameBytes)
        var frames: [Seen] = []
        for read in reads {
            do {
                try parser.read(ByteBuffer(bytes: read)) { frame in
                    frames.append(Seen(frame))
                    return true
                }
            } catch {
                return (frames, error, parser.bufferedBytes)
            }
        }
        return (frames, nil, parser.bufferedBytes)
    }

    private static func encoded(
        fin: Bool = true,
        rsv1: Bool = false,
        opcode: WebSocketOpcode,
        maskKey: WebSocketMaskingKey?,
        payload: [UInt8]
    ) -> [UInt8] {
        var buffer = ByteBuffer()
        WireFrameEncoding.appendFrame(
            fin: fin,
            rsv1: rsv1,
            opcode: opcode,
            maskKey: maskKey,
            payload: payload,
            to: &buffer
        )
        #expect(
            buffer.readableBytes
                == WireFrameEncoding.headerBytes(for: payload.count, masked: maskKey != nil) + payload.count
        )
        return Array(buffer.readableBytesView)
    }

    @Test(
        "frames of every length encoding, masked or not, come back as they were written, whole or a byte at a time",
        arguments: [0, 1, 125, 126, 127, 65_535, 65_536, 70_000]
    )
    func roundTrip(length: Int) {
        let payload = (0..<length).map { UInt8(truncatingIfNeeded: $0 &* 31) }
        for maskKey in [nil, WebSocketMaskingKey([1, 2, 3, 4])] {
            let wire =
                Self.encoded(opcode: .binary, maskKey: maskKey, payload: payload)
                + Self.encoded(fin: false, rsv1: true, opcode: .text, maskKey: maskKey, payload: [9])
            let whole = Self.parse([wire])
            #expect(whole.failure == nil)
            #expect(whole.buffered == 0)
            #expect(whole.frames.map(\.payload) == [payload, [9]])
            #expect(whole.frames.map(\.maskKey) == [maskKey, maskKey])
            #expect(whole.frames[1].fin == false && whole.frames[1].rsv == [true, false, false])
            // A byte at a time, or 1,000 bytes at a time for the long ones.
            let size = length <= 300 ? 1 : 1000
            let reads = stride(from: 0, to: wire.count, by: size).map { Array(wire[$0..<min($0 + size, wire.count)]) }
            #expect(Self.parse(reads).frames == whole.frames)
            // Cut inside the second frame: the first comes out, the rest waits.
            let cut = Self.parse([Array(wire.dropLast(1))])
            #expect(cut.frames.count == 1)
            #expect(cut.buffered > 0)
        }
    }

    @Test(
        "a frame larger than the limit is refused with 1009 as soon as its header arrives, and nothing after it is read"
    )
    func tooLarge() {
        var header = ByteBuffer()
        WireFrameEncoding.appendHeader(
            opcode: .text,
            maskKey: WebSocketMaskingKey([1, 2, 3, 4]),
            payloadBytes: 1001,
            to: &header
        )
        let small = Self.encoded(opcode: .text, maskKey: WebSocketMaskingKey([1, 2, 3, 4]), payload: [1, 2])
        let result = Self.parse([small + Array(header.readableBytesView), small], maxFrameBytes: 1000)
        #expect(result.frames.count == 1)
        #expect(result.failure?.code == .messageTooLarge)
        var parser = WireFrameParser(maxFrameBytes: 1000)
        #expect(throws: WireFrameParser.Failure.self) {
            try parser.read(ByteBuffer(bytes: Array(header.readableBytesView))) { _ in true }
        }
        var after = 0
        #expect(throws: Never.self) {
            try parser.read(ByteBuffer(bytes: small)) { _ in
                after += 1
                return true
            }
        }
        #expect(after == 0)
        // Exactly at the limit is accepted.
        let atLimit = Self.parse(
            [Self.encoded(opcode: .binary, maskKey: nil, payload: Array(repeating: 7, count: 1000))],
            maxFrameBytes: 1000
        )
        #expect(atLimit.failure == nil && atLimit.frames.count == 1)
    }

    @Test(
        "a fragmented control frame, a control frame over 125 bytes and a 64-bit length with its top bit set are refused with 1002",
        arguments: [
            [0x09, 0x00] as [UInt8],  // a ping without fin
            [0x89, 126, 0, 126],  // a 126-byte ping
            [0x82, 127, 0x80, 0, 0, 0, 0, 0, 0, 0],  // length with bit 63 set
        ]
    )
    func protocolErrors(wire: [UInt8]) {
        let result = Self.parse([wire])
        #expect(result.frames.isEmpty)
        #expect(result.failure?.code == .protocolError)
    }

    @Test("a reader that stops is handed no frame after it")
    func stopping() {
        let one = Self.encoded(opcode: .text, maskKey: nil, payload: [1])
        var parser = WireFrameParser(maxFrameBytes: 100)
        var seen = 0
        try? parser.read(ByteBuffer(bytes: one + one + one)) { _ in
            seen += 1
            return false
        }
        try? parser.read(ByteBuffer(bytes: one)) { _ in
            seen += 1
            return true
        }
        #expect(seen == 1)
        #expect(parser.bufferedBytes == 0)
    }

    @Test("the rules on masking, opcodes and reserved bits, for each side")
    func violations() {
        func frame(
            _ opcode: WebSocketOpcode,
            masked: Bool = true,
            fin: Bool = true,
            rsv1: Bool = false,
            rsv2: Bool = false,
            rsv3: Bool = false
        ) -> WireFrame {
            WireFrame(
                fin: fin,
                rsv1: rsv1,
                rsv2: rsv2,
                rsv3: rsv3,
                opcode: opcode,
                mask: masked ? 0x0102_0304 : nil,
                payload: ByteBuffer()
            )
        }
        #expect(frame(.text).violation(from: .client, allowsRSV1: false) == nil)
        #expect(frame(.text, masked: false).violation(from: .client, allowsRSV1: false) != nil)
        #expect(frame(.text, masked: false).violation(from: .server, allowsRSV1: false) == nil)
        #expect(frame(.text).violation(from: .server, allowsRSV1: false) != nil)
        #expect(frame(WebSocketOpcode(encodedWebSocketOpcode: 0x3)!).violation(from: .client, allowsRSV1: true) != nil)
        #expect(frame(WebSocketOpcode(encodedWebSocketOpcode: 0xB)!).violation(from: .client, allowsRSV1: true) != nil)
        #expect(frame(.text, rsv2: true).violation(from: .client, allowsRSV1: true) != nil)
        #expect(frame(.text, rsv3: true).violation(from: .client, allowsRSV1: true) != nil)
        #expect(frame(.text, rsv1: true).violation(from: .client, allowsRSV1: true) == nil)
        #expect(frame(.text, rsv1: true).violation(from: .client, allowsRSV1: false) != nil)
        #expect(frame(.continuation, rsv1: true).violation(from: .client, allowsRSV1: true) != nil)
        #expect(frame(.ping, rsv1: true).violation(from: .client, allowsRSV1: true) != nil)
    }

    @Test("a close frame's reason is cut to fit a control frame, never inside a character")
    func closeReasonFits() throws {
        let short = WireFrameEncoding.closePayload(.protocolError, reason: "bad")
        #expect(short == [0x03, 0xEA] + Array("bad".utf8))
        // 'é' is two bytes: 61 of them end at byte 122, the 62nd would cross 123.
        let long = String(repeating: "é", count: 100)
        let payload = WireFrameEncoding.closePayload(.normalClosure, reason: long)
        #expect(payload.count == 2 + 122)
        #expect(String(validating: payload.dropFirst(2), as: UTF8.self) == String(repeating: "é", count: 61))
        let ascii = WireFrameEncoding.closePayload(.normalClosure, reason: String(repeating: "a", count: 300))
        #expect(ascii.count == 125)
        let wire = Self.encoded(opcode: .connectionClose, maskKey: nil, payload: ascii)
        #expect(Self.parse([wire]).failure == nil)
    }

    @Test("unmasking on the stack gives the same bytes as unmasking into a copy")
    func unmaskedOnTheStack() {
        let payload = (0..<300).map { UInt8(truncatingIfNeeded: $0 &* 7) }
        let wire = Self.encoded(opcode: .text, maskKey: WebSocketMaskingKey([9, 8, 7, 6]), payload: payload)
        var parser = WireFrameParser(maxFrameBytes: 1000)
        try? parser.read(ByteBuffer(bytes: wire)) { frame in
            #expect(frame.withUnmaskedPayload { Array($0) } == payload)
            #expect(Array(frame.unmaskedPayload.readableBytesView) == payload)
            return true
        }
    }

    /// A small seeded generator: the same frames on every run.
    private struct Seeded: RandomNumberGenerator {
        var state: UInt64
        mutating func next() -> UInt64 {
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return state ^ (state >> 29)
        }
    }

    @Test("2,000 random byte strings and frame sequences read alike by this parser and by NIO's WebSocketFrameDecoder")
    func sameAsNIO() throws {
        var random = Seeded(state: 42)
        for round in 0..<2000 {
            var wire: [UInt8] = []
            if round % 2 == 0 {
                // Well-formed frames with random headers.
                for _ in 0..<Int.random(in: 1...4, using: &random) {
                    let opcode = WebSocketOpcode(encodedWebSocketOpcode: UInt8.random(in: 0...15, using: &random))!
                    let length =
                        opcode.isControlOpcode
                        ? Int.random(in: 0...125, using: &random)
                        : [0, 5, 125, 126, 300, 70_000].randomElement(using: &random)!
                    wire += Self.encoded(
                        fin: opcode.isControlOpcode || Bool.random(using: &random),
                        rsv1: Bool.random(using: &random),
                        opcode: opcode,
                        maskKey: Bool.random(using: &random)
                            ? WebSocketMaskingKey([1, 2, 3, UInt8.random(in: 0...255, using: &random)]) : nil,
                        payload: (0..<length).map { _ in UInt8.random(in: 0...255, using: &random) }
                    )
                }
            } else {
                wire = (0..<Int.random(in: 0...40, using: &random)).map { _ in UInt8.random(in: 0...255, using: &random)
                }
            }
            let ours = Self.parse([wire], maxFrameBytes: 1 << 20)
            let channel = EmbeddedChannel(handler: ByteToMessageHandler(WebSocketFrameDecoder(maxFrameSize: 1 << 20)))
            var theirs: [Seen] = []
            var failed = false
            do {
                try channel.writeInbound(ByteBuffer(bytes: wire))
            } catch {
                failed = true
            }
            while let frame = try channel.readInbound(as: WebSocketFrame.self) { theirs.append(Seen(frame)) }
            _ = try? channel.finish()
            #expect(ours.frames == theirs, "round \(round): \(wire.prefix(16))")
            #expect((ours.failure != nil) == failed, "round \(round): \(wire.prefix(16))")
        }
    }
}
