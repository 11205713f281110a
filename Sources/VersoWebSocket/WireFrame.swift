import NIOCore
import NIOWebSocket

/// One WebSocket frame as it came off the wire (RFC 6455 section 5.2), its payload still
/// masked when the sender masked it. Made by `WireFrameParser`; the payload is a slice of the
/// bytes read, not a copy.
public struct WireFrame {
    public var fin: Bool
    public var rsv1: Bool
    public var rsv2: Bool
    public var rsv3: Bool
    public var opcode: WebSocketOpcode
    /// The masking key, its four bytes in wire order read as a big-endian integer; nil for an
    /// unmasked frame. (Not NIO's `WebSocketMaskingKey`: its initializer is generic and not
    /// inlinable, and costs four heap allocations per frame when called from here.)
    public var mask: UInt32?
    /// The payload as sent: masked with `mask` when there is one.
    public var payload: ByteBuffer

    public init(
        fin: Bool,
        rsv1: Bool = false,
        rsv2: Bool = false,
        rsv3: Bool = false,
        opcode: WebSocketOpcode,
        mask: UInt32?,
        payload: ByteBuffer
    ) {
        self.fin = fin
        self.rsv1 = rsv1
        self.rsv2 = rsv2
        self.rsv3 = rsv3
        self.opcode = opcode
        self.mask = mask
        self.payload = payload
    }

    /// The masking key as NIO's type; nil for an unmasked frame.
    public var maskKey: WebSocketMaskingKey? {
        mask.map { mask in withUnsafeBytes(of: mask.bigEndian) { WebSocketMaskingKey($0)! } }
    }

    /// Whether the frame is a close, ping or pong.
    public var isControl: Bool { opcode.isControlOpcode }

    /// The payload unmasked: the payload itself when the frame is not masked, else a copy.
    public var unmaskedPayload: ByteBuffer {
        guard let mask else { return payload }
        var copy = ByteBuffer()
        copy.writeWithUnsafeMutableBytes(minimumWritableBytes: payload.readableBytes) { target in
            payload.withUnsafeReadableBytes { source in
                WireMask(mask).apply(from: source, to: target)
                return source.count
            }
        }
        return copy
    }

    /// Calls `body` with the payload unmasked, on the stack for a masked frame (no heap copy).
    /// Inlinable, so that it is specialized for its caller's result and error types.
    @inlinable
    public func withUnmaskedPayload<Result, Failure: Error>(
        _ body: (UnsafeBufferPointer<UInt8>) throws(Failure) -> Result
    ) throws(Failure) -> Result {
        let count = payload.readableBytes
        guard let mask else {
            // `withUnsafeReadableBytes` rethrows untyped errors; keep the typed one through a Result.
            let result = payload.withUnsafeReadableBytes { raw in
                Swift.Result { () throws(Failure) -> Result in try body(raw.assumingMemoryBound(to: UInt8.self)) }
            }
            return try result.get()
        }
        let result = withUnsafeTemporaryAllocation(of: UInt8.self, capacity: max(count, 1)) { unmasked in
            payload.withUnsafeReadableBytes { masked in
                WireMask(mask).apply(from: masked, to: UnsafeMutableRawBufferPointer(unmasked))
            }
            return Swift.Result { () throws(Failure) -> Result in
                try body(UnsafeBufferPointer(rebasing: unmasked[..<count]))
            }
        }
        return try result.get()
    }

    /// Who sent a frame, for the rules on masking.
    public enum Sender: Sendable {
        /// A client: every frame must be masked (RFC 6455 section 5.1).
        case client
        /// A server: no frame may be masked.
        case server
    }

    /// What is wrong with a frame that no endpoint may send, or nil: a frame masked against
    /// `sender`'s rule, a reserved opcode, or a reserved bit no extension agreed (RFC 6455
    /// section 5.2; RFC 7692 section 6 for RSV1, which `allowsRSV1` allows on a data message's
    /// first frame once permessage-deflate is agreed).
    public func violation(from sender: Sender, allowsRSV1: Bool) -> String? {
        switch (sender, mask) {
        case (.client, nil): return "frames from a client must be masked (RFC 6455 section 5.1)"
        case (.server, .some): return "frames from a server must not be masked (RFC 6455 section 5.1)"
        default: break
        }
        switch opcode {
        case .continuation, .text, .binary, .connectionClose, .ping, .pong: break
        default: return "reserved opcode \(UInt8(webSocketOpcode: opcode))"
        }
        if rsv2 || rsv3 { return "reserved bit RSV\(rsv2 ? 2 : 3) set: no extension uses it" }
        if rsv1 {
            if isControl { return "RSV1 set on a control frame" }
            if !allowsRSV1 { return "RSV1 set without permessage-deflate" }
            if opcode == .continuation { return "RSV1 set on a continuation frame (RFC 7692 section 6.1)" }
        }
        return nil
    }
}

/// A masking key applied eight bytes at a time (RFC 6455 section 5.3: byte i is XORed with byte
/// i mod 4 of the key).
@usableFromInline
struct WireMask {
    /// The key's four bytes twice, in memory order, read as one word.
    @usableFromInline
    let word: UInt64

    /// A key given as its four bytes in wire order read as a big-endian integer.
    @inlinable
    init(_ mask: UInt32) {
        word = withUnsafeBytes(of: (mask.bigEndian, mask.bigEndian)) { $0.loadUnaligned(as: UInt64.self) }
    }

    @inlinable
    init(_ key: WebSocketMaskingKey) {
        self.init(Self.integer(key))
    }

    /// `key`'s four bytes in wire order read as a big-endian integer (through its concrete
    /// subscript: its generic `Collection` accessors cost a heap allocation per byte).
    @inlinable
    static func integer(_ key: WebSocketMaskingKey) -> UInt32 {
        UInt32(key[0]) << 24 | UInt32(key[1]) << 16 | UInt32(key[2]) << 8 | UInt32(key[3])
    }

    /// Writes `source` masked (or unmasked: the same XOR) into `target`, which must hold as
    /// many bytes; the key starts at `source`'s first byte.
    @inlinable
    func apply(from source: UnsafeRawBufferPointer, to target: UnsafeMutableRawBufferPointer) {
        precondition(target.count >= source.count)
        var offset = 0
        while offset + 8 <= source.count {
            let masked = source.loadUnaligned(fromByteOffset: offset, as: UInt64.self) ^ word
            target.storeBytes(of: masked, toByteOffset: offset, as: UInt64.self)
            offset += 8
        }
        withUnsafeBytes(of: word) { key in
            while offset < source.count {
                target[offset] = source[offset] ^ key[offset & 7]
                offset += 1
            }
        }
    }
}
