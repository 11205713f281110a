import NIOCore
import NIOWebSocket

/// Cuts the bytes read from one WebSocket connection into frames (RFC 6455 section 5.2), with
/// no copy of a payload: each frame's payload is a slice of what was read.
///
/// Refuses, as soon as a frame's header shows it: a payload longer than `maxFrameBytes` (close
/// code 1009), a control frame that is fragmented or carries more than 125 bytes, and a 64-bit
/// length with its top bit set (1002). Once it has refused a frame it reads nothing more: the
/// bytes that follow cannot be cut into frames. Masking, opcodes and reserved bits are the
/// caller's to check (`WireFrame.violation(from:allowsRSV1:)`).
///
/// Holds no buffer between reads that end on a frame boundary, so an idle connection keeps no
/// bytes here.
public struct WireFrameParser {
    /// Why the bytes cannot be read as frames.
    public struct Failure: Error, Equatable {
        /// The close code to send: 1009 or 1002.
        public var code: WebSocketErrorCode
        public var reason: String
    }

    private enum State {
        /// Every byte read so far was a whole frame.
        case empty
        /// The start of a frame whose rest has not arrived yet.
        case partial(ByteBuffer)
        /// A frame was refused; nothing more is read.
        case failed
    }

    /// The largest payload a frame may carry.
    public let maxFrameBytes: Int
    private var state = State.empty

    public init(maxFrameBytes: Int) {
        self.maxFrameBytes = maxFrameBytes
    }

    /// Bytes of an unfinished frame held for the next read.
    public var bufferedBytes: Int {
        if case .partial(let bytes) = state { bytes.readableBytes } else { 0 }
    }

    /// Reads every whole frame of `bytes` (after what an earlier call left unfinished), in
    /// order, handing each to `body`, and keeps the rest for the next call. Throws, after the
    /// frames before it, at the first frame it refuses; from then on every call reads nothing.
    ///
    /// `body` returns false to stop reading (the rest of the bytes are dropped and nothing
    /// more is read): the caller is done with the connection.
    public mutating func read(
        _ bytes: ByteBuffer,
        into body: (WireFrame) -> Bool
    ) throws(Failure) {
        var buffer: ByteBuffer
        if case .failed = state { return }
        if var held = takePartial() {
            // Taken out of the state, so the buffer is unique and grows in place.
            held.discardReadBytes()
            var more = bytes
            held.writeBuffer(&more)
            buffer = held
        } else {
            buffer = bytes
        }
        while true {
            let frame: WireFrame?
            do {
                frame = try Self.frame(from: &buffer, maxFrameBytes: maxFrameBytes)
            } catch {
                state = .failed
                throw error
            }
            guard let frame else { break }
            guard body(frame) else {
                state = .failed
                return
            }
        }
        state = buffer.readableBytes == 0 ? .empty : .partial(buffer)
    }

    /// The bytes of an unfinished frame, moved out of the state (which is left empty).
    private mutating func takePartial() -> ByteBuffer? {
        guard case .partial(let held) = state else { return nil }
        state = .empty
        return held
    }

    /// The first whole frame of `buffer`, consumed; nil (and nothing consumed) when the frame
    /// has not all arrived.
    static func frame(from buffer: inout ByteBuffer, maxFrameBytes: Int) throws(Failure) -> WireFrame? {
        guard let first = buffer.getInteger(at: buffer.readerIndex, as: UInt8.self),
            let second = buffer.getInteger(at: buffer.readerIndex + 1, as: UInt8.self)
        else { return nil }
        let opcode = WebSocketOpcode(encodedWebSocketOpcode: first & 0x0F)!
        let fin = first & 0x80 != 0
        var headerBytes = 2
        var length: UInt64
        switch second & 0x7F {
        case 126:
            guard let extended = buffer.getInteger(at: buffer.readerIndex + 2, as: UInt16.self) else { return nil }
            headerBytes += 2
            length = UInt64(extended)
        case 127:
            guard let extended = buffer.getInteger(at: buffer.readerIndex + 2, as: UInt64.self) else { return nil }
            headerBytes += 8
            guard extended >> 63 == 0 else {
                throw Failure(code: .protocolError, reason: "a frame length with its most significant bit set")
            }
            length = extended
        case let short:
            length = UInt64(short)
        }
        if opcode.isControlOpcode {
            guard fin else { throw Failure(code: .protocolError, reason: "a fragmented control frame") }
            guard length <= 125 else {
                throw Failure(code: .protocolError, reason: "a control frame of more than 125 bytes")
            }
        }
        guard length <= UInt64(maxFrameBytes) else {
            throw Failure(code: .messageTooLarge, reason: "a frame larger than \(maxFrameBytes) bytes")
        }
        var mask: UInt32?
        if second & 0x80 != 0 {
            guard let key = buffer.getInteger(at: buffer.readerIndex + headerBytes, as: UInt32.self) else {
                return nil
            }
            mask = key
            headerBytes += 4
        }
        guard buffer.readableBytes - headerBytes >= Int(length) else { return nil }
        buffer.moveReaderIndex(forwardBy: headerBytes)
        let payload = buffer.readSlice(length: Int(length))!
        return WireFrame(
            fin: fin,
            rsv1: first & 0x40 != 0,
            rsv2: first & 0x20 != 0,
            rsv3: first & 0x10 != 0,
            opcode: opcode,
            mask: mask,
            payload: payload
        )
    }
}
