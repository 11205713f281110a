import Logging
import NIOCore
import NIOWebSocket
import Synchronization

/// Whether a connection is closing: set on the event loop the moment the server decides to
/// close (or sends its close frame), read by the connection's reader before it applies anything.
final class ClosingFlag: Sendable {
    private let value = Atomic<Bool>(false)

    var isSet: Bool { value.load(ordering: .acquiring) }

    func set() { value.store(true, ordering: .releasing) }
}

/// A connection's WebSocket layer below its requests: sits right after NIO's frame decoder and
/// handles, on the event loop, everything of RFC 6455 that is not a message.
///
/// - It fails the connection (close 1002) on frames the client must never send: unmasked
///   (RFC 6455 section 5.1), with a reserved opcode, or with a reserved bit that no extension
///   agreed (section 5.2; RFC 7692 section 6 for RSV1).
/// - It answers pings with pongs, sends the keepalive pings and closes with 4001 a client that
///   leaves one unanswered for a whole interval.
/// - It completes the closing handshake either way. A client's close is answered with a close
///   (1000, or 1002 for a close frame that is malformed or carries a code no endpoint may send)
///   and the socket closed once that is written. A close the server starts (`close(_:reason:)`:
///   a protocol error, 1009, 1007, 1008, 1001, 4001, 4401) goes out after what was written
///   before it; from then on nothing from the client gets through but its own close frame,
///   which closes the socket, and the socket is dropped if that has not come within the close
///   grace period (`ServerConfiguration.closeGracePeriod`).
///
/// Data frames go on to the connection's `RequestReader`.
final class WebSocketGuard: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = WebSocketFrame
    typealias InboundOut = WebSocketFrame
    typealias OutboundOut = WebSocketFrame

    /// Where the connection's closing handshake stands.
    private enum Phase {
        /// No close sent; `awaitingPong` while the last keepalive ping is unanswered.
        case open(awaitingPong: Bool)
        /// The server's close frame has gone out (or is going): nothing more may be sent,
        /// nothing more the client sends is applied, and the socket closes when the client's
        /// close arrives or the grace period ends.
        case closing
    }

    /// What one connection's guard needs to know, fixed at the handshake.
    struct Settings: Sendable {
        /// permessage-deflate was agreed: RSV1 may be set on a message's first frame.
        var allowsRSV1: Bool
        /// Time between keepalive pings, and the time a ping has to be answered.
        var pingInterval: TimeAmount
        /// Time the client has to answer the server's close frame before the socket is dropped.
        var closeGracePeriod: TimeAmount
        /// The largest message accepted (after decompression, across fragments).
        var maxMessageBytes: Int
        var logger: Logger
    }

    /// Close code for a client that did not answer a ping within the ping interval (Protocol.md 1.2).
    static let pingTimeoutCode = WebSocketErrorCode(codeNumber: 4001)

    private let settings: Settings
    private let closing: ClosingFlag
    private var phase = Phase.open(awaitingPong: false)
    private var pings: RepeatedTask?
    private var dropper: Scheduled<Void>?
    /// Set while the handler is in the pipeline, for `close(_:reason:)` (event loop only).
    private var context: ChannelHandlerContext?

    private init(settings: Settings, closing: ClosingFlag) {
        self.settings = settings
        self.closing = closing
    }

    /// Puts the connection's `FrameWriter` next to the frame encoder, a guard after the frame
    /// decoder (last in the pipeline so far) and the connection's `RequestReader` after the guard.
    /// Call on the channel's event loop, right after NIO's upgrade put the frame codec in place.
    static func install(
        on pipeline: ChannelPipeline.SynchronousOperations,
        settings: Settings,
        closing: ClosingFlag
    ) throws -> (webSocket: WebSocketGuard, reader: RequestReader, frames: FrameWriter) {
        let encoder = try pipeline.handler(type: WebSocketFrameEncoder.self)
        let frames = FrameWriter(closing: closing)
        try pipeline.addHandler(frames, position: .before(encoder))
        let webSocketGuard = WebSocketGuard(settings: settings, closing: closing)
        try pipeline.addHandler(webSocketGuard)
        let reader = RequestReader(
            maxMessageBytes: settings.maxMessageBytes,
            compressed: settings.allowsRSV1,
            webSocketGuard: webSocketGuard
        )
        try pipeline.addHandler(reader, position: .after(webSocketGuard))
        return (webSocketGuard, reader, frames)
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        let interval = settings.pingInterval
        let loopBound = NIOLoopBound((handler: self, context: context), eventLoop: context.eventLoop)
        pings = context.eventLoop.scheduleRepeatedTask(initialDelay: interval, delay: interval) { _ in
            loopBound.value.handler.ping(context: loopBound.value.context)
        }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
        stopTimers()
    }

    /// Closes the connection with `code`: the close frame goes out after everything written
    /// before it, nothing more the client sends is applied, and the socket is closed once the
    /// client answers the close or the grace period ends. The first close wins. Event loop only.
    func close(_ code: WebSocketErrorCode, reason: String) {
        guard let context, case .open = phase else { return }
        settings.logger.debug(
            "closing the connection",
            metadata: ["verso.close": "\(code)", "verso.reason": "\(reason)"]
        )
        sendClose(code, reason: reason, context: context)
    }

    func channelInactive(context: ChannelHandlerContext) {
        stopTimers()
        context.fireChannelInactive()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        // The server lets clients half-close: a client that shut its side down sends nothing
        // more, not even a close frame, so the connection ends here.
        if let event = event as? ChannelEvent, event == .inputClosed {
            context.close(promise: nil)
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        guard case .open = phase else {
            // Only the client's close gets through: it completes the closing handshake.
            if frame.opcode == .connectionClose { context.close(promise: nil) }
            return
        }
        if let violation = Self.violation(in: frame, allowsRSV1: settings.allowsRSV1) {
            close(.protocolError, reason: violation)
            return
        }
        switch frame.opcode {
        case .ping:
            // NIO's decoder has refused a fragmented or long control frame (1002).
            let pong = WebSocketFrame(fin: true, opcode: .pong, data: frame.unmaskedData)
            context.writeAndFlush(wrapOutboundOut(pong), promise: nil)
        case .pong:
            phase = .open(awaitingPong: false)
        case .connectionClose:
            answerClose(frame, context: context)
        default:
            context.fireChannelRead(data)
        }
    }

    /// Answers the client's close with a close frame, then closes the socket (the server
    /// closes TCP first, RFC 6455 section 7.1.1).
    private func answerClose(_ frame: WebSocketFrame, context: ChannelHandlerContext) {
        let reply = Self.reply(toClose: frame.unmaskedData)
        startClosing(context: context)
        let channel = context.channel
        context.writeAndFlush(wrapOutboundOut(Self.closeFrame(reply, reason: nil, allocator: channel.allocator)))
            .whenComplete { _ in channel.close(promise: nil) }
    }

    /// The code to answer a client's close frame with: 1000, or 1002 when its payload is one
    /// byte, its reason is not UTF-8, or its code is one no endpoint may send (RFC 6455 section
    /// 7.4: below 3000 and not one RFC 6455 defines for sending, or past 4999).
    static func reply(toClose payload: ByteBuffer) -> WebSocketErrorCode {
        var payload = payload
        if payload.readableBytes == 0 { return .normalClosure }
        guard let code = payload.readWebSocketErrorCode() else { return .protocolError }
        let reasonIsUTF8 = payload.withUnsafeReadableBytes { String(validating: $0, as: UTF8.self) != nil }
        guard reasonIsUTF8 else { return .protocolError }
        if case .unknown(let number) = code, number < 3000 || number > 4999 { return .protocolError }
        return .normalClosure
    }

    /// What is wrong with a frame no client may send, or nil.
    static func violation(in frame: WebSocketFrame, allowsRSV1: Bool) -> String? {
        guard frame.maskKey != nil else { return "frames from a client must be masked (RFC 6455 section 5.1)" }
        let isControl: Bool
        switch frame.opcode {
        case .continuation, .text, .binary: isControl = false
        case .connectionClose, .ping, .pong: isControl = true
        default: return "reserved opcode \(UInt8(webSocketOpcode: frame.opcode))"
        }
        if frame.rsv2 || frame.rsv3 { return "reserved bit RSV\(frame.rsv2 ? 2 : 3) set: no extension uses it" }
        if frame.rsv1 {
            if isControl { return "RSV1 set on a control frame" }
            if !allowsRSV1 { return "RSV1 set without permessage-deflate" }
            if frame.opcode == .continuation { return "RSV1 set on a continuation frame (RFC 7692 section 6.1)" }
        }
        return nil
    }

    /// Sends a ping, or closes with 4001 when the last one got no pong.
    private func ping(context: ChannelHandlerContext) {
        guard case .open(let awaitingPong) = phase, context.channel.isActive else { return }
        if awaitingPong {
            let seconds = Double(settings.pingInterval.nanoseconds) / 1e9
            settings.logger.info(
                "closing a connection that did not answer a ping",
                metadata: ["verso.ping_interval_s": "\(seconds)"]
            )
            sendClose(Self.pingTimeoutCode, reason: "ping timeout: no pong within \(seconds) s", context: context)
            return
        }
        phase = .open(awaitingPong: true)
        var payload = context.channel.allocator.buffer(capacity: 8)
        payload.writeInteger(UInt64.random(in: .min ... .max))
        context.writeAndFlush(wrapOutboundOut(WebSocketFrame(fin: true, opcode: .ping, data: payload)), promise: nil)
    }

    /// Sends a close frame; from then on only the client's close frame is read, and then the
    /// socket closed.
    private func sendClose(_ code: WebSocketErrorCode, reason: String, context: ChannelHandlerContext) {
        startClosing(context: context)
        context.writeAndFlush(
            wrapOutboundOut(Self.closeFrame(code, reason: reason, allocator: context.channel.allocator)),
            promise: nil
        )
    }

    private static func closeFrame(
        _ code: WebSocketErrorCode,
        reason: String?,
        allocator: ByteBufferAllocator
    ) -> WebSocketFrame {
        var data = allocator.buffer(capacity: 2 + (reason?.utf8.count ?? 0))
        data.write(webSocketErrorCode: code)
        if let reason { data.writeString(reason) }
        return WebSocketFrame(fin: true, opcode: .connectionClose, data: data)
    }

    private func startClosing(context: ChannelHandlerContext) {
        phase = .closing
        closing.set()
        pings?.cancel()
        pings = nil
        let channel = context.channel
        let logger = settings.logger
        dropper = context.eventLoop.scheduleTask(in: settings.closeGracePeriod) {
            if channel.isActive { logger.info("dropping a connection whose closing handshake did not complete") }
            channel.close(promise: nil)
        }
    }

    private func stopTimers() {
        pings?.cancel()
        pings = nil
        dropper?.cancel()
        dropper = nil
    }
}
