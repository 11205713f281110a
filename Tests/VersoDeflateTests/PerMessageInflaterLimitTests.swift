import NIOCore
import Testing
import VersoDeflate

/// Found by fuzz/ (FuzzInflate): the size limit on a compressed message was off by one at
/// sizes where CompressNIO's output buffers came out exactly full.
@Suite("permessage-deflate: the message size limit counts bytes after decompression")
struct PerMessageInflaterLimitTests {
    private func compressedPayload(_ message: [UInt8]) throws -> ByteBuffer {
        try PerMessageDeflate.compress(message, windowBits: 15, allocator: ByteBufferAllocator())
    }

    @Test(
        "a compressed message exactly at the limit is accepted (only a larger one closes with 1009)",
        arguments: [1, 2, 16, 64, 4096, 1 << 20]
    )
    func exactlyAtTheLimit(size: Int) throws {
        let message = incompressibleBytes(size)
        let inflated = try PerMessageInflater(maxMessageBytes: size)
            .inflate(try compressedPayload(message), compressed: true, fin: true)
        #expect(Array(inflated.readableBytesView) == message)
    }

    @Test(
        "a compressed message one byte over the limit is refused as too large (1009)",
        arguments: [1, 64, 4096, 1 << 20]
    )
    func oneByteOver(size: Int) throws {
        let payload = try compressedPayload(incompressibleBytes(size + 1))
        #expect(throws: PerMessageInflater.TooLarge()) {
            _ = try PerMessageInflater(maxMessageBytes: size).inflate(payload, compressed: true, fin: true)
        }
    }
}
