import CompressNIO
import NIOCore
import NIOWebSocket
import Synchronization

/// Reads one load connection's frames on its event loop: joins fragments, inflates
/// permessage-deflate messages, answers pings and the close handshake, and hands every
/// complete text message to the connection's `WireInbox`.
final class LeanWebSocketHandler: ChannelInboundHandler {
    typealias InboundIn = WebSocketFrame
    typealias OutboundOut = WebSocketFrame

    /// A message whose first frame came without `fin`.
    private struct Partial {
        var data: ByteBuffer
        var isText: Bool
        var isCompressed: Bool
    }

    private let inbox: WireInbox
    private let decompressor: ZlibDecompressor?
    private let resetDecompressor: Bool
    private let maxMessageSize: Int
    private var partial: Partial?

    init(inbox: WireInbox, deflate: DeflateAgreement?, maxMessageSize: Int) throws {
        self.inbox = inbox
        self.decompressor = try deflate.map { _ in try MessageDeflate.makeDecompressor() }
        self.resetDecompressor = deflate?.serverNoContextTakeover ?? false
        self.maxMessageSize = maxMessageSize
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        switch frame.opcode {
        case .text, .binary:
            guard partial == nil else { return fail(context, "the server began a message inside a fragmented one") }
            guard !frame.rsv1 || decompressor != nil else {
                return fail(context, "the server compressed a message without permessage-deflate")
            }
            let started = Partial(data: frame.unmaskedData, isText: frame.opcode == .text, isCompressed: frame.rsv1)
            if frame.fin { complete(started, context: context) } else { partial = started }
        case .continuation:
            guard var message = partial else { return fail(context, "the server continued a message it had not begun") }
            partial = nil  // keeps the buffer unique, so appending does not copy it
            var more = frame.unmaskedData
            message.data.writeBuffer(&more)
            guard message.data.readableBytes <= maxMessageSize else {
                return fail(context, "the server sent a message of more than \(maxMessageSize) bytes")
            }
            if frame.fin { complete(message, context: context) } else { partial = message }
        case .ping:
            let pong = WebSocketFrame(fin: true, opcode: .pong, maskKey: .random(), data: frame.unmaskedData)
            context.writeAndFlush(wrapOutboundOut(pong), promise: nil)
        case .pong:
            break
        case .connectionClose:
            var payload = frame.unmaskedData
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
                var echo = context.channel.allocator.buffer(capacity: 2)
                echo.write(webSocketErrorCode: code ?? .normalClosure)
                let reply = WebSocketFrame(fin: true, opcode: .connectionClose, maskKey: .random(), data: echo)
                context.writeAndFlush(wrapOutboundOut(reply)).assumeIsolated().whenComplete { _ in
                    context.close(promise: nil)
                }
            } else {
                context.close(promise: nil)
            }
        default:
            fail(context, "the server sent a frame with unknown opcode \(frame.opcode)")
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        inbox.finish(LoadError("the connection closed"))
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        inbox.finish(error as? LoadError ?? LoadError("the connection failed: \(error)"))
        context.close(promise: nil)
    }

    private func complete(_ message: Partial, context: ChannelHandlerContext) {
        guard message.isText else { return fail(context, "the server sent a binary message") }
        var data = message.data
        if message.isCompressed, let decompressor {
            do {
                data = try MessageDeflate.decompress(
                    &data,
                    with: decompressor,
                    maxSize: maxMessageSize,
                    reset: resetDecompressor
                )
            } catch {
                return fail(context, "permessage-deflate: could not inflate a message: \(error)")
            }
        }
        inbox.deliver(String(buffer: data))
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
