import Synchronization
import VersoEngine
import NIOWebSocket
import WSCore

/// A connection's queue of outgoing messages, drained by one writer task.
///
/// `send` never blocks, so the engine's writer can fan out to any number of connections. A
/// client that lets more than `maxQueuedBytes` pile up is disconnected (close code 1008) rather
/// than allowed to grow the server's memory without bound.
final class Outbox: MessageSink {
    enum Next {
        case messages([[UInt8]])
        case close(WebSocketErrorCode, reason: String)
        case finished
    }

    private struct State {
        var queue: [[UInt8]] = []
        var queuedBytes = 0
        var waiter: CheckedContinuation<Void, Never>?
        var close: (WebSocketErrorCode, String)?
        var finished = false
        var closeWaiter: CheckedContinuation<Bool, Never>?
    }

    private let state = Mutex(State())
    private let maxQueuedBytes: Int

    init(maxQueuedBytes: Int) {
        self.maxQueuedBytes = maxQueuedBytes
    }

    func send(_ message: [UInt8]) {
        let wake = state.withLock { state -> Wake in
            guard state.close == nil, !state.finished else { return Wake() }
            state.queue.append(message)
            state.queuedBytes += message.count
            if state.queuedBytes > maxQueuedBytes {
                state.queue = []
                state.queuedBytes = 0
                return Self.markClose(&state, .policyViolation, "client too slow: more than \(maxQueuedBytes) bytes queued")
            }
            defer { state.waiter = nil }
            return Wake(writer: state.waiter)
        }
        wake.resume()
    }

    /// Continuations to resume once the lock is released.
    private struct Wake {
        var writer: CheckedContinuation<Void, Never>?
        var closeWatcher: CheckedContinuation<Bool, Never>?

        func resume() {
            writer?.resume()
            closeWatcher?.resume(returning: true)
        }
    }

    /// Records a close (the first one asked for wins) and takes the continuations to wake.
    private static func markClose(_ state: inout State, _ code: WebSocketErrorCode, _ reason: String) -> Wake {
        if state.close == nil { state.close = (code, reason) }
        defer {
            state.waiter = nil
            state.closeWaiter = nil
        }
        return Wake(writer: state.waiter, closeWatcher: state.closeWaiter)
    }

    /// Waits until a close is requested (true), or until the task is cancelled (false).
    func waitForCloseRequest() async -> Bool {
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Bool, Never>) in
                let resume: Bool? = state.withLock { state in
                    if state.close != nil { return true }
                    if Task.isCancelled { return false }
                    state.closeWaiter = continuation
                    return nil
                }
                if let resume { continuation.resume(returning: resume) }
            }
        } onCancel: {
            let waiter = state.withLock { state -> CheckedContinuation<Bool, Never>? in
                defer { state.closeWaiter = nil }
                return state.closeWaiter
            }
            waiter?.resume(returning: false)
        }
    }

    /// Asks the writer to send what is queued, then close the WebSocket with `code`.
    func requestClose(_ code: WebSocketErrorCode, reason: String) {
        state.withLock { Self.markClose(&$0, code, reason) }.resume()
    }

    /// No more messages will come: the writer sends what is queued and stops.
    func finish() {
        let waiter = state.withLock { state -> CheckedContinuation<Void, Never>? in
            state.finished = true
            defer { state.waiter = nil }
            return state.waiter
        }
        waiter?.resume()
    }

    /// Waits for the next messages, or for the instruction to close or stop.
    func next() async -> Next {
        while true {
            let next = state.withLock { state -> Next? in
                if !state.queue.isEmpty {
                    defer {
                        state.queue = []
                        state.queuedBytes = 0
                    }
                    return .messages(state.queue)
                }
                if let (code, reason) = state.close {
                    state.finished = true
                    return .close(code, reason: reason)
                }
                return state.finished ? .finished : nil
            }
            if let next { return next }
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let ready = state.withLock { state -> Bool in
                    if !state.queue.isEmpty || state.close != nil || state.finished { return true }
                    state.waiter = continuation
                    return false
                }
                if ready { continuation.resume() }
            }
        }
    }
}
