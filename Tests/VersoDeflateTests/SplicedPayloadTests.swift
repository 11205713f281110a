import CompressNIO
import NIOCore
import Testing
import VersoDeflate

/// An update goes to each compressed subscriber as its own head (with its subscription id) in a
/// stored block, followed by the update's tail compressed once for all of them. These tests
/// inflate such payloads with zlib, as a client would, in every window a client may agree.
@Suite("permessage-deflate: a head in a stored block spliced before a tail compressed once inflates to both")
struct SplicedPayloadTests {
    static let tails: [(String, [UInt8])] = [
        (
            "a short JSON tail",
            Array(#","key":"doc/1","version":7,"seq":42,"data":{"t":"\#(String(repeating: "ab", count: 150))"}}"#.utf8)
        ),
        ("a repetitive 100 KiB tail", Array((0..<20_000).map { "w\($0 % 97) " }.joined().utf8)),
        ("an incompressible 3 KiB tail", incompressibleBytes(3000)),
    ]

    /// The payload a subscriber gets: `head` stored, then `tail` as `compress` made it.
    private func spliced(head: [UInt8], tail: [UInt8], windowBits: Int32) throws -> ByteBuffer {
        let compressedTail = try PerMessageDeflate.compress(
            tail,
            windowBits: windowBits,
            allocator: ByteBufferAllocator()
        )
        var payload = ByteBuffer()
        PerMessageDeflate.appendStoredBlockHeader(length: head.count, to: &payload)
        payload.writeBytes(head)
        payload.writeImmutableBuffer(compressedTail)
        return payload
    }

    /// Inflates one permessage-deflate payload as RFC 7692 section 7.2.2 says: with 00 00 ff ff
    /// appended, in a window of `windowBits`.
    private func inflate(_ payload: ByteBuffer, windowBits: Int32, expected: Int) throws -> [UInt8] {
        var input = payload
        input.writeBytes([0x00, 0x00, 0xFF, 0xFF])
        let zlib = try ZlibDecompressor(algorithm: .deflate, windowSize: windowBits)
        var output = ByteBuffer()
        output.reserveCapacity(expected + 1024)
        try zlib.inflate(from: &input, to: &output)
        #expect(input.readableBytes == 0, "every byte of the payload was inflated")
        return Array(output.readableBytesView)
    }

    @Test("every head, tail and window a client may agree", arguments: [Int32(9), 10, 12, 15])
    func roundTrip(windowBits: Int32) throws {
        for head in [[], Array(#"{"type":"update","sub":"#.utf8) + Array("1234567".utf8), incompressibleBytes(700)] {
            for (name, tail) in Self.tails {
                let payload = try spliced(head: head, tail: tail, windowBits: windowBits)
                let inflated = try inflate(payload, windowBits: windowBits, expected: head.count + tail.count)
                #expect(inflated == head + tail, "\(name), a head of \(head.count) bytes, window \(windowBits)")
            }
        }
    }

    @Test("one compressed tail serves many heads: each payload inflates to its own head and the same tail")
    func oneTailManyHeads() throws {
        let tail = Self.tails[0].1
        let compressedTail = try PerMessageDeflate.compress(tail, windowBits: 15, allocator: ByteBufferAllocator())
        for sub in [1, 42, 9_999_999_999] {
            let head = Array(#"{"type":"update","sub":\#(sub)"#.utf8)
            var payload = ByteBuffer()
            PerMessageDeflate.appendStoredBlockHeader(length: head.count, to: &payload)
            payload.writeBytes(head)
            payload.writeImmutableBuffer(compressedTail)
            #expect(try inflate(payload, windowBits: 15, expected: head.count + tail.count) == head + tail)
        }
    }
}
