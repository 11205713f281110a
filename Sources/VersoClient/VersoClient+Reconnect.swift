import NIOSSL
import Synchronization
import Logging
import VersoCore
import WSClient

// The connection behind a VersoClient: connecting, starting a session (hello, resumed
// subscriptions), reconnecting with backoff, and waiting until a session is ready.
extension VersoClient {

    func setConnectionState(_ connectionState: ConnectionState) {
        stateContinuation.yield(connectionState)
    }

    func maintainConnection() async {
        var backoff = configuration.initialBackoff
        while !Task.isCancelled, !state.withLock({ $0.phase.isClosed }) {
            setConnectionState(.connecting)
            let connectedAt = ContinuousClock.now
            let reason = await connectOnce()
            let (closed, hadSession) = state.withLock { state -> (Bool, Bool) in
                if case .connecting = state.phase { state.phase = .connecting(failure: reason) }
                return (state.phase.isClosed, state.phase.hadSession)
            }
            if closed { break }
            setConnectionState(.disconnected(reason: reason))
            wakeReadyWaiters()
            guard hadSession, configuration.reconnect else { break }
            if ContinuousClock.now - connectedAt > .seconds(10) { backoff = configuration.initialBackoff }
            let jitter = Double.random(in: 0.8...1.2)
            try? await Task.sleep(for: backoff * jitter)
            backoff = min(backoff * 2, configuration.maxBackoff)
        }
        let unsent = state.withLock { state -> [Slot] in
            if !state.phase.isClosed { state.phase = .closed(failure: state.phase.firstFailure) }
            // Writes kept for a connection that will not come: they fail as when they dropped.
            let unsent = state.pending.filter { $0.value.unsent }
            for rid in unsent.keys { state.pending[rid] = nil }
            return Array(unsent.values)
        }
        for slot in unsent {
            slot.continuation?.resume(
                throwing: VersoClientError(.disconnected, "the connection dropped and the client was closed")
            )
        }
        wakeReadyWaiters()
        let subscriptions = state.withLock { state -> [LocalSubscription] in
            defer { state.subscriptions = [:] }
            return Array(state.subscriptions.values)
        }
        for subscription in subscriptions {
            subscription.continuation.finish(throwing: VersoClientError(.closed, "the client was closed"))
        }
        setConnectionState(.closed)
        stateContinuation.finish()
    }

    /// Runs one connection until it ends; returns why it ended.
    func connectOnce() async -> String {
        let token: String?
        let tls: TLSConfiguration?
        do {
            token = try await configuration.tokenProvider?() ?? configuration.token
            tls = try ClientTLS.configuration(url: configuration.url, caFile: configuration.caFile)
        } catch {
            return "\(error)"
        }
        do {
            let frame = try await ClientWebSocket.connect(
                url: configuration.url,
                token: token,
                compression: configuration.compression,
                tls: tls,
                timeout: configuration.connectTimeout,
                logger: logger
            ) { inbound, outbound, _ in
                let (outgoing, continuation) = AsyncStream<String>.makeStream()
                let closed = self.state.withLock { state -> Bool in
                    switch state.phase {
                    case .closed:
                        return true
                    case .connecting, .starting(_, resuming: false):
                        state.phase = .starting(outgoing: continuation, resuming: false)
                    case .reconnecting, .ready, .starting(_, resuming: true):
                        state.phase = .starting(outgoing: continuation, resuming: true)
                    }
                    return false
                }
                // Closed meanwhile: the session's hello finds no connection, which ends it.
                if closed { continuation.finish() }
                try await withThrowingTaskGroup(of: ConnectionTask.self) { group in
                    group.addTask {
                        for await text in outgoing {
                            try await outbound.write(.text(text))
                        }
                        return .writer
                    }
                    group.addTask {
                        do {
                            try await self.startSession()
                            return .session(failure: nil)
                        } catch {
                            return .session(failure: error)
                        }
                    }
                    group.addTask {
                        for try await message in inbound.messages(maxSize: 1 << 24) {
                            if case .text(let text) = message { self.dispatch(text) }
                        }
                        return .reader
                    }
                    defer { group.cancelAll() }
                    // The connection ends with the first of: the server's end of it, the end
                    // of what the client sends (closed, or dropped by `detach`), or a session
                    // that could not start (no welcome in time, a resume that failed with the
                    // connection): a connection without a session must not be kept open.
                    while let ended = try await group.next() {
                        guard case .session(let failure) = ended else { return }
                        if let failure {
                            throw VersoClientError(.disconnected, "the session did not start: \(failure)")
                        }
                    }
                }
            }
            detach(reason: "the server closed the connection")
            if let frame { return "closed by the server (\(frame.closeCode)\(frame.reason.map { ": \($0)" } ?? ""))" }
            return "the connection closed"
        } catch {
            detach(reason: "\(error)")
            return "\(error)"
        }
    }

