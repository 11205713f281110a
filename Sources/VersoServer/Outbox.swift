import Logging
import NIOCore
import NIOWebSocket
import Synchronization
import VersoCore
import VersoDeflate
import VersoEngine
import VersoWebSocket

/// A connection's outgoing messages, written straight to its channel on the channel's event loop.
///
/// `send` never blocks, so the engine's writer can fan out to any number of connections: it
/// queues the message and, unless a write is already on its way, asks the event loop (through
/// its `LoopFlushQueue`) to write everything queued in one batch with one flush. No writer task
/// waits per connection, and a message costs one lock and, at most, a share of one event-loop hop.
///
/// A client that lets more than `maxQueuedBytes` pile up unread (queued here, held for a
/// subscription whose starting records are still being sent, or handed to the socket and not yet
/// written), not counting the first message it has not taken yet, is disconnected with close
/// code 1008 rather than allowed to grow the server's memory without bound. Answers of any size
/// (a subscription's starting records, a `list` page) go out through `send(paced:totalBytes:)`,
/// which queues them only as the client reads them, so they never count against that limit.
///
/// Every byte the outbox holds for its client is also counted in the `ConnectionRegistry`'s
/// total, which closes the outboxes holding the most when the server's total passes its limit.
final class Outbox: MessageSink {
    /// Where an outbox is in its life. Messages are taken only while `open`; `finished` may
    /// still become `closing` (a shutdown), and any phase `failed`.
    private enum Phase {
        case open
        /// The connection stopped reading requests: what is queued is still written, nothing
        /// more is taken.
        case finished
        /// A close was asked for: what is queued goes out, then the close frame with `code`;
        /// `frameStarted` once a flush has begun sending it.
        case closing(code: WebSocketErrorCode, reason: String, frameStarted: Bool)
        /// A write failed: the channel is gone, and so is anything that was queued.
        case failed
    }

    private struct State {
        var phase = Phase.open
        var queue: [OutgoingMessage] = []
        var queuedBytes = 0
        /// Bytes handed to the channel whose write has not completed.
        var writingBytes = 0
        /// The batches handed to the channel and not yet written, oldest first: their bytes and
        /// the size of their first message.
        var batches = CircularBuffer<(bytes: Int, first: Int)>()
        /// Updates held per subscription lane until its starting records are queued.
        var held: [Int: [OutgoingMessage]] = [:]
        var heldBytes = 0
        var nextLane = 0
        /// Bytes of an answer read from the store and not yet queued (`send(paced:)`).
        var pendingBytes = 0
        /// What this outbox has counted in the registry's total, and how much of that as closing.
        var counted = 0
        var countedClosing = 0
        /// The connection has ended: it no longer counts towards the server's total (whatever
        /// the phase; the registry's bookkeeping, not the outbox's life).
        var detached = false
        /// An event-loop task that will write the queue is pending.
        var flushPending = false
        var drainWaiters: [CheckedContinuation<Void, Never>] = []
        /// `send(paced:)` waiting for room: the size of its next message and its continuation.
        var roomWaiter: (bytes: Int, window: Int, continuation: CheckedContinuation<Bool, Never>)?

        var takesMessages: Bool {
            if case .open = phase { true } else { false }
        }
        var closeAsked: Bool {
            if case .closing = phase { true } else { false }
        }
        var hasFailed: Bool {
            if case .failed = phase { true } else { false }
        }
        var isDrained: Bool { hasFailed || (queue.isEmpty && writingBytes == 0) }
        var isClosing: Bool { closeAsked || hasFailed || detached }
        /// Asks for the close frame with `code`, unless one was asked for already or the channel is gone.
        mutating func askClose(_ code: WebSocketErrorCode, reason: String) -> Bool {
            switch phase {
            case .open, .finished:
                phase = .closing(code: code, reason: reason, frameStarted: false)
                return true
            case .closing, .failed:
                return false
            }
        }
        /// Bytes waiting for the client that count against the connection's limit: everything
        /// queued, held or being written except the first message not yet written, so one
        /// message larger than the limit still reaches a client that reads.
        var unreadBytes: Int {
            let head = batches.first?.first ?? queue.first?.count ?? 0
            return queuedBytes + writingBytes + heldBytes - head
        }
        /// Whether a paced message of `bytes` may be queued now.
        func hasRoom(for bytes: Int, window: Int) -> Bool {
            let inFlight = queuedBytes + writingBytes
            return inFlight == 0 || inFlight + bytes <= window
        }
    }

