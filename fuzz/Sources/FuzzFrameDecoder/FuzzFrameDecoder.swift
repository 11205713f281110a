import FuzzSupport
import NIOCore
import NIOEmbedded
import NIOWebSocket
import VersoWebSocket

// VersoWebSocket's WireFrameParser, which reads every byte a client sends once the server has
// upgraded the connection (and every byte the server sends to verso-load), fed read by read as
// the server's WebSocketGuard feeds it; checked against NIOWebSocket's WebSocketFrameDecoder.
//
// Input: one byte that picks how the rest is cut into reads (1-16 bytes each, or one read),
// then the bytes on the wire.
//
// Invariants:
// - the frames and the failure do not depend on how the bytes are cut into reads;
// - no frame's payload is larger than maxFrameBytes; control frames are final and carry at most
//   125 bytes; a failure is 1009 (too large) or 1002, and nothing is read after it;
// - NIO's decoder reads the same bytes into the same frames (flags, opcode, mask, unmasked
//   payload) and fails where the parser fails;
// - each frame, written again with WireFrameEncoding (with its mask), reads back to the same
//   frame, and the encoding is no longer than the bytes it was read from.

private let maxFrameBytes = 1000

/// A frame, comparable: its payload unmasked.
private struct Seen: Equatable {
    var fin, rsv1, rsv2, rsv3: Bool
    var opcode: WebSocketOpcode
    var maskKey: WebSocketMaskingKey?
    var payload: [UInt8]

    init(_ frame: WireFrame) {
        (fin, rsv1, rsv2, rsv3) = (frame.fin, frame.rsv1, frame.rsv2, frame.rsv3)
        (opcode, maskKey) = (frame.opcode, frame.maskKey)
        payload = Array(frame.unmaskedPayload.readableBytesView)
    }

    init(_ frame: WebSocketFrame) {
        (fin, rsv1, rsv2, rsv3) = (frame.fin, frame.rsv1, frame.rsv2, frame.rsv3)
        (opcode, maskKey) = (frame.opcode, frame.maskKey)
        payload = Array(frame.unmaskedData.readableBytesView)
    }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzFrameDecoder(_ start: UnsafeRawPointer, _ count: Int) -> CInt {
    let input = fuzzInput(start, count)
    guard let selector = input.first else { return 0 }
    let wire = Array(input.dropFirst())

    let whole = parse([wire])
    let readSize = Int(selector % 17)
    if readSize > 0 {
        var reads: [[UInt8]] = []
        var offset = 0
        while offset < wire.count {
            reads.append(Array(wire[offset..<min(offset + readSize, wire.count)]))
            offset += readSize
        }
        let pieces = parse(reads)
        invariant(pieces.frames == whole.frames, "frames differ when the bytes arrive \(readSize) at a time")
        invariant(
            pieces.failure == whole.failure,
            "failure \(String(describing: pieces.failure)) in \(readSize)-byte reads, \(String(describing: whole.failure)) in one"
        )
    }

    let nio = decodeWithNIO(wire)
    invariant(
        nio.frames == whole.frames,
        "NIO's decoder read \(nio.frames.count) frames, the parser \(whole.frames.count)"
    )
    invariant(nio.failed == (whole.failure != nil), "NIO's decoder and the parser disagree on whether the bytes fail")

    var reencoded = ByteBuffer()
    for frame in whole.frames {
        invariant(
            frame.payload.count <= maxFrameBytes,
            "a \(frame.payload.count)-byte frame passed the \(maxFrameBytes)-byte limit"
        )
        if frame.opcode.isControlOpcode {
            invariant(frame.fin, "a fragmented control frame was read")
            invariant(frame.payload.count <= 125, "a control frame of \(frame.payload.count) bytes was read")
        }
        WireFrameEncoding.appendFrame(
            fin: frame.fin,
            rsv1: frame.rsv1,
            opcode: frame.opcode,
            maskKey: frame.maskKey,
            payload: frame.payload,
            to: &reencoded
        )
        // appendFrame writes no RSV2 or RSV3; set them as read.
        if frame.rsv2 || frame.rsv3 {
            let index =
                reencoded.writerIndex
                - WireFrameEncoding.headerBytes(for: frame.payload.count, masked: frame.maskKey != nil)
                - frame.payload.count
            let first = reencoded.getInteger(at: index, as: UInt8.self)!
            reencoded.setInteger(first | (frame.rsv2 ? 0x20 : 0) | (frame.rsv3 ? 0x10 : 0), at: index)
        }
    }
    invariant(
        reencoded.readableBytes <= wire.count,
        "re-encoding \(whole.frames.count) frames took \(reencoded.readableBytes) bytes, the wire had \(wire.count)"
    )
    let again = parse([Array(reencoded.readableBytesView)])
    invariant(again.failure == nil, "re-encoded frames failed to read: \(String(describing: again.failure))")
    invariant(again.frames == whole.frames, "re-encoded frames read as other frames")
    return 0
}

/// Feeds `reads` one after another to one parser, and collects the frames up to the failure.
private func parse(_ reads: [[UInt8]]) -> (frames: [Seen], failure: WireFrameParser.Failure?) {
    var parser = WireFrameParser(maxFrameBytes: maxFrameBytes)
    var frames: [Seen] = []
    var failure: WireFrameParser.Failure?
    for read in reads {
        do {
            try parser.read(ByteBuffer(bytes: read)) { frame in
                frames.append(Seen(frame))
                return true
            }
        } catch {
            invariant(failure == nil, "the parser failed twice")
            invariant(
                error.code == .messageTooLarge || error.code == .protocolError,
                "the parser failed with \(error.code)"
            )
            failure = error
        }
    }
    return (frames, failure)
}

/// The frames NIO's decoder reads from `wire` in one read, and whether it failed.
private func decodeWithNIO(_ wire: [UInt8]) -> (frames: [Seen], failed: Bool) {
    let channel = EmbeddedChannel(handler: ByteToMessageHandler(WebSocketFrameDecoder(maxFrameSize: maxFrameBytes)))
    var failed = false
    do {
        try channel.writeInbound(channel.allocator.buffer(bytes: wire))
    } catch {
        failed = true
    }
    var frames: [Seen] = []
    while let frame = try? channel.readInbound(as: WebSocketFrame.self) {
        frames.append(Seen(frame))
    }
    _ = try? channel.finish()
    return (frames, failed)
}
