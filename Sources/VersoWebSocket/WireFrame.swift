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
    /// The masking key; nil for an unmasked frame.
    public var maskKey: WebSocketMaskingKey?
    /// The payload as sent: masked with `maskKey` when there is one.
    public var payload: ByteBuffer

    public init(
        fin: Bool,
        rsv1: Bool = false,
        rsv2: Bool = false,
        rsv3: Bool = false,
        opcode: WebSocketOpcode,
        maskKey: WebSocketMaskingKey?,
        payload: ByteBuffer
    ) {
        self.fin = fin
        self.rsv1 = rsv1
        self.rsv2 = rsv2
        self.rsv3 = rsv3
        self.opcode = opcode
        self.maskKey = maskKey
        self.payload = payload
    }

    /// Whether the frame is a close, ping or pong.
    public var isControl: Bool { opcode.isControlOpcode }

    /// The payload unmasked: the payload itself when the frame is not masked, else a copy.
    public var unmaskedPayload: ByteBuffer {
        guard let maskKey else { return payload }
        var copy = payload
        copy.webSocketUnmask(maskKey)
        return copy
    }

    /// Calls `body` with the payload unmasked, on the stack for a masked frame (no heap copy).
    public func withUnmaskedPayload<Result, Failure: Error>(
        _ body: (UnsafeBufferPointer<UInt8>) throws(Failure) -> Result
    ) throws(Failure) -> Result {
        let count = payload.readableBytes
        guard let key = maskKey else {
            // `withUnsafeReadableBytes` rethrows untyped errors; keep the typed one through a Result.
            let result = payload.withUnsafeReadableBytes { raw in
                Swift.Result { () throws(Failure) -> Result in try body(raw.assumingMemoryBound(to: UInt8.self)) }
            }
            return try result.get()
        }
        let result = withUnsafeTemporaryAllocation(of: UInt8.self, capacity: max(count, 1)) { unmasked in
            payload.withUnsafeReadableBytes { masked in
                for index in 0..<count { unmasked[index] = masked[index] ^ key[index & 3] }
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
        switch (sender, maskKey) {
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