    private let state = Mutex(State())
    private let channel: any Channel
    private let compression: PerMessageDeflate.Agreement?
    private let maxQueuedBytes: Int
    /// How long a connection asked to close may take to accept the close frame before its
    /// socket is dropped (a client that stopped reading never will).
    private let closeGracePeriod: TimeAmount
    private let registry: ConnectionRegistry
    /// Counts the messages queued, by type, when the server serves `/metrics`.
    private let metrics: ServerMetrics?
    private let logger: Logger
    private let flushQueue: LoopFlushQueue
    /// The connection's frame writer and WebSocket layer, used on the event loop.
    private let handlers: NIOLoopBound<(frames: FrameWriter, webSocket: WebSocketGuard)>

    /// Most bytes of a paced answer queued or being written at once: a quarter of the
    /// connection's limit, at most 4 MiB (plenty to keep a prompt reader's socket busy).
    let pacingWindow: Int

    /// - Parameter compression: what permessage-deflate agreed for this connection, if anything.
    init(
        channel: any Channel,
        frameWriter: FrameWriter,
        webSocket: WebSocketGuard,
        compression: PerMessageDeflate.Agreement?,
        maxQueuedBytes: Int,
        closeGracePeriod: TimeAmount,
        registry: ConnectionRegistry,
        metrics: ServerMetrics? = nil,
        logger: Logger
    ) {
        self.metrics = metrics
        self.channel = channel
        self.compression = compression
        self.maxQueuedBytes = maxQueuedBytes
        self.closeGracePeriod = closeGracePeriod
        self.registry = registry
        self.logger = logger
        self.flushQueue = LoopFlushQueue.of(channel.eventLoop)
        self.handlers = NIOLoopBound((frameWriter, webSocket), eventLoop: channel.eventLoop)
        self.pacingWindow = max(1, min(maxQueuedBytes / 4, 4 << 20))
    }

    func send(_ message: [UInt8]) {
        enqueue(.bytes(message), lane: nil)
    }

    func send(_ update: EncodedUpdate, sub: Int64) {
        enqueue(.update(update, sub: sub), lane: nil)
    }

    /// Queues `message`, or holds it while `lane` holds; closes with 1008 past the limit.
    private func enqueue(_ message: OutgoingMessage, lane: Int?, pendingSent: Int = 0) {
        metrics?.countOutgoing(message)
        let (schedule, overTotal, resume) = state.withLock { state -> (Bool, Bool, CheckedContinuation<Bool, Never>?) in
            guard state.takesMessages else { return (false, false, nil) }
            var queued = true
            let bytes = message.count
            if let lane, state.held[lane] != nil {
                state.held[lane]!.append(message)
                state.heldBytes += bytes
                queued = false
            } else {
                state.queue.append(message)
                state.queuedBytes += bytes
            }
            state.pendingBytes = max(0, state.pendingBytes - pendingSent)
            var resume: CheckedContinuation<Bool, Never>?
            if state.unreadBytes > maxQueuedBytes {
                Self.dropAll(&state)
                _ = state.askClose(
                    .policyViolation,
                    reason: "client too slow: more than \(maxQueuedBytes) bytes queued"
                )
                resume = Self.takeRoomWaiter(&state)
                registry.countSlowClose()
            }
            let flush = queued || state.closeAsked ? Self.claimFlush(&state) : false
            return (flush, recount(&state), resume)
        }
        resume?.resume(returning: false)
        if schedule { scheduleFlush() }
        if overTotal { registry.shedOverLimit() }
    }

    /// Whether a close was asked for (for a slow client, or shutdown).
    var isClosing: Bool { state.withLock { $0.closeAsked } }

    /// Bytes waiting unread for this client, as its queue limit counts them (for metrics).
    var unreadBytes: Int { state.withLock { $0.unreadBytes } }

    /// Asks for what is queued to be sent, then the WebSocket closed with `code`. The first
    /// close asked for wins.
    func requestClose(_ code: WebSocketErrorCode, reason: String) {
        let (schedule, resume) = state.withLock { state -> (Bool, CheckedContinuation<Bool, Never>?) in
            guard state.askClose(code, reason: reason) else { return (false, nil) }
            // A paced answer stops; what is queued still goes out before the close.
            state.pendingBytes = 0
            _ = recount(&state)
            return (Self.claimFlush(&state), Self.takeRoomWaiter(&state))
        }
        resume?.resume(returning: false)
        if schedule { scheduleFlush() }
    }

