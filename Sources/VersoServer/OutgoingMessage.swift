import NIOCore
import VersoCore

/// One message an `Outbox` holds for its client: its bytes, or an update encoded once for all
/// subscribers and stamped with this subscriber's id only when its frame is written.
enum OutgoingMessage {
    case bytes([UInt8])
    case update(EncodedUpdate, sub: Int64)

    /// The message's length in bytes.
    var count: Int {
        switch self {
        case .bytes(let bytes): bytes.count
        case .update(let update, let sub): update.byteCount(sub: sub)
        }
    }

    /// The message's bytes, built for an update (to compress it).
    var contiguousBytes: [UInt8] {
        switch self {
        case .bytes(let bytes): bytes
        case .update(let update, let sub): update.message(sub: sub)
        }
    }

    /// Writes the message into `buffer` (after its frame header).
    func write(to buffer: inout ByteBuffer) {
        switch self {
        case .bytes(let bytes):
            buffer.writeBytes(bytes)
        case .update(let update, let sub):
            buffer.writeBytes(update.head)
            // A small string (ids up to 15 digits are stored inline): no heap allocation.
            buffer.writeString(String(sub))
            buffer.writeBytes(update.tail)
        }
    }
}
