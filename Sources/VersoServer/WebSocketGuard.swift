import Logging
import NIOCore
import NIOWebSocket
import Synchronization
import VersoWebSocket

/// Whether a connection is closing: set on the event loop the moment the server decides to
/// close (or sends its close frame), read by the connection's reader before it applies anything.
final class ClosingFlag: Sendable {
    private let value = Atomic<Bool>(false)

    var isSet: Bool { value.load(ordering: .acquiring) }

    func set() { value.store(true, ordering: .releasing) }
}

/// A connection's WebSocket layer below its requests, the one handler its bytes pass through
/// once upgraded: it cuts them into frames (`WireFrameParser`, no copy of a payload) and handles,
/// on the event loop, everything of RFC 6455 that is not a message.
///
/// - It fails the connection on frames the client must never send: too large (close 1009, as
///   soon as the header shows it), a fragmented or long control frame, unmasked (RFC 6455
///   section 5.1), with a reserved opcode, or with a reserved bit that no extension agreed
///   (section 5.2; RFC 7692 section 6 for RSV1) (1002).
/// - It answers pings with pongs, sends the keepalive pings and closes with 4001 a client that
///   leaves one unanswered for a whole interval.
/// - It completes the closing handshake either way. A client's close is answered with a close
///   (1000, or 1002 for a close frame that is malformed or carries a code no endpoint may send)
///   and the socket closed once that is written. A close the server starts (`close(_:reason:)`:
///   a protocol error, 1009, 1007, 1008, 1001, 4001, 4401) goes out after what was written
///   before it; from then on nothing from the client gets through but its own close frame,
///   which closes the socket, and the socket is dropped if that has not come within the close
///   grace period (`ServerConfiguration.closeGracePeriod`). When the bytes cannot be cut into
///   frames any more, the socket is closed as soon as the close frame is written.
/// - It reads the socket only while the connection's `RequestReader` has room for more
///   messages (`RequestReader.backlogLimit`).
///
/// Data frames go to the connection's `RequestReader` by a plain call.
final class WebSocketGuard: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    /// Outbound bytes pass through as they come (the `FrameWriter`'s and this handler's own
    /// frames); only `read` is looked at.
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

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
        /// The largest message accepted (after decompression, across fragments), and the largest
        /// frame.
        var maxMessageBytes: Int
        var logger: Logger
    }

    /// Close code for a client that did not answer a ping within the ping interval (Protocol.md 1.2).
    static let pingTimeoutCode = WebSocketErrorCode(codeNumber: 4001)

    private let settings: Settings
    private let closing: ClosingFlag
    private var parser: WireFrameParser
    /// Set at `install`; the connection's messages go there.
    private var reader: RequestReader!
    private var phase = Phase.open(awaitingPong: false)
    /// A `read` held back while the reader had no room.
    private var readWithheld = false
    private var pings: RepeatedTask?
    private var dropper: Scheduled<Void>?
    /// Set while the handler is in the pipeline, for `close(_:reason:)` (event loop only).
    private var context: ChannelHandlerContext?

    private init(settings: Settings, closing: ClosingFlag) {
        self.settings = settings
        self.closing = closing
        self.parser = WireFrameParser(maxFrameBytes: settings.maxMessageBytes)
    }

    /// Puts the connection's `FrameWriter` and then its guard (with the connection's
    /// `RequestReader` behind it) at the end of the pipeline. Call on the channel's event loop
    /// right after the upgrade, before any byte of the connection is read.
    static func install(
        on pipeline: ChannelPipeline.SynchronousOperations,
        settings: Settings,
        closing: ClosingFlag
    ) throws -> (webSocket: WebSocketGuard, reader: RequestReader, frames: FrameWriter) {
        let frames = FrameWriter(closing: closing)
        try pipeline.addHandler(frames)
        let webSocketGuard = WebSocketGuard(settings: settings, closing: closing)
        let reader = RequestReader(
            maxMessageBytes: settings.maxMessageBytes,
            compressed: settings.allowsRSV1,
            webSocketGuard: webSocketGuard
        )
        webSocketGuard.reader = reader
        try pipeline.addHandler(webSocketGuard)
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
        reader.end()
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
        reader.end()
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

    func read(context: ChannelHandlerContext) {
        if reader.backlog >= RequestReader.backlogLimit {
            readWithheld = true
        } else {
            context.read()
        }
    }

    /// Reads the socket again if a read was held back and the reader has room again (after
    /// the connection handled a queued message).
    func resumeReadingIfRoom() {
        guard readWithheld, reader.backlog < RequestReader.backlogLimit, let context else { return }
        readWithheld = false
        context.read()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        do {
            try parser.read(unwrapInboundIn(data)) { frame in handle(frame, context: context) }
        } catch {
            // The rest of the bytes cannot be cut into frames, so the client's close could not
            // be read either: the socket closes once the close frame is written.
            guard case .open = phase else {
                context.close(promise: nil)
                return
            }
            close(error.code, reason: error.reason)
            closeWhenWritten(context: context)
        }
    }

    /// Handles one frame; false once nothing more of the connection is to be read.
    private func handle(_ frame: WireFrame, context: ChannelHandlerContext) -> Bool {
        guard case .open = phase else {
            // Only the client's close gets through: it completes the closing handshake.
            if frame.opcode == .connectionClose {
                context.close(promise: nil)
                return false
            }
            return true
        }
        if let violation = frame.violation(from: .client, allowsRSV1: settings.allowsRSV1) {
            close(.protocolError, reason: violation)
            return true
        }
        switch frame.opcode {
        case .ping:
            writeFrame(opcode: .pong, payload: frame.unmaskedPayload.readableBytesView, context: context)
        case .pong:
            phase = .open(awaitingPong: false)
        case .connectionClose:
            answerClose(frame.unmaskedPayload, context: context)
            return false
        default:
            do {
                try reader.receive(frame)
            } catch {
                close(error.code, reason: error.reason)
            }
        }
        return true
    }

    /// Answers the client's close with a close frame, then closes the socket (the server
    /// closes TCP first, RFC 6455 section 7.1.1).
    private func answerClose(_ payload: ByteBuffer, context: ChannelHandlerContext) {
        let reply = Self.reply(toClose: payload)
        startClosing(context: context)
        writeFrame(opcode: .connectionClose, payload: WireFrameEncoding.closePayload(reply), context: context)
        closeWhenWritten(context: context)
    }

    /// Closes the socket once what was written before has gone out.
    private func closeWhenWritten(context: ChannelHandlerContext) {
        let channel = context.channel
        context.writeAndFlush(wrapOutboundOut(channel.allocator.buffer(capacity: 0)))
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
        let number = UInt64.random(in: .min ... .max)
        writeFrame(
            opcode: .ping,
            payload: (0..<8).map { UInt8(truncatingIfNeeded: number >> ($0 * 8)) },
            context: context
        )
    }

    /// Sends a close frame; from then on only the client's close frame is read, and then the
    /// socket closed.
    private func sendClose(_ code: WebSocketErrorCode, reason: String, context: ChannelHandlerContext) {
        startClosing(context: context)
        writeFrame(
            opcode: .connectionClose,
            payload: WireFrameEncoding.closePayload(code, reason: reason),
            context: context
        )
    }

    /// Writes and flushes one control frame of the server's own.
    private func writeFrame(opcode: WebSocketOpcode, payload: some Collection<UInt8>, context: ChannelHandlerContext) {
        var frame = context.channel.allocator.buffer(
            capacity: WireFrameEncoding.headerBytes(for: payload.count) + payload.count
        )
        WireFrameEncoding.appendFrame(opcode: opcode, payload: payload, to: &frame)
        context.writeAndFlush(wrapOutboundOut(frame), promise: nil)
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
