import Synchronization
import VersoCore

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

// The typed API: each request built from its arguments, each reply decoded into its result.
extension VersoClient {
    /// The client error for a server's `error` reply (a code this library does not know reads
    /// as `internal`).
    static func clientError(_ error: ServerError) -> VersoClientError {
        VersoClientError(.server(error.errorCode ?? .internal), error.message)
    }

    /// The idempotency key to send: the caller's, or a new UUID. Throws when the caller's is not
    /// 1–128 bytes (Protocol.md 3.7).
    static func idempotencyKey(_ given: String?) throws -> String {
        guard let given else { return UUID().uuidString.lowercased() }
        guard (1...RequestLimits.maxIdempotencyKeyBytes).contains(given.utf8.count) else {
            throw VersoClientError(
                .invalidArgument,
                "an idempotency key must be 1–\(RequestLimits.maxIdempotencyKeyBytes) bytes of UTF-8"
            )
        }
        return given
    }

    /// Throws before anything is sent when `merge` is asked for where Protocol.md 3.3 forbids it.
    static func checkMerge(_ operation: WriteOperation) throws {
        guard operation.merge == .fields else { return }
        let op = operation.action.name
        guard op == "put" || op == "patch" else {
            throw VersoClientError(.invalidArgument, "\(op) \(operation.key): merge is only for put and patch")
        }
        guard operation.precondition != .force else {
            throw VersoClientError(
                .invalidArgument,
                "\(op) \(operation.key): merge needs a base (the version the change started from), not a forced write"
            )
        }
    }

    /// A write's base, or a forced write for nil.
    static func precondition(_ base: Int64?) -> WritePrecondition {
        base.map { .base($0) } ?? .force
    }

    /// The ops of a txn or batch in the protocol's terms. Throws `.invalidArgument` for a merge op
    /// that is not a put or patch with a base.
    static func writeOperations(_ operations: [TxnOperation]) throws -> [WriteOperation] {
        try operations.map { operation in
            let write = operation.writeOperation
            try checkMerge(write)
            return write
        }
    }

    /// The error for a reply that is not one the request expects: the server's error, or a
    /// protocol violation naming what came.
    func unexpected(_ reply: ServerMessage) -> VersoClientError {
        if case .error(let error) = reply { return Self.clientError(error) }
        return VersoClientError(.protocolViolation, "unexpected \(reply.type) reply")
    }

    /// The current state of `key`.
    public func get(_ key: String) async throws -> Lookup {
        let reply = try await send(Request.get(key: key).message())
        switch reply {
        case .snapshot(nil, let record):
            return .found(record)
        case .error(let error) where error.errorCode == .notFound:
            if error.deleted == true, let version = error.version { return .deleted(version: version) }
            return .missing
        default:
            throw unexpected(reply)
        }
    }

    func write(_ operation: WriteOperation, idempotencyKey: String?) async throws -> WriteOutcome {
        try Self.checkMerge(operation)
        let fields = Request.write(operation).message(idempotencyKey: try Self.idempotencyKey(idempotencyKey))
        let reply = try await send(fields, resendable: true)
        switch reply {
        case .ack(_, let version, let seq, let merged, let replayed):
            return .ack(version: version, seq: seq, merged: merged, replayed: replayed)
        case .conflict(let conflict):
            return .conflict(conflict)
        default:
            throw unexpected(reply)
        }
    }

    /// Replaces the object at `key` if its version is `base` (nil: a forced write).
    ///
    /// With `merge` (`"merge": "fields"`, Protocol.md 3.3) a stale base is no conflict unless a
    /// value this put changes was changed since `base`: the values where `data` differs from the
    /// record at `base` are written into the current record, and the ack says `merged`. A merge
    /// needs a base: with nil it throws `.invalidArgument` before sending.
    ///
    /// The write carries `idempotencyKey` (default: a new UUID), so a resend after a dropped
    /// connection is applied at most once (Protocol.md 3.7); give your own to retry the same
    /// write later, even from another client.
    public func put(
        _ key: String,
        base: Int64?,
        data: JSONObject,
        merge: Bool = false,
        idempotencyKey: String? = nil
    ) async throws -> WriteOutcome {
        try await write(
            TxnOperation(key: key, base: base, action: .put(data), merge: merge).writeOperation,
            idempotencyKey: idempotencyKey
        )
    }

