import Logging
import Synchronization
import VersoCore

// Matching replies to requests by rid, and routing what the server sends of its own accord
// (subscription snapshots and updates) to the subscriptions' streams.
extension VersoClient {

    /// Sends a request and returns the reply. `onReply` runs in the reader before any later message.
    ///
    /// A `resendable` request (a write with an idempotency key) whose connection drops before the
    /// reply is sent again once the client has reconnected (see `startSession`), so the caller
    /// gets the reply of whichever attempt is answered; any other request fails with
    /// `.disconnected` then. The reply is waited for `timeout` (default: the request timeout).
    func send(
        _ fields: JSONObject,
        waitForReady: Bool = true,
        resendable: Bool = false,
        timeout: Duration? = nil,
        onReply: (@Sendable (ServerMessage, inout State) -> Void)? = nil
    ) async throws -> ServerMessage {
        let timeout = timeout ?? configuration.requestTimeout
        let deadline = ContinuousClock.now + timeout
        if waitForReady { try await waitUntilReady(deadline: deadline) }
        let rid = state.withLock { state -> Int64 in
            defer { state.nextRID += 1 }
            return state.nextRID
        }
        var fields = fields
        fields["rid"] = .integer(rid)
        let text = JSONValue.object(fields).encodedString
        // Registered and sent in one step, so a reconnect in between cannot send it twice.
        let sent = state.withLock { state -> Bool in
            var slot = Slot(onReply: onReply, resend: resendable ? text : nil)
            if let outgoing = state.phase.outgoing, case .enqueued = outgoing.yield(text) {
                state.pending[rid] = slot
                return true
            }
            // The connection dropped since the client was ready: a write waits for the next one.
            guard resendable, configuration.reconnect, state.phase.hadSession else { return false }
            slot.unsent = true
            state.pending[rid] = slot
            return true
        }
        guard sent else {
            throw VersoClientError(.disconnected, "not connected to \(configuration.url)")
        }
        return try await withThrowingTaskGroup(of: ServerMessage.self) { group in
            group.addTask { try await self.reply(to: rid) }
            group.addTask {
                try await Task.sleep(until: deadline)
                throw VersoClientError(.timeout, "no reply within \(timeout)")
            }
            defer {
                group.cancelAll()
                state.withLock { $0.pending[rid] = nil }
            }
            return try await group.next()!
        }
    }

    func reply(to rid: Int64) async throws -> ServerMessage {
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<ServerMessage, any Error>) in
                let ready = state.withLock { state -> Result<ServerMessage, VersoClientError>? in
                    guard var slot = state.pending[rid] else {
                        return .failure(VersoClientError(.disconnected, "the connection dropped"))
                    }
                    if let reply = slot.reply { return reply }
                    slot.continuation = continuation
                    state.pending[rid] = slot
                    return nil
                }
                if let ready { continuation.resume(with: ready) }
            }
        } onCancel: {
            let continuation = state.withLock { state in state.pending.removeValue(forKey: rid)?.continuation }
            continuation?.resume(throwing: CancellationError())
        }
    }

    /// Routes one message from the server: a reply to its request's slot (a reply that does not
    /// read as Protocol.md says fails that request with `.protocolViolation`), a subscription's
    /// snapshot or update to its stream.
    func dispatch(_ text: String) {
        let rid: JSONValue?
        let decoded: Result<ServerMessage, MalformedServerMessage>
        do {
            let value = try JSONParser.parse(text, maxDepth: JSONParser.maxReplyDepth)
            rid = value["rid"]
            do {
                decoded = .success(try ServerMessage.decode(value))
            } catch let error as MalformedServerMessage {
                decoded = .failure(error)
            }
        } catch {
            logger.warning("unparseable message from server", metadata: ["verso.error": "\(error)"])
            return
        }
        if let rid = rid?.integerValue {
            let reply = decoded.mapError { VersoClientError(.protocolViolation, "\($0.problem): \(text)") }
            let continuation = state.withLock { state -> CheckedContinuation<ServerMessage, any Error>? in
                guard var slot = state.pending[rid] else { return nil }
                if case .success(let message) = reply { slot.onReply?(message, &state) }
                slot.onReply = nil
                if let continuation = slot.continuation {
                    state.pending[rid] = nil
                    return continuation
                }
                slot.reply = reply
                state.pending[rid] = slot
                return nil
            }
            continuation?.resume(with: reply)
            return
        }
        let message: ServerMessage
        switch decoded {
        case .success(let decoded): message = decoded
        case .failure(let error):
            logger.warning("malformed message from server", metadata: ["verso.error": "\(error)"])
            return
        }
        switch message {
        case .snapshot(let sub?, let record):
            state.withLock { state in
                guard let local = state.serverSubs[sub], var subscription = state.subscriptions[local],
                    case .receivingSnapshots(let seq, let remaining) = subscription.phase
                else { return }
                subscription.continuation.yield(.snapshot(record))
                if remaining > 1 {
                    subscription.phase = .receivingSnapshots(seq: seq, remaining: remaining - 1)
                } else {
                    subscription.phase = .live(ResumePoint(start: seq))
                    subscription.continuation.yield(.synced)
                }
                state.subscriptions[local] = subscription
            }
        case .update(let update):
            state.withLock { state in
                guard let local = state.serverSubs[update.sub], var subscription = state.subscriptions[local] else {
                    return
                }
                if case .live(var resume) = subscription.phase {
                    // An update a resume sends again was delivered before the drop.
                    guard resume.admit(seq: update.seq, key: update.key) else { return }
                    subscription.phase = .live(resume)
                }
                subscription.continuation.yield(
                    .update(
                        key: update.key,
                        version: update.version,
                        seq: update.seq,
                        data: update.data,
                        at: update.at,
                        by: update.by
                    )
                )
                state.subscriptions[local] = subscription
            }
        case .presence(let presence):
            state.withLock { state in
                guard let sub = presence.sub, let local = state.serverSubs[sub],
                    let subscription = state.subscriptions[local]
                else { return }
                subscription.continuation.yield(.presence(presence))
            }
        case .progress(let sub, let seq):
            // Every matching change up to `seq` came before it: a resume may start there.
            state.withLock { state in
                guard let local = state.serverSubs[sub], var subscription = state.subscriptions[local],
                    case .live(var resume) = subscription.phase
                else { return }
                resume.progress(seq)
                subscription.phase = .live(resume)
                subscription.continuation.yield(.progress(seq: seq))
                state.subscriptions[local] = subscription
            }
        default:
            return
        }
    }
}
