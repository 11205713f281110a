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

/// Sits right after the WebSocket frame decoder and holds the RFC 6455 rules the WebSocket
/// layer above it does not: once the server has sent its close frame (for any reason: a
/// protocol error, 1009, 1007, 1008, 1001, a ping timeout), nothing more from the client gets
/// through but its own close frame, and the socket is dropped if the closing handshake has not
/// completed within the close grace period (`ServerConfiguration.closeGracePeriod`).
///
/// It fails the connection itself (close 1002) on frames the client must never send: unmasked
/// (RFC 6455 section 5.1), with a reserved opcode, or with a reserved bit that no extension
/// agreed (section 5.2; RFC 7692 section 6 for RSV1). It also sends the keepalive pings and
/// closes with 4001 a client that leaves one unanswered for a whole interval.
final class WebSocketGuard: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = WebSocketFrame
    typealias InboundOut = WebSocketFrame
    typealias OutboundIn = WebSocketFrame
    typealias OutboundOut = WebSocketFrame

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
    /// A close frame has gone out: nothing more may be sent, nothing more is applied.
    private var closeSent = false
    /// The close was sent here, unknown to the WebSocket layer above.
    private var failedHere = false
    private var awaitingPong = false
    private var pings: RepeatedTask?
    private var dropper: Scheduled<Void>?
    /// Set while the handler is in the pipeline, for `failConnection` (event loop only).
    private var context: ChannelHandlerContext?

    private init(settings: Settings, closing: ClosingFlag) {
        self.settings = settings
        self.closing = closing
    }

    /// Puts a guard right after the WebSocket frame decoder, the connection's `RequestReader`
    /// right after the guard and its `FrameWriter` next to the encoder, unless they are there
    /// already or the channel has not been upgraded. Call on the channel's event loop.
    static func installIfNeeded(
        on pipeline: ChannelPipeline.SynchronousOperations,
        settings: Settings,
        closing: ClosingFlag
    ) throws {
        try FrameWriter.installIfNeeded(on: pipeline, closing: closing)
        if (try? pipeline.handler(type: WebSocketGuard.self)) != nil { return }
        guard let decoder = try? pipeline.handler(type: ByteToMessageHandler<WebSocketFrameDecoder>.self) else {
            return
        }
        let webSocketGuard = WebSocketGuard(settings: settings, closing: closing)
        try pipeline.addHandler(webSocketGuard, position: .after(decoder))
        let reader = RequestReader(
            maxMessageBytes: settings.maxMessageBytes,
            compressed: settings.allowsRSV1,
            webSocketGuard: webSocketGuard
        )
        try pipeline.addHandler(reader, position: .after(webSocketGuard))
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

    /// Fails the connection with `code` for a message the layer above found wrong (1007, 1009,
    /// 1002): the close frame goes out, nothing more the client sends is applied, and the socket
    /// is closed once the client answers the close or the grace period ends. Event loop only.
    func failConnection(code: WebSocketErrorCode, reason: String) {
        guard let context, !closeSent else { return }
        settings.logger.debug("failing the connection", metadata: ["verso.reason": "\(reason)"])
        fail(context: context, code: code, reason: reason)
    }

    func channelInactive(context: ChannelHandlerContext) {
        stopTimers()
        context.fireChannelInactive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        if closeSent {
            // Only the client's close gets through, to complete the closing handshake.
            guard frame.opcode == .connectionClose else { return }
            if failedHere {
                context.close(promise: nil)
            } else {
                context.fireChannelRead(data)
            }
            return
        }
        if let violation = Self.violation(in: frame, allowsRSV1: settings.allowsRSV1) {
            settings.logger.debug("failing the connection", metadata: ["verso.reason": "\(violation)"])
            fail(context: context, code: .protocolError, reason: violation)
            return
        }
        if frame.opcode == .pong { awaitingPong = false }
        context.fireChannelRead(data)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        guard !closeSent else {
            // RFC 6455 section 5.5.1: no frame after a close.
            promise?.fail(ChannelError.ioOnClosedChannel)
            return
        }
        if unwrapOutboundIn(data).opcode == .connectionClose { startClosing(context: context) }
        context.write(data, promise: promise)
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
        guard !closeSent, context.channel.isActive else { return }
        if awaitingPong {
            let seconds = Double(settings.pingInterval.nanoseconds) / 1e9
            settings.logger.info(
                "closing a connection that did not answer a ping",
                metadata: ["verso.ping_interval_s": "\(seconds)"]
            )
            fail(context: context, code: Self.pingTimeoutCode, reason: "ping timeout: no pong within \(seconds) s")
            return
        }
        awaitingPong = true
        var payload = context.channel.allocator.buffer(capacity: 8)
        payload.writeInteger(UInt64.random(in: .min ... .max))
        context.writeAndFlush(wrapOutboundOut(WebSocketFrame(fin: true, opcode: .ping, data: payload)), promise: nil)
    }

    /// Sends a close frame the WebSocket layer does not know of; from then on only the client's
    /// close frame is read, and then the socket closed.
    private func fail(context: ChannelHandlerContext, code: WebSocketErrorCode, reason: String) {
        var data = context.channel.allocator.buffer(capacity: 2 + reason.utf8.count)
        data.write(webSocketErrorCode: code)
        data.writeString(reason)
        failedHere = true
        startClosing(context: context)
        context.writeAndFlush(
            wrapOutboundOut(WebSocketFrame(fin: true, opcode: .connectionClose, data: data)),
            promise: nil
        )
    }

    private func startClosing(context: ChannelHandlerContext) {
        closeSent = true
        closing.set()
        pings?.cancel()
        pings = nil
        let channel = context.channel
        let logger = settings.logger
        dropper = context.eventLoop.scheduleTask(in: settings.closeGracePeriod) {
            if channel.isActive { logger.debug("dropping a connection whose closing handshake did not complete") }
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

/// Installs the `WebSocketGuard` before the first byte after the upgrade is decoded.
///
/// Added when the upgrade is accepted, it lands between the HTTP upgrade handler and the frame
/// decoder NIO adds next, so the bytes the client sent along with its handshake (replayed by
/// the upgrade handler once the upgrade completes) pass it first; it then puts the guard in
/// place, passes the bytes on and removes itself.
final class WebSocketGuardInstaller: ChannelInboundHandler, RemovableChannelHandler {
    /// Never unwrapped: the data is passed on as it comes.
    typealias InboundIn = ByteBuffer

    private let settings: WebSocketGuard.Settings
    private let closing: ClosingFlag

    init(settings: WebSocketGuard.Settings, closing: ClosingFlag) {
        self.settings = settings
        self.closing = closing
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        do {
            try WebSocketGuard.installIfNeeded(
                on: context.pipeline.syncOperations,
                settings: settings,
                closing: closing
            )
        } catch {
            settings.logger.warning(
                "could not install the WebSocket guard; closing",
                metadata: ["verso.error": "\(error)"]
            )
            context.close(promise: nil)
            return
        }
        context.fireChannelRead(data)
        context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
    }
}
