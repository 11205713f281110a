import NIOCore

/// Writes a connection's outgoing messages as finished WebSocket frames, straight into one
/// buffer per flush.
///
/// The outbox hands all it has queued to this handler once per event-loop pass: each message's
/// header and payload are written into one buffer (`WireFrameEncoding`), written and flushed
/// once. Frames the `WebSocketGuard` sends itself (pongs, pings, close frames) pass this handler
/// on their way to the socket, in the order they were written.
///
/// Sits right before the guard, on the socket's side, so TLS and everything else below see
/// the bytes as before. Used on the channel's event loop only.
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
}
