import NIOCore
import NIOWebSocket

/// Writes WebSocket frames (RFC 6455 section 5.2) straight into a caller's buffer, so several
/// frames go out in one write. Inlinable: the server's outbox calls it once per message.
public enum WireFrameEncoding {
    /// The most bytes a frame's header takes before a payload of `payloadBytes`, with a masking
    /// key when `masked`.
    @inlinable
    public static func headerBytes(for payloadBytes: Int, masked: Bool = false) -> Int {
        (payloadBytes < 126 ? 2 : payloadBytes <= Int(UInt16.max) ? 4 : 10) + (masked ? 4 : 0)
    }

    /// Appends the header of a frame whose payload of `payloadBytes` the caller writes next
    /// (masked with `maskKey`, when there is one: `appendFrame` does that).
    @inlinable
    public static func appendHeader(
        fin: Bool = true,
        rsv1: Bool = false,
        opcode: WebSocketOpcode,
        maskKey: WebSocketMaskingKey? = nil,
        payloadBytes count: Int,
        to buffer: inout ByteBuffer
    ) {
        buffer.writeInteger((fin ? 0x80 : 0) | (rsv1 ? 0x40 : 0) | UInt8(webSocketOpcode: opcode))
        let maskBit: UInt8 = maskKey == nil ? 0 : 0x80
        if count < 126 {
            buffer.writeInteger(maskBit | UInt8(count))
        } else if count <= Int(UInt16.max) {
            buffer.writeInteger(maskBit | 126)
            buffer.writeInteger(UInt16(count))
        } else {
            buffer.writeInteger(maskBit | 127)
            buffer.writeInteger(UInt64(count))
        }
        if let maskKey { buffer.writeInteger(WireMask.integer(maskKey)) }
    }

    /// Appends a whole frame carrying `payload`, masked with `maskKey` when there is one (a
    /// client's frames must be, a server's must not: RFC 6455 section 5.1).
    @inlinable
    public static func appendFrame(
        fin: Bool = true,
        rsv1: Bool = false,
        opcode: WebSocketOpcode,
        maskKey: WebSocketMaskingKey? = nil,
        payload: some Collection<UInt8>,
        to buffer: inout ByteBuffer
    ) {
        appendHeader(fin: fin, rsv1: rsv1, opcode: opcode, maskKey: maskKey, payloadBytes: payload.count, to: &buffer)
        guard let maskKey else {
            buffer.writeBytes(payload)
            return
        }
        let offset = buffer.writerIndex - buffer.readerIndex
        buffer.writeBytes(payload)
        buffer.withUnsafeMutableReadableBytes { bytes in
            let written = UnsafeMutableRawBufferPointer(rebasing: bytes[offset...])
            WireMask(maskKey).apply(from: UnsafeRawBufferPointer(written), to: written)
        }
    }

    /// A close frame's payload: `code`, then `reason` when there is one (RFC 6455 section 5.5.1),
    /// cut at a character boundary so that the payload fits a control frame (125 bytes).
    public static func closePayload(_ code: WebSocketErrorCode, reason: String? = nil) -> [UInt8] {
        let number = UInt16(webSocketErrorCode: code)
        var reasonBytes = Array((reason ?? "").utf8)
        if reasonBytes.count > maxCloseReasonBytes {
            var end = maxCloseReasonBytes
            // Not inside a character: back off over UTF-8 continuation bytes (10xxxxxx).
            while end > 0, reasonBytes[end] & 0xC0 == 0x80 { end -= 1 }
            reasonBytes.removeSubrange(end...)
        }
        return [UInt8(number >> 8), UInt8(number & 0xFF)] + reasonBytes
    }

    /// The longest reason a close frame carries: a control frame's 125 bytes less the code's 2.
    public static let maxCloseReasonBytes = 123
}
