import Foundation
import Logging
import NIOCore
import VersoCore

/// The first handler of every connection, on raw bytes: bounds what a connection may cost
/// before it is a WebSocket.
///
/// - A connection must upgrade to WebSocket within `timeout` of being accepted; after that it
///   is closed, with `408 Request Timeout` if part of a request was read. (Plain HTTP requests,
///   `GET /healthz` and the page, are answered well within it; their connection then closes.)
/// - A request head (request line and headers) larger than `maxHeadBytes` is answered
///   `431 Request Header Fields Too Large`.
/// - An upgrade request with a `Sec-WebSocket-Version` other than 13 is answered `426 Upgrade
///   Required` with `Sec-WebSocket-Version: 13`, one without a valid `Sec-WebSocket-Key` `400`
///   (RFC 6455 section 4.2.1), rather than dropped without an answer.
/// - It also sends the `403` the origin check decides on the parsed request
///   (`refuse(_:on:)`, from `VersoServer`'s upgrade decision; see `OriginPolicy`).
///
/// Every refusal closes the connection: the response is sent, the sending side shut, and the
/// socket closed when the client closes its side or after `Limits.closeGracePeriod`.
/// Once the `101 Switching Protocols` goes out, the handler leaves the pipeline.
final class HandshakeGuard: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    typealias OutboundIn = IOData
    typealias OutboundOut = IOData

    struct Limits: Sendable {
        var timeout: TimeAmount
        var maxHeadBytes: Int
        /// Time a refused client has to close its side after the answer before the socket is closed.
        var closeGracePeriod: TimeAmount
    }

    /// An HTTP answer that ends the connection.
    struct Refusal: Sendable {
        var status: Int
        var reason: String
        var code: ErrorCode
        var message: String
        var extraHeaders: [(String, String)] = []

        /// The whole response: status line, headers and a JSON `error` body (Protocol.md section 6).
        var bytes: [UInt8] {
            let body = Replies.error(rid: nil, RequestError(code, message))
            var head =
                "HTTP/1.1 \(status) \(reason)\r\nContent-Type: application/json\r\nContent-Length: \(body.count)\r\nConnection: close\r\n"
            for (name, value) in extraHeaders { head += "\(name): \(value)\r\n" }
            return Array((head + "\r\n").utf8) + body
        }
    }

    private enum Phase {
        /// Reading a request head; `head` holds what was read of it.
        case readingHead
        /// The head is complete; the request is being answered.
        case answering
        case upgraded
        /// A refusal was sent: input is discarded until the socket closes.
        case refused
    }

    private let limits: Limits
    private let logger: Logger
    private var phase = Phase.readingHead
    private var head: [UInt8] = []
    private var deadline: Scheduled<Void>?
    private var linger: Scheduled<Void>?
    /// Refuse at once (the connection limit is reached) instead of reading a request.
    private let refuseAtOnce: Refusal?

    init(limits: Limits, logger: Logger, refuseAtOnce: Refusal? = nil) {
        self.limits = limits
        self.logger = logger
        self.refuseAtOnce = refuseAtOnce
    }

    func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive { start(context: context) }
    }

    func channelActive(context: ChannelHandlerContext) {
        start(context: context)
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        deadline?.cancel()
        linger?.cancel()
        context.fireChannelInactive()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case .refused = phase, let event = event as? ChannelEvent, event == .inputClosed {
            context.close(promise: nil)
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    private func start(context: ChannelHandlerContext) {
        guard deadline == nil, linger == nil else { return }
        if let refuseAtOnce {
            refuse(context: context, refuseAtOnce)
            return
        }
        let loopBound = NIOLoopBound((handler: self, context: context), eventLoop: context.eventLoop)
        deadline = context.eventLoop.scheduleTask(in: limits.timeout) {
            loopBound.value.handler.timedOut(context: loopBound.value.context)
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch phase {
        case .upgraded, .answering:
            context.fireChannelRead(data)
        case .refused:
            break
        case .readingHead:
            let buffer = unwrapInboundIn(data)
            let searchFrom = max(0, head.count - 3)
            let room = limits.maxHeadBytes + 4 - head.count
            head += buffer.readableBytesView.prefix(room)
            guard let end = Self.endOfHead(head, from: searchFrom) else {
                if head.count > limits.maxHeadBytes {
                    refuse(context: context, headTooLarge)
                    return
                }
                context.fireChannelRead(data)
                return
            }
            if end > limits.maxHeadBytes {
                refuse(context: context, headTooLarge)
                return
            }
            if let refusal = Self.upgradeRefusal(head: head[..<end]) {
                refuse(context: context, refusal)
                return
            }
            head = []
            phase = .answering
            context.fireChannelRead(data)
        }
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        guard case .answering = phase else {
            context.write(data, promise: promise)
            return
        }
        guard case .byteBuffer(let buffer) = unwrapOutboundIn(data),
            buffer.readableBytesView.starts(with: Self.switchingProtocols)
        else {
            // A response to a plain request: the next bytes start a new request.
            phase = .readingHead
            context.write(data, promise: promise)
            return
        }
        phase = .upgraded
        deadline?.cancel()
        deadline = nil
        context.write(data, promise: promise)
        // From here on it would only pass every frame through: it leaves the pipeline, so the
        // messages of a WebSocket do not pay a pass through it each way.
        context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
    }

    private var headTooLarge: Refusal {
        Refusal(
            status: 431,
            reason: "Request Header Fields Too Large",
            code: .tooLarge,
            message: "the request line and headers are larger than \(limits.maxHeadBytes) bytes"
        )
    }

    private static let switchingProtocols = Array("HTTP/1.1 101".utf8)

    /// The index just past the blank line ending a request head, searching from `start`.
    static func endOfHead(_ bytes: [UInt8], from start: Int) -> Int? {
        guard bytes.count >= 4 else { return nil }
        var index = start
        while index + 3 < bytes.count {
            if bytes[index] == 13, bytes[index + 1] == 10, bytes[index + 2] == 13, bytes[index + 3] == 10 {
                return index + 4
            }
            index += 1
        }
        return nil
    }

    /// The answer to a WebSocket upgrade request RFC 6455 section 4.2.1 does not allow, or nil
    /// (also for any request that is not an upgrade).
    static func upgradeRefusal(head: ArraySlice<UInt8>) -> Refusal? {
        var headers: [String: String] = [:]
        for line in String(decoding: head, as: UTF8.self).split(separator: "\r\n").dropFirst() {
            guard let colon = line.firstIndex(of: ":") else { continue }
            let name = line[..<colon].trimmingCharacters(in: .whitespaces).lowercased()
            let value = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
            headers[name] = headers[name].map { "\($0),\(value)" } ?? value
        }
        let upgrade =
            headers["upgrade"]?.lowercased().split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) } ?? []
        guard upgrade.contains("websocket") else { return nil }
        guard headers["sec-websocket-version"] == "13" else {
            return Refusal(
                status: 426,
                reason: "Upgrade Required",
                code: .badRequest,
                message: "this server speaks WebSocket version 13: send Sec-WebSocket-Version: 13",
                extraHeaders: [("Sec-WebSocket-Version", "13")]
            )
        }
        guard let key = headers["sec-websocket-key"], Data(base64Encoded: key)?.count == 16 else {
            return Refusal(
                status: 400,
                reason: "Bad Request",
                code: .badRequest,
                message:
                    "a WebSocket handshake needs a Sec-WebSocket-Key of 16 random bytes in base64 (RFC 6455 section 4.1)"
            )
        }
        return nil
    }

    private func timedOut(context: ChannelHandlerContext) {
        deadline = nil
        switch phase {
        case .upgraded, .refused:
            return
        case .readingHead where !head.isEmpty:
            logger.debug("closing a connection that did not complete its request in time")
            refuse(
                context: context,
                Refusal(
                    status: 408,
                    reason: "Request Timeout",
                    code: .badRequest,
                    message: "the request was not complete within \(Double(limits.timeout.nanoseconds) / 1e9) s"
                )
            )
        case .readingHead, .answering:
            logger.debug("closing a connection that did not upgrade to WebSocket in time")
            context.close(promise: nil)
        }
    }

    /// Answers the request being handled on `pipeline`'s channel with `refusal`, from the guard
    /// at the head of the pipeline (below the HTTP codec, so the bytes go out as they are), and
    /// ends the connection as every refusal does. For a refusal decided above the guard, on a
    /// parsed request: the `403` of `OriginPolicy`. Whatever the handlers above then write
    /// fails, the sending side being shut; a close they ask for ends the socket at once.
    static func refuse(_ refusal: Refusal, on pipeline: ChannelPipeline.SynchronousOperations) throws {
        let context = try pipeline.context(handlerType: HandshakeGuard.self)
        let handler = try pipeline.handler(type: HandshakeGuard.self)
        handler.refuse(context: context, refusal)
    }

    /// Sends `refusal`, shuts the sending side, and closes the socket once the client closes
    /// its side (so the answer is not lost to a reset) or after the grace period.
    private func refuse(context: ChannelHandlerContext, _ refusal: Refusal) {
        phase = .refused
        head = []
        deadline?.cancel()
        deadline = nil
        let buffer = context.channel.allocator.buffer(bytes: refusal.bytes)
        context.writeAndFlush(wrapOutboundOut(.byteBuffer(buffer)), promise: nil)
        context.close(mode: .output, promise: nil)
        let channel = context.channel
        linger = context.eventLoop.scheduleTask(in: limits.closeGracePeriod) { channel.close(promise: nil) }
    }
}
