import CompressNIO
import FuzzSupport
import NIOCore
import NIOWebSocket
import VersoDeflate

// PerMessageInflater (permessage-deflate, RFC 7692, as the server inflates client messages) over
// the pooled zlib streams, and PerMessageDeflate.compress (what the server sends).
//
// Input: frames, each one flags byte, one length byte and that many payload bytes (the last
// frame takes what is left). Flags: bit 0 FIN, bit 1 RSV1, bits 2-3 the opcode (continuation,
// text, binary, ping), bit 4 masked (with a fixed key, so the payload bytes are sent masked).
//
// Invariants:
// - the frames go through one inflater as one connection's frames would, until the first error,
//   which is only ever `invalidFrameLength` (the 1009 close) or zlib's `corruptData`; control
//   frames and messages that were not compressed pass through untouched; an inflated frame keeps
//   its opcode and FIN, loses RSV1 and the mask, and is never larger than the limit;
// - the whole input, compressed as the server compresses (window 9-15 bits) and cut into
//   fragments with a ping in the middle, inflates back to exactly the input;
// - the same message as one frame inflates when the limit is exactly its size, and is refused
//   with `invalidFrameLength` when the limit is one byte smaller;
// - a stream given back to the pool after a corrupt or cut-off message inflates the next
//   message correctly (the round trip above takes its stream from the pool the first part used).

private let maxMessageBytes = 4096
private let allocator = ByteBufferAllocator()
private let maskKey: WebSocketMaskingKey = [0x37, 0xFA, 0x21, 0x3D]

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzInflate(_ start: UnsafeRawPointer, _ count: Int) -> CInt {
    let input = fuzzInput(start, count)
    inflateFrames(input)
    roundTrip(Array(input))
    return 0
}

/// Splits the input into frames and inflates them in order through one connection's inflater.
private func inflateFrames(_ input: UnsafeBufferPointer<UInt8>) {
    let inflater = PerMessageInflater(maxMessageBytes: maxMessageBytes)
    var index = 0
    var compressedMessage = false
    var inMessage = false
    while index < input.count {
        let flags = input[index]
        let length = index + 1 < input.count ? Int(input[index + 1]) : 0
        let payloadStart = min(index + 2, input.count)
        let payloadEnd = min(payloadStart + length, input.count)
        index = payloadEnd
        let opcode: WebSocketOpcode = [.continuation, .text, .binary, .ping][Int(flags >> 2) & 3]
        var frame = WebSocketFrame(
            fin: flags & 1 != 0,
            rsv1: flags & 2 != 0,
            opcode: opcode,
            maskKey: flags & 16 != 0 ? maskKey : nil,
            data: allocator.buffer(bytes: UnsafeBufferPointer(rebasing: input[payloadStart..<payloadEnd]))
        )
        if opcode == .ping { frame.fin = true }
        let isData = opcode != .ping
        if isData && !inMessage { compressedMessage = frame.rsv1 }
        let output: WebSocketFrame
        do {
            output = try inflater.inflate(frame)
        } catch let error as NIOWebSocketError where error == .invalidFrameLength {
            invariant(compressedMessage, "an uncompressed frame was refused as too long")
            return
        } catch let error as CompressNIOError where error == .corruptData {
            invariant(compressedMessage, "an uncompressed frame was refused as corrupt")
            return
        } catch {
            fatalError("invariant broken: inflating a frame threw \(error)")
        }
        guard isData, compressedMessage else {
            invariant(output == frame, "a frame that is not compressed was changed")
            if isData { inMessage = !frame.fin }
            continue
        }
        invariant(output.opcode == frame.opcode && output.fin == frame.fin, "inflating changed the opcode or FIN")
        invariant(!output.rsv1 && output.maskKey == nil, "an inflated frame kept RSV1 or its mask")
        invariant(
            output.data.readableBytes <= maxMessageBytes,
            "inflated \(output.data.readableBytes) bytes past the \(maxMessageBytes)-byte limit"
        )
        inMessage = !frame.fin
    }
}

/// Compresses `message` as the server does, sends it back in fragments, and checks it inflates
/// to itself; then checks the size limit on the whole message in one frame.
private func roundTrip(_ message: [UInt8]) {
    let windowBits = Int32(9 + message.count % 7)
    let compressed: ByteBuffer
    do {
        compressed = try PerMessageDeflate.compress(message, windowBits: windowBits, allocator: allocator)
    } catch {
        fatalError("invariant broken: compressing \(message.count) bytes threw \(error)")
    }
    let payload = Array(compressed.readableBytesView)

    // Fragment lengths come from the message itself, so they vary with the input.
    var fragments: [[UInt8]] = []
    var offset = 0
    var step = 0
    while offset < payload.count {
        let length = message.isEmpty ? payload.count : 1 + Int(message[step % message.count]) % 97
        fragments.append(Array(payload[offset..<min(offset + length, payload.count)]))
        offset += length
        step += 1
    }
    if fragments.isEmpty { fragments = [[]] }

    let inflater = PerMessageInflater(maxMessageBytes: maxMessageBytes)
    var inflated: [UInt8] = []
    let ping = WebSocketFrame(fin: true, opcode: .ping, data: allocator.buffer(bytes: [1, 2, 3]))
    for (position, fragment) in fragments.enumerated() {
        let frame = WebSocketFrame(
            fin: position == fragments.count - 1,
            rsv1: position == 0,
            opcode: position == 0 ? .binary : .continuation,
            maskKey: maskKey,
            data: masked(fragment)
        )
        do {
            inflated += Array(try inflater.inflate(frame).data.readableBytesView)
            if position == fragments.count / 2 {
                let pinged = try inflater.inflate(ping)
                invariant(pinged == ping, "a ping between fragments was changed")
            }
        } catch {
            fatalError(
                "invariant broken: a message the server compressed (\(message.count) bytes, window \(windowBits)) failed to inflate: \(error)"
            )
        }
    }
    invariant(inflated == message, "round trip gave \(inflated.count) bytes for \(message.count)")

    // The limit is the largest message accepted: exactly at it passes, one byte over does not.
    guard !message.isEmpty else { return }
    let whole = WebSocketFrame(fin: true, rsv1: true, opcode: .text, data: compressed)
    do {
        let exact = try PerMessageInflater(maxMessageBytes: message.count).inflate(whole)
        invariant(
            Array(exact.data.readableBytesView) == message,
            "a message exactly at the limit inflated to other bytes"
        )
    } catch {
        fatalError(
            "invariant broken: a \(message.count)-byte message was refused by a \(message.count)-byte limit: \(error)"
        )
    }
    let tight = PerMessageInflater(maxMessageBytes: message.count - 1)
    do {
        _ = try tight.inflate(whole)
        fatalError("invariant broken: a \(message.count)-byte message passed a \(message.count - 1)-byte limit")
    } catch let error as NIOWebSocketError where error == .invalidFrameLength {
        // As it should be.
    } catch {
        fatalError("invariant broken: a message past the limit threw \(error), not invalidFrameLength")
    }
}

/// `bytes` masked with `maskKey`, as a client sends them.
private func masked(_ bytes: [UInt8]) -> ByteBuffer {
    var buffer = allocator.buffer(bytes: bytes)
    buffer.webSocketMask(maskKey)
    return buffer
}
