import Synchronization

/// Runs a WebSocket connection attempt in a task of its own, and stops waiting for it when its
/// upgrade has not completed within a deadline.
///
/// swift-websocket's client waits forever for the answer to its upgrade request when the server
/// closes the connection after reading the request without answering (a server killed or shutting
/// down at that moment, a TLS port spoken to in plain text): it allows half-closure, and NIO's
/// client upgrade handler does not act on the end of input (apple/swift-nio#2742 fixed only the
/// server's). That wait cannot be cancelled, so a structured task group could never return. Here
/// the stuck attempt is left to itself, holding its half-closed socket, and the caller gets an
/// error it can act on (the typed client reconnects).
package enum UpgradeDeadline {
    /// Runs `attempt` and returns its result. `attempt` calls its argument once the upgrade has
    /// completed (first thing in its connection handler), and must return at once (closing the
    /// connection) when that returns false: the deadline passed first and the caller has gone
    /// on. If the upgrade does not complete within `timeout`, this throws
    /// `VersoClientError(.timeout)`. Cancelling the caller cancels the attempt.
    package static func run<T: Sendable>(
        timeout: Duration,
        _ attempt: @escaping @Sendable (_ upgraded: @escaping @Sendable () -> Bool) async throws -> T
    ) async throws -> T {
        let race = Race<T>()
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { continuation in
                guard race.begin(continuation) else {
                    continuation.resume(throwing: CancellationError())
                    return
                }
                let attemptTask = Task {
                    do {
                        race.finish(.success(try await attempt { race.markUpgraded() }))
                    } catch {
                        race.finish(.failure(error))
                    }
                }
                let timer = Task {
                    try? await Task.sleep(for: timeout)
                    if Task.isCancelled { return }
                    race.expire(VersoClientError(.timeout, "no answer to the WebSocket upgrade within \(timeout)"))
                }
                race.hold(attempt: attemptTask, timer: timer)
            }
        } onCancel: {
            race.cancel()
        }
    }

    /// Who resumes the caller: the attempt's end, or the deadline while the upgrade is pending.
    private final class Race<T: Sendable>: Sendable {
        private enum Phase {
            /// The caller has not started waiting yet.
            case starting
            /// Waiting for the upgrade; the deadline may still end the wait.
            case upgrading(CheckedContinuation<T, any Error>)
            /// The connection is up: only the attempt's end resumes the caller.
            case upgraded(CheckedContinuation<T, any Error>)
            /// The caller was resumed (or cancelled before it began).
            case ended
        }

        private struct State {
            var phase = Phase.starting
            var attempt: Task<Void, Never>?
            var timer: Task<Void, Never>?
        }

        private let state = Mutex(State())

        /// Starts the wait; false when the caller was cancelled first.
        func begin(_ continuation: CheckedContinuation<T, any Error>) -> Bool {
            state.withLock { state in
                guard case .starting = state.phase else { return false }
                state.phase = .upgrading(continuation)
                return true
            }
        }

        /// Keeps the tasks to cancel; cancels them at once if the wait already ended.
        func hold(attempt: Task<Void, Never>, timer: Task<Void, Never>) {
            let ended = state.withLock { state -> Bool in
                state.attempt = attempt
                state.timer = timer
                if case .ended = state.phase { return true }
                return false
            }
            if ended {
                attempt.cancel()
                timer.cancel()
            }
        }

        /// True when the caller still waits for this attempt; false when it has gone on.
        func markUpgraded() -> Bool {
            let (accepted, timer) = state.withLock { state -> (Bool, Task<Void, Never>?) in
                guard case .upgrading(let continuation) = state.phase else { return (false, nil) }
                state.phase = .upgraded(continuation)
                return (true, state.timer)
            }
            timer?.cancel()
            return accepted
        }

        func finish(_ result: Result<T, any Error>) {
            let (continuation, timer) = state.withLock {
                state -> (CheckedContinuation<T, any Error>?, Task<Void, Never>?) in
                defer { state.phase = .ended }
                switch state.phase {
                case .upgrading(let continuation), .upgraded(let continuation): return (continuation, state.timer)
                case .starting, .ended: return (nil, state.timer)
                }
            }
            timer?.cancel()
            continuation?.resume(with: result)
        }

        func expire(_ error: any Error) {
            let (continuation, attempt) = state.withLock {
                state -> (CheckedContinuation<T, any Error>?, Task<Void, Never>?) in
                guard case .upgrading(let continuation) = state.phase else { return (nil, nil) }
                state.phase = .ended
                return (continuation, state.attempt)
            }
            attempt?.cancel()
            continuation?.resume(throwing: error)
        }

        /// The caller was cancelled: so is the attempt. A pending upgrade stops the wait at once
        /// (it may never end); a connection that is up ends as its handler sees the cancellation.
        func cancel() {
            let (continuation, attempt, timer) = state.withLock {
                state -> (CheckedContinuation<T, any Error>?, Task<Void, Never>?, Task<Void, Never>?) in
                switch state.phase {
                case .starting:
                    state.phase = .ended
                    return (nil, nil, nil)
                case .upgrading(let continuation):
                    state.phase = .ended
                    return (continuation, state.attempt, state.timer)
                case .upgraded, .ended:
                    return (nil, state.attempt, state.timer)
                }
            }
            attempt?.cancel()
            timer?.cancel()
            continuation?.resume(throwing: CancellationError())
        }
    }
}
