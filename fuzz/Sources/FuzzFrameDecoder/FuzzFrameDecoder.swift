import FuzzSupport
import NIOCore
import NIOEmbedded
import NIOWebSocket

// NIOWebSocket's WebSocketFrameDecoder, which decodes every byte a client sends once the server
// has upgraded the connection (NIO's upgrader installs it with the server's maxFrameSize), fed
// through a channel pipeline as the server feeds it.
//
// Input: one byte that picks how the rest is cut into reads (1-16 bytes each, or one read),
// then the bytes on the wire.
//
// Invariants:
// - the frames and the error do not depend on how the bytes are cut into reads;
// - no decoded frame's payload is larger than maxFrameSize; control frames are final and carry
//   at most 125 bytes; decoding stops at the first error, which is one of NIOWebSocket's;
// - each decoded frame, encoded again with WebSocketFrameEncoder (with its mask), decodes to the
//   same frame, and the encoding is no longer than the bytes it was decoded from.

private let maxFrameSize = 1000

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzFrameDecoder(_ start: UnsafeRawPointer, _ count: Int) -> CInt {
    let input = fuzzInput(start, count)
    guard let selector = input.first else { return 0 }
    let wire = Array(input.dropFirst())

    let whole = decode([wire])
    let readSize = Int(selector % 17)
    if readSize > 0 {
        var reads: [[UInt8]] = []
        var offset = 0
        while offset < wire.count {
            reads.append(Array(wire[offset..<min(offset + readSize, wire.count)]))
            offset += readSize
        }
        let pieces = decode(reads)
        invariant(pieces.frames == whole.frames, "frames differ when the bytes arrive \(readSize) at a time")
        invariant(
            pieces.error == whole.error,
            "error \(pieces.error ?? "none") in \(readSize)-byte reads, \(whole.error ?? "none") in one"
        )
    }

    let encoder = EmbeddedChannel(handler: WebSocketFrameEncoder())
    defer { _ = try? encoder.finish() }
    var reencoded: [UInt8] = []
    for frame in whole.frames {
        invariant(
            frame.data.readableBytes <= maxFrameSize,
            "a \(frame.data.readableBytes)-byte frame passed the \(maxFrameSize)-byte limit"
        )
        if frame.opcode.isControlOpcode {
            invariant(frame.fin, "a fragmented control frame was decoded")
            invariant(
                frame.data.readableBytes <= 125,
                "a control frame of \(frame.data.readableBytes) bytes was decoded"
            )
        }
        reencoded += encode(frame, through: encoder)
    }
    invariant(
        reencoded.count <= wire.count,
        "re-encoding \(whole.frames.count) frames took \(reencoded.count) bytes, the wire had \(wire.count)"
    )
    let again = decode([reencoded])
    invariant(again.error == nil, "re-encoded frames failed to decode: \(again.error ?? "")")
    invariant(again.frames == whole.frames, "re-encoded frames decode to other frames")
    return 0
}

/// Feeds `reads` one after another to a decoder the way the server's pipeline does, and
/// collects the frames up to the first error.
private func decode(_ reads: [[UInt8]]) -> (frames: [WebSocketFrame], error: String?) {
    let channel = EmbeddedChannel(handler: ByteToMessageHandler(WebSocketFrameDecoder(maxFrameSize: maxFrameSize)))
    var frames: [WebSocketFrame] = []
    var failure: String?
    for read in reads {
        do {
            try channel.writeInbound(channel.allocator.buffer(bytes: read))
        } catch let error as NIOWebSocketError {
            failure = "\(error)"
        } catch {
            fatalError("invariant broken: the decoder threw \(error), not a NIOWebSocketError")
        }
        while let frame = try? channel.readInbound(as: WebSocketFrame.self) {
            frames.append(frame)
        }
        if failure != nil { break }
    }
    // Bytes of an unfinished frame are left over when the connection closes: not an error here.
    _ = try? channel.finish()
    return (frames, failure)
}

/// The bytes WebSocketFrameEncoder writes for a decoded `frame`.
///
/// A decoded frame holds its payload as it came, masked; the encoder applies the mask itself, so
/// it is given the unmasked payload with the same key.
private func encode(_ frame: WebSocketFrame, through channel: EmbeddedChannel) -> [UInt8] {
    let outgoing = WebSocketFrame(
        fin: frame.fin,
        rsv1: frame.rsv1,
        rsv2: frame.rsv2,
        rsv3: frame.rsv3,
        opcode: frame.opcode,
        maskKey: frame.maskKey,
        data: frame.unmaskedData
    )
    do {
        try channel.writeOutbound(outgoing)
    } catch {
        fatalError("invariant broken: encoding a decoded frame threw \(error)")
    }
    var bytes: [UInt8] = []
    while let buffer = try? channel.readOutbound(as: ByteBuffer.self) {
        bytes += buffer.readableBytesView
    }
    return bytes
}