    /// What ends one of a connection's tasks.
    enum ConnectionTask: Sendable {
        /// The server's messages ended.
        case reader
        /// What the client sends ended: the client was closed or the connection detached.
        case writer
        /// The session started, or could not.
        case session(failure: (any Error)?)
    }

    /// Sends hello and resumes every subscription; then marks the connection ready. The welcome
    /// must come within the connect timeout: a server that opened the WebSocket and does not
    /// answer (one shutting down, say) is given up on like one that does not answer the upgrade.
    func startSession() async throws {
        let hello = Request.hello(client: configuration.clientName, token: nil).message()
        let reply = try await send(hello, waitForReady: false, timeout: configuration.connectTimeout)
        guard case .welcome(let welcome) = reply else { throw unexpected(reply) }
        let session = welcome.session
        let previousEpoch = state.withLock { state -> String? in
            defer {
                state.session = session
                state.epoch = welcome.epoch
                state.allowsForce = welcome.allowsForce
            }
            return state.epoch
        }
        resendUnsentWrites()
        let subscriptions = state.withLock { state in
            state.subscriptions.map { ($0.key, $0.value.filter, $0.value.phase.since) }
        }
        for (local, filter, since) in subscriptions {
            do {
                _ = try await sendSubscribe(
                    local: local,
                    filter: filter,
                    since: since,
                    epoch: previousEpoch,
                    waitForReady: false
                )
            } catch let error as VersoClientError where error.kind == .disconnected {
                // The connection failed, not the subscription (say, a server shutting down
                // accepted this connection and then closed it): the next session resumes it.
                throw error
            } catch {
                let continuation = state.withLock { $0.subscriptions.removeValue(forKey: local)?.continuation }
                continuation?.finish(throwing: error)
            }
        }
        // Presence ended with the connection that set it: set it again, in key order.
        let presence = state.withLock { $0.presence.sorted { $0.key < $1.key } }
        for (key, shown) in presence {
            let request = Request.presence(key: key.string, state: shown).message()
            let reply = try await send(request, waitForReady: false)
            if case .error(let error) = reply {
                logger.warning(
                    "presence could not be set again after a reconnect",
                    metadata: ["verso.key": "\(key.string)", "verso.error": "\(error.message)"]
                )
            }
        }
        let waiters = state.withLock { state -> [CheckedContinuation<Void, Never>] in
            if case .starting(let outgoing, _) = state.phase { state.phase = .ready(outgoing: outgoing) }
            defer { state.readyWaiters = [:] }
            return Array(state.readyWaiters.values)
        }
        for waiter in waiters { waiter.resume() }
        setConnectionState(.connected(session: session))
    }

    /// Sends again, in the order first sent, every write kept from a connection that dropped
    /// before its reply. Its idempotency key makes the server answer a write it had applied with
    /// that first ack (marked replayed) instead of applying it twice.
    func resendUnsentWrites() {
        state.withLock { state in
            guard let outgoing = state.phase.outgoing else { return }
            for rid in state.pending.keys.sorted() {
                guard var slot = state.pending[rid], slot.unsent, let text = slot.resend else { continue }
                slot.unsent = false
                state.pending[rid] = slot
                // Not enqueued: this connection is dropping too, and `detach` keeps it again.
                outgoing.yield(text)
            }
        }
    }

