import CompressNIO
import FuzzSupport
import NIOCore
import VersoDeflate

// PerMessageInflater (permessage-deflate, RFC 7692, as the server inflates client messages) over
// the pooled zlib streams, and PerMessageDeflate.compress (what the server sends).
//
// Input: data frames, each one flags byte, one length byte and that many payload bytes (the
// last frame takes what is left), payloads as the server's reader hands them over (unmasked).
// Flags: bit 0 FIN, bit 1 RSV1 (read on a message's first frame only, as the server's reader
// does: its WebSocketGuard refuses RSV1 elsewhere).
//
// Invariants:
// - the frames go through one inflater as one connection's frames would, until the first error,
//   which is only ever `TooLarge` (the 1009 close) or zlib's `corruptData`; a message that was
//   not compressed passes through untouched; an inflated payload is never larger than the limit;
// - the whole input, compressed as the server compresses (window 9-15 bits) and cut into
//   fragments, inflates back to exactly the input;
// - the same message as one frame inflates when the limit is exactly its size, and is refused
//   with `TooLarge` when the limit is one byte smaller;
// - a stream given back to the pool after a corrupt or cut-off message inflates the next
//   message correctly (the round trip above takes its stream from the pool the first part used).

private let maxMessageBytes = 4096
private let allocator = ByteBufferAllocator()

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
        let fin = flags & 1 != 0
        let payload = allocator.buffer(bytes: UnsafeBufferPointer(rebasing: input[payloadStart..<payloadEnd]))
        if !inMessage { compressedMessage = flags & 2 != 0 }
        let output: ByteBuffer
        do {
            output = try inflater.inflate(payload, compressed: !inMessage && compressedMessage, fin: fin)
        } catch is PerMessageInflater.TooLarge {
            invariant(compressedMessage, "an uncompressed frame was refused as too long")
            return
        } catch let error as CompressNIOError where error == .corruptData {
            invariant(compressedMessage, "an uncompressed frame was refused as corrupt")
            return
        } catch {
            fatalError("invariant broken: inflating a frame threw \(error)")
        }
        inMessage = !fin
        guard compressedMessage else {
            invariant(output == payload, "a frame that is not compressed was changed")
            continue
        }
        invariant(
            output.readableBytes <= maxMessageBytes,
            "inflated \(output.readableBytes) bytes past the \(maxMessageBytes)-byte limit"
        )
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
    for (position, fragment) in fragments.enumerated() {
        do {
            let output = try inflater.inflate(
                allocator.buffer(bytes: fragment),
                compressed: position == 0,
                fin: position == fragments.count - 1
            )
            inflated += Array(output.readableBytesView)
        } catch {
            fatalError(
                "invariant broken: a message the server compressed (\(message.count) bytes, window \(windowBits)) failed to inflate: \(error)"
            )
        }
    }
    invariant(inflated == message, "round trip gave \(inflated.count) bytes for \(message.count)")

    // The limit is the largest message accepted: exactly at it passes, one byte over does not.
    guard !message.isEmpty else { return }
    do {
        let exact = try PerMessageInflater(maxMessageBytes: message.count).inflate(
            compressed,
            compressed: true,
            fin: true
        )
        invariant(Array(exact.readableBytesView) == message, "a message exactly at the limit inflated to other bytes")
    } catch {
        fatalError(
            "invariant broken: a \(message.count)-byte message was refused by a \(message.count)-byte limit: \(error)"
        )
    }
    let tight = PerMessageInflater(maxMessageBytes: message.count - 1)
    do {
        _ = try tight.inflate(compressed, compressed: true, fin: true)
        fatalError("invariant broken: a \(message.count)-byte message passed a \(message.count - 1)-byte limit")
    } catch is PerMessageInflater.TooLarge {
        // As it should be.
    } catch {
        fatalError("invariant broken: a message past the limit threw \(error), not TooLarge")
    }
}