    /// Applies an RFC 7396 merge patch to `key` if its version is `base` (nil: a forced write).
    ///
    /// `merge` and `idempotencyKey` as for `put`: with `merge`, a stale base is no conflict unless
    /// a member this patch names was changed since `base`, and the patch is applied to the
    /// current record.
    public func patch(
        _ key: String,
        base: Int64?,
        patch: JSONObject,
        merge: Bool = false,
        idempotencyKey: String? = nil
    ) async throws -> WriteOutcome {
        try await write(
            TxnOperation(key: key, base: base, action: .patch(patch), merge: merge).writeOperation,
            idempotencyKey: idempotencyKey
        )
    }

    /// Deletes `key` if its version is `base` (nil: a forced write). Throws `not_found` when the key
    /// does not exist or is already deleted. `idempotencyKey` as for `put`.
    public func delete(_ key: String, base: Int64?, idempotencyKey: String? = nil) async throws -> WriteOutcome {
        try await write(
            TxnOperation(key: key, base: base, action: .delete).writeOperation,
            idempotencyKey: idempotencyKey
        )
    }

    /// One page of live records under `prefix`, after `after`, and the cursor for the next page.
    public func list(
        prefix: String = "",
        after: String? = nil,
        limit: Int = 100
    ) async throws -> (records: [Record], next: String?) {
        let reply = try await send(Request.list(prefix: prefix, after: after, limit: limit).message())
        guard case .records(let records, let next) = reply else { throw unexpected(reply) }
        return (records, next)
    }

    /// Every live record under `prefix`, following `next` until the listing is complete.
    public func listAll(prefix: String = "") async throws -> [Record] {
        var records: [Record] = []
        var after: String?
        repeat {
            let page = try await list(prefix: prefix, after: after, limit: 1000)
            records += page.records
            after = page.next
        } while after != nil
        return records
    }

    /// One page of `key`'s versions below `before` (from the current one when nil), newest
    /// first, at most `limit` (1–100): `next` is the `before` of the next page, `gone` the newest
    /// version the server no longer keeps once a page reaches it (Protocol.md 3.9). Throws
    /// `not_found` for a key that never existed.
    public func history(
        _ key: String,
        before: Int64? = nil,
        limit: Int = RequestLimits.defaultHistoryLimit
    ) async throws -> RecordHistory {
        let reply = try await send(Request.history(key: key, before: before, limit: limit).message())
        guard case .history(let history) = reply else { throw unexpected(reply) }
        return history
    }

    /// Writes version `version` of `key` back: a `put` of its data on the key's current version,
    /// so it makes a new version and conflicts, like any write, when someone writes first.
    /// Throws `not_found` when that version is no longer kept, `.invalidArgument` when it is a
    /// deletion (delete the key instead). `idempotencyKey` as for `put`.
    public func restore(_ key: String, version: Int64, idempotencyKey: String? = nil) async throws -> WriteOutcome {
        guard version >= 1 else { throw VersoClientError(.invalidArgument, "versions start at 1") }
        let page = try await history(key, before: version + 1, limit: 1)
        guard let old = page.versions.first, old.version == version else {
            throw VersoClientError(
                .server(.notFound),
                "version \(version) of \"\(key)\" is not kept any more (or never existed): see its history"
            )
        }
        guard let data = old.data else {
            throw VersoClientError(
                .invalidArgument,
                "version \(version) of \"\(key)\" is a deletion: delete the key instead of restoring it"
            )
        }
        guard let current = try await history(key, limit: 1).versions.first else {
            throw VersoClientError(.protocolViolation, "the history of \"\(key)\" has no current version")
        }
        return try await put(key, base: current.version, data: data, idempotencyKey: idempotencyKey)
    }

