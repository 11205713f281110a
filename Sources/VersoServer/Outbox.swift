import Logging
import NIOCore
import NIOWebSocket
import Synchronization
import VersoEngine
import WSCore

/// A connection's outgoing messages, written straight to its channel on the channel's event loop.
///
/// `send` never blocks, so the engine's writer can fan out to any number of connections: it
/// queues the message and, unless a write is already on its way, asks the event loop (through
/// its `LoopFlushQueue`) to write everything queued in one batch with one flush. No writer task
/// waits per connection, and a message costs one lock and, at most, a share of one event-loop hop.
///
/// A client that lets more than `maxQueuedBytes` pile up (queued here or handed to the socket
/// and not yet written) is disconnected with close code 1008 rather than allowed to grow the
/// server's memory without bound.
final class Outbox: MessageSink {
    private struct State {
        var queue: [[UInt8]] = []
        var queuedBytes = 0
        /// Bytes handed to the channel whose write has not completed.
        var writingBytes = 0
        /// An event-loop task that will write the queue is pending.
        var flushPending = false
        var close: (code: WebSocketErrorCode, reason: String)?
        var closeStarted = false
        /// The connection stopped reading requests: nothing more will be queued.
        var finished = false
        /// A write failed: the channel is gone, and so is anything still queued.
        var failed = false
        var drainWaiters: [CheckedContinuation<Void, Never>] = []

        var isDrained: Bool { failed || (queue.isEmpty && writingBytes == 0) }
    }

    /// How long a connection asked to close may take to accept the close frame before its
    /// socket is dropped (a client that stopped reading never will).
    static let closeGracePeriod = TimeAmount.seconds(2)

    private let state = Mutex(State())
    private let channel: any Channel
    private let outbound: WebSocketOutboundWriter
    private let compression: PerMessageDeflate.Agreement?
    private let maxQueuedBytes: Int
    private let logger: Logger
    private let flushQueue: LoopFlushQueue

    /// - Parameter compression: what permessage-deflate agreed for this connection, if anything.
    init(channel: any Channel, outbound: WebSocketOutboundWriter, compression: PerMessageDeflate.Agreement?, maxQueuedBytes: Int, logger: Logger) {
        self.channel = channel
        self.outbound = outbound
        self.compression = compression
        self.maxQueuedBytes = maxQueuedBytes
        self.logger = logger
        self.flushQueue = LoopFlushQueue.of(channel.eventLoop)
    }

    func send(_ message: [UInt8]) {
        let schedule = state.withLock { state -> Bool in
            guard state.close == nil, !state.finished, !state.failed else { return false }
            state.queue.append(message)
            state.queuedBytes += message.count
            if state.queuedBytes + state.writingBytes > maxQueuedBytes {
                state.queue = []
                state.queuedBytes = 0
                state.close = (.policyViolation, "client too slow: more than \(maxQueuedBytes) bytes queued")
            }
            return Self.claimFlush(&state)
        }
        if schedule { scheduleFlush() }
    }

    /// Whether a close was asked for (for a slow client, or shutdown).
    var isClosing: Bool { state.withLock { $0.close != nil } }

    /// Asks for what is queued to be sent, then the WebSocket closed with `code`. The first
    /// close asked for wins.
    func requestClose(_ code: WebSocketErrorCode, reason: String) {
        let schedule = state.withLock { state -> Bool in
            guard state.close == nil, !state.failed else { return false }
            state.close = (code, reason)
            return Self.claimFlush(&state)
        }
        if schedule { scheduleFlush() }
    }

    /// Stops taking messages and waits until those queued are written (or the channel is gone).
    /// A client that does not read them within `closeGracePeriod` has its socket dropped.
    func finishAndDrain() async {
        let drained = state.withLock { state -> Bool in
            state.finished = true
            return state.isDrained
        }
        if drained { return }
        let channel = channel
        let dropper = channel.eventLoop.scheduleTask(in: Self.closeGracePeriod) { channel.close(promise: nil) }
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let resumeNow = state.withLock { state -> Bool in
                if state.isDrained { return true }
                state.drainWaiters.append(continuation)
                return false
            }
            if resumeNow { continuation.resume() }
        }
        dropper.cancel()
    }

    /// Marks a flush as pending; true when the caller must schedule it.
    private static func claimFlush(_ state: inout State) -> Bool {
        guard !state.flushPending else { return false }
        state.flushPending = true
        return true
    }

    private func scheduleFlush() {
        flushQueue.add(self)
    }

    /// On the event loop: writes everything queued with one flush, then starts the close if
    /// one is asked for.
    func flushOnLoop() {
        let (messages, bytes, close) = state.withLock { state -> ([[UInt8]], Int, (code: WebSocketErrorCode, reason: String)?) in
            state.flushPending = false
            let messages = state.queue
            let bytes = state.queuedBytes
            state.queue = []
            state.queuedBytes = 0
            state.writingBytes += bytes
            var close: (code: WebSocketErrorCode, reason: String)?
            if let asked = state.close, !state.closeStarted {
                state.closeStarted = true
                close = asked
            }
            return (messages, bytes, close)
        }
        if !messages.isEmpty {
            let written = channel.eventLoop.makePromise(of: Void.self)
            for (index, message) in messages.enumerated() {
                channel.write(frame(for: message), promise: index == messages.count - 1 ? written : nil)
            }
            channel.flush()
            written.futureResult.whenComplete { result in
                if case .failure = result { self.logger.debug("could not write to the connection") }
                self.wrote(bytes, failed: (try? result.get()) == nil)
            }
        }
        if let close { startClose(close.code, reason: close.reason) }
    }

    private func wrote(_ bytes: Int, failed: Bool) {
        let waiters = state.withLock { state -> [CheckedContinuation<Void, Never>] in
            state.writingBytes -= bytes
            if failed {
                state.failed = true
                state.queue = []
                state.queuedBytes = 0
            }
            guard state.isDrained else { return [] }
            defer { state.drainWaiters = [] }
            return state.drainWaiters
        }
        for waiter in waiters { waiter.resume() }
    }

    /// Sends the close frame after the messages already written, and drops the socket if the
    /// client has not completed the closing handshake within `closeGracePeriod`.
    private func startClose(_ code: WebSocketErrorCode, reason: String) {
        logger.debug("closing connection", metadata: ["verso.close": "\(code)", "verso.reason": "\(reason)"])
        let outbound = outbound
        let channel = channel
        let logger = logger
        Task {
            do {
                try await outbound.close(code, reason: reason)
            } catch {
                logger.debug("could not send the close frame", metadata: ["verso.error": "\(error)"])
            }
        }
        channel.eventLoop.scheduleTask(in: Self.closeGracePeriod) {
            if channel.isActive { logger.info("dropping a connection that did not take its close frame") }
            channel.close(promise: nil)
        }
    }

    /// One text frame holding `message`, compressed when that was agreed and worth it.
    private func frame(for message: [UInt8]) -> WebSocketFrame {
        if let compression, message.count >= PerMessageDeflate.minimumCompressedBytes {
            do {
                let payload = try PerMessageDeflate.compress(message, windowBits: compression.serverWindowBits, allocator: channel.allocator)
                return WebSocketFrame(fin: true, rsv1: true, opcode: .text, data: payload)
            } catch {
                logger.warning("could not compress a message; sending it uncompressed", metadata: ["verso.error": "\(error)"])
            }
        }
        var buffer = channel.allocator.buffer(capacity: message.count)
        buffer.writeBytes(message)
        return WebSocketFrame(fin: true, opcode: .text, data: buffer)
    }
}
