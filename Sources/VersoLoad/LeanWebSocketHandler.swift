import NIOCore
import NIOWebSocket
import Synchronization
import VersoDeflate
import VersoWebSocket

/// Reads one load connection's frames on its event loop with the server's own frame parser
/// (`WireFrameParser`): joins fragments, inflates permessage-deflate messages, answers pings
/// and the close handshake, and hands every complete text message to the connection's
/// `WireInbox`. Frames the load tool sends are written by `LoadWire` (`WireFrameEncoding`).
final class LeanWebSocketHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    /// A message whose first frame came without `fin`.
    private struct Partial {
        var data: ByteBuffer
        var isText: Bool
        var isCompressed: Bool
    }

    private let inbox: WireInbox
    /// The server's own inflater (VersoDeflate), when permessage-deflate was agreed.
    private let inflater: PerMessageInflater?
    private let maxMessageSize: Int
    private var parser: WireFrameParser
    private var partial: Partial?

    init(inbox: WireInbox, deflate: DeflateAgreement?, maxMessageSize: Int) {
        self.inbox = inbox
        self.inflater = deflate.map { _ in PerMessageInflater(maxMessageBytes: maxMessageSize) }
        self.maxMessageSize = maxMessageSize
        self.parser = WireFrameParser(maxFrameBytes: maxMessageSize)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        do {
            try parser.read(unwrapInboundIn(data)) { frame in handle(frame, context: context) }
        } catch {
            fail(context, "the server sent bytes that are not WebSocket frames: \(error.reason)")
        }
    }

    /// Handles one frame; false once the connection is done.
    private func handle(_ frame: WireFrame, context: ChannelHandlerContext) -> Bool {
        if let violation = frame.violation(from: .server, allowsRSV1: inflater != nil) {
            fail(context, "the server sent a frame it must not: \(violation)")
            return false
        }
        switch frame.opcode {
        case .text, .binary:
            guard partial == nil else {
                fail(context, "the server began a message inside a fragmented one")
                return false
            }
            let started = Partial(data: frame.payload, isText: frame.opcode == .text, isCompressed: frame.rsv1)
            if frame.fin { return complete(started, context: context) }
            partial = started
        case .continuation:
            guard var message = partial else {
                fail(context, "the server continued a message it had not begun")
                return false
            }
            partial = nil  // keeps the buffer unique, so appending does not copy it
            var more = frame.payload
            message.data.writeBuffer(&more)
            guard message.data.readableBytes <= maxMessageSize else {
                fail(context, "the server sent a message of more than \(maxMessageSize) bytes")
                return false
            }
            if frame.fin { return complete(message, context: context) }
            partial = message
        case .ping:
            write(opcode: .pong, payload: frame.payload.readableBytesView, context: context)
        case .pong:
            break
        default:  // .connectionClose: the violation check refused other opcodes
            var payload = frame.payload
            let code = payload.readWebSocketErrorCode()
            let reason = payload.readString(length: payload.readableBytes) ?? ""
            inbox.finish(
                LoadError(
                    "the server closed the connection"
                        + (code.map { " (\($0)\(reason.isEmpty ? "" : ": " + reason))" } ?? "")
                )
            )
            if inbox.startClosing() {
                // The server began the close: answer it with its code, then hang up.
                write(
                    opcode: .connectionClose,
                    payload: WireFrameEncoding.closePayload(code ?? .normalClosure),
                    context: context
                )
                .assumeIsolated().whenComplete { _ in context.close(promise: nil) }
            } else {
                context.close(promise: nil)
            }
            return false
        }
        return true
    }

    /// Writes and flushes one masked control frame.
    @discardableResult
    private func write(
        opcode: WebSocketOpcode,
        payload: some Collection<UInt8>,
        context: ChannelHandlerContext
    ) -> EventLoopFuture<Void> {
        var frame = context.channel.allocator.buffer(
            capacity: WireFrameEncoding.headerBytes(for: payload.count, masked: true) + payload.count
        )
        WireFrameEncoding.appendFrame(opcode: opcode, maskKey: .random(), payload: payload, to: &frame)
        return context.writeAndFlush(wrapOutboundOut(frame))
    }

    func channelInactive(context: ChannelHandlerContext) {
        inbox.finish(LoadError("the connection closed"))
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        inbox.finish(error as? LoadError ?? LoadError("the connection failed: \(error)"))
        context.close(promise: nil)
    }

    /// Hands a whole message to the inbox; false when it fails the connection.
    private func complete(_ message: Partial, context: ChannelHandlerContext) -> Bool {
        guard message.isText else {
            fail(context, "the server sent a binary message")
            return false
        }
        var data = message.data
        if message.isCompressed, let inflater {
            do {
                data = try inflater.inflate(data, compressed: true, fin: true)
            } catch is PerMessageInflater.TooLarge {
                fail(context, "the server sent a message of more than \(maxMessageSize) bytes")
                return false
            } catch {
                fail(context, "permessage-deflate: could not inflate a message: \(error)")
                return false
            }
        }
        inbox.deliver(String(buffer: data))
        return true
    }

    private func fail(_ context: ChannelHandlerContext, _ problem: String) {
        inbox.finish(LoadError(problem))
        context.close(promise: nil)
    }
}

/// Hands complete text messages from a connection's event loop to its one worker task: a
/// locked queue and at most one waiting continuation, so a message costs at most one task wake.
final class WireInbox: Sendable {
    private struct State {
        var messages = CircularBuffer<String>()
        var waiter: CheckedContinuation<String, any Error>?
        /// Why no more messages come; set once.
        var end: (any Error)?
    }

    /// Messages waiting for the worker before the connection counts as stuck.
    static let capacity = 1 << 20

    private let state = Mutex(State())
    private let closing = Atomic<Bool>(false)

    /// Queues a message, or gives it to the waiting worker.
    func deliver(_ message: String) {
        let waiter = state.withLock { state -> CheckedContinuation<String, any Error>? in
            guard state.end == nil else { return nil }
            if let waiter = state.waiter {
                state.waiter = nil
                return waiter
            }
            if state.messages.count >= Self.capacity {
                state.end = LoadError("more than \(Self.capacity) messages arrived that the worker did not read")
                return nil
            }
            state.messages.append(message)
            return nil
        }
        waiter?.resume(returning: message)
    }

    /// Ends the inbox: queued messages are still read, then `next` throws `error`.
    func finish(_ error: any Error) {
        let waiter = state.withLock { state -> CheckedContinuation<String, any Error>? in
            guard state.end == nil else { return nil }
            state.end = error
            defer { state.waiter = nil }
            return state.waiter
        }
        waiter?.resume(throwing: error)
    }

    /// True for the first caller only: that side sends the close frame.
    func startClosing() -> Bool {
        !closing.exchange(true, ordering: .acquiringAndReleasing)
    }

    /// Whether `finish` was called.
    var isFinished: Bool { state.withLock { $0.end != nil } }

    /// The next message; throws once the inbox is finished and empty, or when cancelled.
    func next() async throws -> String {
        if let ready = state.withLock({ Self.take(&$0) }) { return try ready.get() }
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<String, any Error>) in
                let ready = state.withLock { state -> Result<String, any Error>? in
                    if let ready = Self.take(&state) { return ready }
                    state.waiter = continuation
                    return nil
                }
                if let ready { continuation.resume(with: ready) }
            }
        } onCancel: {
            finish(CancellationError())
        }
    }

    private static func take(_ state: inout State) -> Result<String, any Error>? {
        if let message = state.messages.popFirst() { return .success(message) }
        if let end = state.end { return .failure(end) }
        return nil
    }
}