    /// Sets this connection's presence on `key` to `state` (nil clears it): other connections
    /// subscribed to the key see it until it is cleared or this client closes (Protocol.md 5.1).
    /// The client sets it again after a reconnect. Returns the presence as others see it.
    @discardableResult
    public func setPresence(_ key: String, state presence: JSONObject?) async throws -> Presence {
        let reply = try await send(Request.presence(key: key, state: presence).message())
        guard case .presence(let shown) = reply else { throw unexpected(reply) }
        state.withLock { $0.presence[BytewiseString(key)] = presence }
        return shown
    }

    /// Applies `operations` all or nothing.
    ///
    /// Ops with `merge` are merged as `put` describes; the ack lists those merged into a newer
    /// version than their base. A merge op that is not a put or patch with a base throws
    /// `.invalidArgument` before sending. `idempotencyKey` as for `put`.
    public func txn(_ operations: [TxnOperation], idempotencyKey: String? = nil) async throws -> TxnOutcome {
        let fields = Request.txn(try Self.writeOperations(operations)).message(
            idempotencyKey: try Self.idempotencyKey(idempotencyKey)
        )
        let reply = try await send(fields, resendable: true)
        switch reply {
        case .txnAck(let ack, let versions): return .ack(ack, versions: versions)
        case .txnConflict(let conflicts): return .conflict(conflicts)
        default: throw unexpected(reply)
        }
    }

    /// Subscribes to `filter`. The stream starts with `.started`, the current records and
    /// `.synced`, then live updates; it survives reconnects (resuming with `since`). Stop
    /// iterating (or cancel) to unsubscribe.
    public func subscribe(
        _ filter: SubscriptionFilter
    ) async throws -> AsyncThrowingStream<SubscriptionEvent, any Error> {
        let (stream, continuation) = AsyncThrowingStream<SubscriptionEvent, any Error>.makeStream()
        let local = state.withLock { state -> Int in
            defer { state.nextLocalSub += 1 }
            state.subscriptions[state.nextLocalSub] = LocalSubscription(filter: filter, continuation: continuation)
            return state.nextLocalSub
        }
        continuation.onTermination = { [weak self] _ in self?.endSubscription(local) }
        do {
            try await sendSubscribe(local: local, filter: filter, since: nil, epoch: nil, waitForReady: true)
        } catch {
            state.withLock { _ = $0.subscriptions.removeValue(forKey: local) }
            continuation.finish(throwing: error)
            throw error
        }
        return stream
    }

    func sendSubscribe(
        local: Int,
        filter: SubscriptionFilter,
        since: Int64?,
        epoch: String?,
        waitForReady: Bool
    ) async throws {
        let progress = configuration.progressInterval.map {
            min(max($0.components.seconds, 1), RequestLimits.maxProgressSeconds)
        }
        let request = Request.subscribe(filter, since: since, epoch: epoch, progress: progress)
        let reply = try await send(request.message(), waitForReady: waitForReady) { reply, state in
            guard case .subscribed(let subscribed) = reply, var subscription = state.subscriptions[local] else {
                return
            }
            subscription.serverSub = subscribed.sub
            state.serverSubs[subscribed.sub] = local
            if since == nil || subscribed.reset {
                // A start (again, after a drop mid-start or a reset): the consumer drops what it
                // held when this is not the first.
                let reset = subscribed.reset || subscription.phase.hasStarted
                subscription.continuation.yield(.started(seq: subscribed.seq, reset: reset))
                if subscribed.snapshots == 0 {
                    subscription.phase = .live(ResumePoint(start: subscribed.seq))
                    subscription.continuation.yield(.synced)
                } else {
                    subscription.phase = .receivingSnapshots(seq: subscribed.seq, remaining: Int(subscribed.snapshots))
                }
            }
            // A resume keeps its point: the replayed updates move it as they are delivered.
            state.subscriptions[local] = subscription
        }
        guard case .subscribed = reply else { throw unexpected(reply) }
    }

    func endSubscription(_ local: Int) {
        state.withLock { state in
            guard let subscription = state.subscriptions.removeValue(forKey: local) else { return }
            if let sub = subscription.serverSub {
                state.serverSubs[sub] = nil
                // The reply is not awaited; an unknown rid is ignored by the reader.
                let text = JSONValue.object(Request.unsubscribe(sub: sub).message()).encodedString
                state.phase.outgoing?.yield(text)
            }
        }
    }
}