    /// Ends the connection's part of the state. Writes waiting for a reply are kept for the next
    /// connection when the client reconnects (`resendUnsentWrites`); every other request waiting
    /// for a reply fails with `.disconnected`, and a reply that already arrived stays for its caller.
    func detach(reason: String) {
        let (failed, subscriptions) = state.withLock { state -> ([Slot], [LocalSubscription]) in
            state.phase.outgoing?.finish()
            switch state.phase {
            case .starting(_, let resuming): state.phase = resuming ? .reconnecting : .connecting(failure: nil)
            case .ready: state.phase = .reconnecting
            case .connecting, .reconnecting, .closed: break
            }
            state.serverSubs = [:]
            for key in state.subscriptions.keys { state.subscriptions[key]?.serverSub = nil }
            let willResend = configuration.reconnect && state.phase.hadSession
            var failed: [Slot] = []
            for (rid, var slot) in state.pending where slot.reply == nil {
                if willResend, slot.resend != nil {
                    slot.unsent = true
                    state.pending[rid] = slot
                } else {
                    failed.append(slot)
                    state.pending[rid] = nil
                }
            }
            return (failed, configuration.reconnect ? [] : Array(state.subscriptions.values))
        }
        for slot in failed {
            slot.continuation?.resume(throwing: VersoClientError(.disconnected, reason))
        }
        for subscription in subscriptions {
            subscription.continuation.finish(throwing: VersoClientError(.disconnected, reason))
        }
    }

    func wakeReadyWaiters() {
        let waiters = state.withLock { state -> [CheckedContinuation<Void, Never>] in
            defer { state.readyWaiters = [:] }
            return Array(state.readyWaiters.values)
        }
        for waiter in waiters { waiter.resume() }
    }

    func waitUntilFirstConnection() async throws {
        while true {
            let phase = state.withLock { $0.phase }
            if phase.isReady { return }
            if let failure = phase.firstFailure {
                throw VersoClientError(.cannotConnect, "\(configuration.url): \(failure)")
            }
            if phase.isClosed { throw VersoClientError(.closed, "the client was closed") }
            await waitForReadyOrChange()
        }
    }

    func waitForReadyOrChange() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let resumeNow = state.withLock { state -> Bool in
                if state.phase.isReady || state.phase.isClosed || state.phase.firstFailure != nil { return true }
                let id = state.nextWaiter
                state.nextWaiter += 1
                state.readyWaiters[id] = continuation
                return false
            }
            if resumeNow { continuation.resume() }
        }
    }

    /// Waits (at most `timeout`) until the connection is ready.
    func waitUntilReady(deadline: ContinuousClock.Instant) async throws {
        while true {
            let (ready, closed) = state.withLock { ($0.phase.isReady, $0.phase.isClosed) }
            if ready { return }
            if closed { throw VersoClientError(.closed, "the client was closed") }
            if ContinuousClock.now >= deadline {
                throw VersoClientError(.timeout, "no connection to \(configuration.url)")
            }
            await withTaskGroup(of: Void.self) { group in
                group.addTask { [weak self] in
                    try? await Task.sleep(until: deadline)
                    self?.wakeReadyWaiters()
                }
                await waitForReadyOrChange()
                group.cancelAll()
            }
        }
    }

    /// Closes the connection; subscriptions end.
    func close() {
        let outgoing = state.withLock { state -> AsyncStream<String>.Continuation? in
            let outgoing = state.phase.outgoing
            if !state.phase.isClosed { state.phase = .closed(failure: state.phase.firstFailure) }
            return outgoing
        }
        outgoing?.finish()
        wakeReadyWaiters()
    }
}
