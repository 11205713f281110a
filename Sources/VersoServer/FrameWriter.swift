import NIOCore
import NIOWebSocket

/// Writes a connection's outgoing messages as finished WebSocket frames, straight into one
/// buffer per flush, below NIO's frame encoder.
///
/// Going through the encoder costs, per message, a `WebSocketFrame` (a class instance), its
/// payload buffer, a separate buffer for the header, a boxed pipeline value and a pass through
/// every outbound handler above. The outbox instead hands all it has queued to this handler
/// once per event-loop pass: each message's header and payload are copied into one buffer,
/// written and flushed once. Frames the WebSocket layer sends itself (pongs, close frames) still
/// come through the encoder and pass this handler on their way, in the order they were written.
///
/// Sits right next to the frame encoder on the socket's side, so TLS and everything else below
/// see the bytes as before. Used on the channel's event loop only.
final class FrameWriter: ChannelOutboundHandler, RemovableChannelHandler {
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let closing: ClosingFlag
    private var context: ChannelHandlerContext?

    init(closing: ClosingFlag) {
        self.closing = closing
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
    }

    /// What became of frames handed to `write`.
    enum Outcome {
        /// The socket took every byte (and every byte written before).
        case written
        /// Some bytes wait for the socket: the future completes once they are written, and
        /// fails if the connection ends first.
        case pending(EventLoopFuture<Void>)
        /// Nothing was written: the server's close frame has gone out, or the handler is gone.
        case refused
        /// The connection ended while writing.
        case failed
    }

    /// Writes `frames` (encoded by `FrameWriter.append`) and flushes, unless the server's close
    /// frame has gone out (RFC 6455 section 5.5.1: no frame after it) or the handler is gone.
    ///
    /// No promise is made for a write the socket takes at once, the usual case: only when bytes
    /// stay buffered is an empty write added behind them, whose promise completes once they
    /// are written (a channel completes its writes in order).
    func write(_ frames: ByteBuffer) -> Outcome {
        guard let context, !closing.isSet else { return .refused }
        context.writeAndFlush(wrapOutboundOut(frames), promise: nil)
        let channel = context.channel
        guard channel.isActive else { return .failed }
        if let buffered = try? channel.syncOptions?.getOption(.bufferedWritableBytes), buffered == 0 {
            return .written
        }
        let written = context.eventLoop.makePromise(of: Void.self)
        context.writeAndFlush(wrapOutboundOut(channel.allocator.buffer(capacity: 0)), promise: written)
        return .pending(written.futureResult)
    }

    /// Appends one unfragmented, unmasked text frame carrying `payload` to `buffer` (RFC 6455
    /// section 5.2), with RSV1 set when the payload is compressed (RFC 7692 section 6).
    static func append(text payload: some Collection<UInt8>, compressed: Bool, to buffer: inout ByteBuffer) {
        appendHeader(payloadBytes: payload.count, compressed: compressed, to: &buffer)
        buffer.writeBytes(payload)
    }

    /// Appends the header of an unfragmented, unmasked text frame whose payload of
    /// `payloadBytes` the caller writes next.
    static func appendHeader(payloadBytes count: Int, compressed: Bool, to buffer: inout ByteBuffer) {
        buffer.writeInteger(compressed ? 0xC1 : 0x81 as UInt8)
        if count < 126 {
            buffer.writeInteger(UInt8(count))
        } else if count <= Int(UInt16.max) {
            buffer.writeInteger(126 as UInt8)
            buffer.writeInteger(UInt16(count))
        } else {
            buffer.writeInteger(127 as UInt8)
            buffer.writeInteger(UInt64(count))
        }
    }

    /// The most bytes the header of a frame carrying `payloadBytes` takes.
    static func headerBytes(for payloadBytes: Int) -> Int {
        payloadBytes < 126 ? 2 : payloadBytes <= Int(UInt16.max) ? 4 : 10
    }
}