    /// Drops everything not yet handed to the socket and closes with 1008; for the registry,
    /// when the server holds more than its total limit. False if the outbox was closing already.
    func shed(reason: String) -> Bool {
        enum Outcome { case alreadyClosing, closed, closedAndFlush }
        let (closed, resume) = state.withLock { state -> (Outcome, CheckedContinuation<Bool, Never>?) in
            guard !state.detached, state.askClose(.policyViolation, reason: reason) else {
                return (.alreadyClosing, nil)
            }
            Self.dropAll(&state)
            _ = recount(&state)
            return (Self.claimFlush(&state) ? .closedAndFlush : .closed, Self.takeRoomWaiter(&state))
        }
        resume?.resume(returning: false)
        if closed == .closedAndFlush { scheduleFlush() }
        return closed != .alreadyClosing
    }

    /// Bytes this outbox holds for its client, when it is not closing already (for the registry).
    var openBytes: Int {
        state.withLock { $0.isClosing ? 0 : $0.counted }
    }

    /// Stops counting towards the server's total: the connection has ended.
    func detach() {
        state.withLock { state in
            state.detached = true
            _ = recount(&state)
        }
    }

    private static func takeRoomWaiter(_ state: inout State) -> CheckedContinuation<Bool, Never>? {
        defer { state.roomWaiter = nil }
        return state.roomWaiter?.continuation
    }

    private static func dropAll(_ state: inout State) {
        state.queue = []
        state.queuedBytes = 0
        state.held = [:]
        state.heldBytes = 0
        state.pendingBytes = 0
    }

    /// Brings the registry's total up to date with this outbox; true when that total is now
    /// over the server's limit.
    private func recount(_ state: inout State) -> Bool {
        let bytes = state.detached ? 0 : state.queuedBytes + state.writingBytes + state.heldBytes + state.pendingBytes
        let closing = state.isClosing ? bytes : 0
        defer {
            state.counted = bytes
            state.countedClosing = closing
        }
        return registry.count(bytes - state.counted, closing: closing - state.countedClosing)
    }

    // MARK: Paced answers

    /// Sends `messages` as the client reads them: each is queued only once what is queued and
    /// being written, with it, fits in `pacingWindow` (or nothing is), so an answer of any size
    /// reaches a client that reads, and one that does not read holds at most a window of it
    /// queued. `totalBytes` (about the answer's size, read from the store and held until sent)
    /// counts towards the server's total until the messages are queued. Returns false when the
    /// connection closes first.
    @discardableResult
    func send(paced messages: some Sequence<[UInt8]>, totalBytes: Int) async -> Bool {
        let overTotal = state.withLock { state -> Bool in
            guard !state.isClosing else { return false }
            state.pendingBytes += totalBytes
            return recount(&state)
        }
        if overTotal { registry.shedOverLimit() }
        var sent = 0
        defer {
            state.withLock { state in
                state.pendingBytes = max(0, state.pendingBytes - (totalBytes - sent))
                _ = recount(&state)
            }
        }
        for message in messages {
            guard await waitForRoom(message.count) else { return false }
            let share = min(message.count, totalBytes - sent)
            enqueue(.bytes(message), lane: nil, pendingSent: share)
            sent += share
        }
        return true
    }

    /// Waits until a paced message of `bytes` may be queued; false when the connection closes.
    private func waitForRoom(_ bytes: Int) async -> Bool {
        let window = pacingWindow
        enum Ready { case yes, closed, wait }
        let now = state.withLock { state -> Ready in
            if !state.takesMessages || state.detached { return .closed }
            return state.hasRoom(for: bytes, window: window) ? .yes : .wait
        }
        switch now {
        case .yes: return true
        case .closed: return false
        case .wait: break
        }
        return await withCheckedContinuation { (continuation: CheckedContinuation<Bool, Never>) in
            let ready = state.withLock { state -> Bool? in
                if !state.takesMessages || state.detached { return false }
                if state.hasRoom(for: bytes, window: window) { return true }
                state.roomWaiter = (bytes, window, continuation)
                return nil
            }
            if let ready { continuation.resume(returning: ready) }
        }
    }

    // MARK: Subscription lanes

    /// A lane for a new subscription: its updates are held until `release`, after its starting
    /// records, and count against the connection's limit meanwhile.
    func makeLane() -> SubscriptionLane {
        let lane = state.withLock { state -> Int in
            defer { state.nextLane += 1 }
            state.held[state.nextLane] = []
            return state.nextLane
        }
        return SubscriptionLane(outbox: self, lane: lane)
    }

    /// Queues `message`, or holds it while `lane` (when given) holds.
    fileprivate func hold(_ message: OutgoingMessage, lane: Int?) {
        enqueue(message, lane: lane)
    }

    /// Queues what `lane` held, in order, and passes its later messages straight through.
    fileprivate func release(lane: Int) {
        let schedule = state.withLock { state -> Bool in
            guard let messages = state.held.removeValue(forKey: lane), !messages.isEmpty else { return false }
            let bytes = messages.reduce(0) { $0 + $1.count }
            state.heldBytes -= bytes
            guard state.takesMessages else {
                // Nothing may follow the close frame: what the lane held is dropped.
                _ = recount(&state)
                return false
            }
            state.queue.append(contentsOf: messages)
            state.queuedBytes += bytes
            return Self.claimFlush(&state)
        }
        if schedule { scheduleFlush() }
    }

    // MARK: Writing

    /// Stops taking messages and waits until those queued are written (or the channel is gone).
    /// A client that does not read them within `closeGracePeriod` has its socket dropped.
    func finishAndDrain() async {
        let drained = state.withLock { state -> Bool in
            if case .open = state.phase { state.phase = .finished }
            return state.isDrained
        }
        if drained { return }
        let channel = channel
        let dropper = channel.eventLoop.scheduleTask(in: closeGracePeriod) { channel.close(promise: nil) }
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
    /// one is asked for. The queue trades places with the loop's spare one, so neither
    /// allocates, and the frames are encoded into the loop's buffer.
    func flushOnLoop(_ scratch: FlushScratch) {
        var messages: [OutgoingMessage] = []
        swap(&messages, &scratch.messages)
        let (bytes, close) = state.withLock { state -> (Int, (code: WebSocketErrorCode, reason: String)?) in
            state.flushPending = false
            swap(&state.queue, &messages)
            let bytes = state.queuedBytes
            state.queuedBytes = 0
            state.writingBytes += bytes
            if let first = messages.first { state.batches.append((bytes, first.count)) }
            var close: (code: WebSocketErrorCode, reason: String)?
            if case .closing(let code, let reason, frameStarted: false) = state.phase {
                state.phase = .closing(code: code, reason: reason, frameStarted: true)
                close = (code, reason)
            }
            return (bytes, close)
        }
        if !messages.isEmpty {
            switch write(messages, into: &scratch.frames) {
            case .written:
                wrote(bytes, failed: false)
            case .pending(let written):
                written.whenComplete { result in
                    if case .failure = result { self.logger.debug("could not write to the connection") }
                    self.wrote(bytes, failed: (try? result.get()) == nil)
                }
            case .refused, .failed:
                logger.debug("could not write to the connection")
                wrote(bytes, failed: true)
            }
        }
        messages.removeAll(keepingCapacity: messages.capacity <= FlushScratch.keptCount)
        scratch.messages = messages
        if let close { startClose(close.code, reason: close.reason) }
    }

    private func wrote(_ bytes: Int, failed: Bool) {
        let (waiters, room) = state.withLock {
            state -> ([CheckedContinuation<Void, Never>], (CheckedContinuation<Bool, Never>, Bool)?) in
            state.writingBytes -= bytes
            _ = state.batches.popFirst()
            if failed {
                state.phase = .failed
                state.queue = []
                state.queuedBytes = 0
                state.held = [:]
                state.heldBytes = 0
            }
            _ = recount(&state)
            var room: (CheckedContinuation<Bool, Never>, Bool)?
            if let waiter = state.roomWaiter {
                if state.isClosing {
                    room = (waiter.continuation, false)
                } else if state.hasRoom(for: waiter.bytes, window: waiter.window) {
                    room = (waiter.continuation, true)
                }
                if room != nil { state.roomWaiter = nil }
            }
            guard state.isDrained else { return ([], room) }
            defer { state.drainWaiters = [] }
            return (state.drainWaiters, room)
        }
        if let (continuation, ready) = room { continuation.resume(returning: ready) }
        for waiter in waiters { waiter.resume() }
    }

    /// Sends the close frame after the messages already written; the connection's
    /// `WebSocketGuard` drops the socket if the client has not completed the closing handshake
    /// within the close grace period.
    private func startClose(_ code: WebSocketErrorCode, reason: String) {
        handlers.value.webSocket.close(code, reason: reason)
    }

    /// Writes `messages` as text frames into `frames` (emptied first) and hands them to the
    /// connection's `FrameWriter`, with one flush.
    private func write(_ messages: [OutgoingMessage], into frames: inout ByteBuffer) -> FrameWriter.Outcome {
        let writer = handlers.value.frames
        var needed = 0
        for message in messages {
            let count = message.count
            needed += WireFrameEncoding.headerBytes(for: count) + count
        }
        frames.clear(minimumCapacity: needed)
        for message in messages {
            if case .update(let update, let sub) = message,
                let tail = sharedCompressedTail(update, count: message.count)
            {
                // The id in a stored block, then the tail every subscriber shares.
                let id = String(sub)
                let head = update.head.count + id.utf8.count
                WireFrameEncoding.appendHeader(
                    rsv1: true,
                    opcode: .text,
                    payloadBytes: PerMessageDeflate.storedBlockHeaderBytes + head + tail.count,
                    to: &frames
                )
                PerMessageDeflate.appendStoredBlockHeader(length: head, to: &frames)
                frames.writeBytes(update.head)
                frames.writeString(id)
                frames.writeBytes(tail)
            } else if let payload = compressed(message) {
                WireFrameEncoding.appendFrame(
                    rsv1: true,
                    opcode: .text,
                    payload: payload.readableBytesView,
                    to: &frames
                )
            } else {
                WireFrameEncoding.appendHeader(opcode: .text, payloadBytes: message.count, to: &frames)
                message.write(to: &frames)
            }
        }
        let outcome = writer.write(frames)
        if frames.capacity > FlushScratch.keptFrameBytes { frames = ByteBuffer() }
        return outcome
    }

    /// The tail of an update of `count` bytes compressed once for every connection that agreed
    /// the same window, when this one agreed permessage-deflate and the update is large enough
    /// to be compressed; nil otherwise (or when compressing failed: then it goes as it is).
    private func sharedCompressedTail(_ update: EncodedUpdate, count: Int) -> [UInt8]? {
        guard let compression, count >= PerMessageDeflate.minimumCompressedBytes, let tails = update.compressedTails
        else { return nil }
        do {
            return try tails.bytes(windowBits: compression.serverWindowBits) {
                let tail = try PerMessageDeflate.compress(
                    update.tail,
                    windowBits: compression.serverWindowBits,
                    allocator: channel.allocator
                )
                return Array(tail.readableBytesView)
            }
        } catch {
            logger.warning(
                "could not compress an update; sending it uncompressed",
                metadata: ["verso.error": "\(error)"]
            )
            return nil
        }
    }

    /// `message` compressed, when that was agreed and it is large enough to be worth it.
    private func compressed(_ message: OutgoingMessage) -> ByteBuffer? {
        guard let compression, message.count >= PerMessageDeflate.minimumCompressedBytes else { return nil }
        do {
            return try PerMessageDeflate.compress(
                message.contiguousBytes,
                windowBits: compression.serverWindowBits,
                allocator: channel.allocator
            )
        } catch {
            logger.warning(
                "could not compress a message; sending it uncompressed",
                metadata: ["verso.error": "\(error)"]
            )
            return nil
        }
    }
}

/// A subscription's way into its connection's `Outbox`: while the subscription's starting
/// records (snapshots or replayed changes) are still being sent, its live updates are held, in
/// order and counted against the connection's limit; `release` queues them after those records
/// and lets later ones straight through.
final class SubscriptionLane: MessageSink {
    private let outbox: Outbox
    private let lane: Int
    private let holding = Atomic<Bool>(true)

    fileprivate init(outbox: Outbox, lane: Int) {
        self.outbox = outbox
        self.lane = lane
    }

    func send(_ message: [UInt8]) {
        send(.bytes(message))
    }

    func send(_ update: EncodedUpdate, sub: Int64) {
        send(.update(update, sub: sub))
    }

    /// Every lane of a connection stands for the connection's outbox.
    var connection: ObjectIdentifier { ObjectIdentifier(outbox) }

    private func send(_ message: OutgoingMessage) {
        // Once released the outbox would pass it through anyway; this skips its lane lookup.
        outbox.hold(message, lane: holding.load(ordering: .acquiring) ? lane : nil)
    }

    /// Queues the held updates and passes later ones through. Call once.
    func release() {
        outbox.release(lane: lane)
        holding.store(false, ordering: .releasing)
    }
}
