import Synchronization
import VersoCore

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

// The typed API: each request built from its arguments, each reply decoded into its result.
extension VersoClient {
    static func record(_ message: JSONValue) -> Record? {
        guard let key = message["key"]?.stringValue, let version = message["version"]?.integerValue,
            let data = message["data"]?.objectValue
        else { return nil }
        return Record(key: key, version: version, data: data)
    }

    static func serverError(_ reply: JSONValue) -> VersoClientError? {
        guard reply["type"]?.stringValue == "error" else { return nil }
        let code = reply["code"]?.stringValue.flatMap(ErrorCode.init(rawValue:)) ?? .internal
        return VersoClientError(.server(code), reply["message"]?.stringValue ?? "no message")
    }

    /// One stale key of a `conflict` reply, or nil when it is malformed: `reason`, `clashes` and
    /// `changed` come only with a write sent with merge (Protocol.md 3.3), `clashes` always with
    /// `reason`.
    static func conflict(_ value: JSONValue) -> RecordConflict? {
        guard let key = value["key"]?.stringValue, let base = value["base"]?.integerValue,
            let version = value["version"]?.integerValue, case .bool(let deleted)? = value["deleted"]
        else { return nil }
        let data: JSONObject?
        switch value["data"] {
        case .object(let object)?: data = object
        case .null?: data = nil
        default: return nil
        }
        var conflict = RecordConflict(key: key, base: base, version: version, data: data, deleted: deleted)
        switch value["hidden"] {
        case nil: break
        case .bool(let hidden)?: conflict.hidden = hidden
        default: return nil
        }
        guard let reason = value["reason"] else {
            guard value["clashes"] == nil, value["changed"] == nil else { return nil }
            return conflict
        }
        guard let refusal = reason.stringValue.flatMap(MergeRefusal.init(rawValue:)),
            let clashes = value["clashes"].flatMap(paths)
        else { return nil }
        conflict.reason = refusal
        conflict.clashes = clashes
        if let changed = value["changed"] {
            guard let paths = paths(changed) else { return nil }
            conflict.changed = paths
        }
        return conflict
    }

    /// An array of JSON Pointers, or nil when it is anything else.
    static func paths(_ value: JSONValue) -> [FieldPath]? {
        guard case .array(let items) = value else { return nil }
        var paths: [FieldPath] = []
        for item in items {
            guard let pointer = item.stringValue, let path = FieldPath(pointer: pointer) else { return nil }
            paths.append(path)
        }
        return paths
    }

    /// An optional boolean member of an ack: false when absent, nil when not a boolean.
    static func flag(_ reply: JSONValue, _ name: String) -> Bool? {
        switch reply[name] {
        case nil: false
        case .bool(let value)?: value
        default: nil
        }
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

    func unexpected(_ reply: JSONValue) -> VersoClientError {
        Self.serverError(reply) ?? VersoClientError(.protocolViolation, reply.encodedString)
    }

    /// The current state of `key`.
    public func get(_ key: String) async throws -> Lookup {
        let reply = try await send(["type": .string("get"), "key": .string(key)])
        if let record = Self.record(reply), reply["type"]?.stringValue == "snapshot" { return .found(record) }
        if let error = Self.serverError(reply), error.code == .notFound {
            if reply["deleted"] == .bool(true), let version = reply["version"]?.integerValue {
                return .deleted(version: version)
            }
            return .missing
        }
        throw unexpected(reply)
    }

    func write(_ operation: WriteOperation, idempotencyKey: String?) async throws -> WriteOutcome {
        try Self.checkMerge(operation)
        let fields = Request.write(operation).message(idempotencyKey: try Self.idempotencyKey(idempotencyKey))
        let reply = try await send(fields, resendable: true)
        switch reply["type"]?.stringValue {
        case "ack":
            guard let version = reply["version"]?.integerValue, let seq = reply["seq"]?.integerValue,
                let merged = Self.flag(reply, "merged"), let replayed = Self.flag(reply, "replayed")
            else {
                throw unexpected(reply)
            }
            return .ack(version: version, seq: seq, merged: merged, replayed: replayed)
        case "conflict":
            guard let conflict = Self.conflict(reply) else { throw unexpected(reply) }
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
            WriteOperation(
                key: key,
                action: .put(data),
                precondition: Self.precondition(base),
                merge: merge ? .fields : .plain
            ),
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
            WriteOperation(
                key: key,
                action: .patch(patch),
                precondition: Self.precondition(base),
                merge: merge ? .fields : .plain
            ),
            idempotencyKey: idempotencyKey
        )
    }

    /// Deletes `key` if its version is `base` (nil: a forced write). Throws `not_found` when the key
    /// does not exist or is already deleted. `idempotencyKey` as for `put`.
    public func delete(_ key: String, base: Int64?, idempotencyKey: String? = nil) async throws -> WriteOutcome {
        try await write(
            WriteOperation(key: key, action: .delete, precondition: Self.precondition(base)),
            idempotencyKey: idempotencyKey
        )
    }

    /// One page of live records under `prefix`, after `after`, and the cursor for the next page.
    public func list(
        prefix: String = "",
        after: String? = nil,
        limit: Int = 100
    ) async throws -> (records: [Record], next: String?) {
        var fields: JSONObject = ["type": .string("list"), "prefix": .string(prefix), "limit": .integer(Int64(limit))]
        if let after { fields["after"] = .string(after) }
        let reply = try await send(fields)
        guard reply["type"]?.stringValue == "records", case .array(let items)? = reply["records"] else {
            throw unexpected(reply)
        }
        return (items.compactMap(Self.record), reply["next"]?.stringValue)
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
        switch reply["type"]?.stringValue {
        case "ack":
            guard let seq = reply["seq"]?.integerValue, let versions = reply["versions"]?.objectValue,
                let replayed = Self.flag(reply, "replayed")
            else {
                throw unexpected(reply)
            }
            var decoded: [BytewiseString: Int64] = [:]
            for (key, version) in versions {
                guard let version = version.integerValue else { throw unexpected(reply) }
                decoded[key] = version
            }
            var merged: Set<BytewiseString> = []
            if let listed = reply["merged"] {
                guard case .array(let items) = listed else { throw unexpected(reply) }
                for item in items {
                    guard let key = item.stringValue else { throw unexpected(reply) }
                    merged.insert(BytewiseString(key))
                }
            }
            return .ack(TxnAck(seq: seq, merged: merged, replayed: replayed), versions: decoded)
        case "conflict":
            guard case .array(let items)? = reply["conflicts"] else { throw unexpected(reply) }
            var conflicts: [RecordConflict] = []
            for item in items {
                guard let conflict = Self.conflict(item) else { throw unexpected(reply) }
                conflicts.append(conflict)
            }
            return .conflict(conflicts)
        default:
            throw unexpected(reply)
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
        var fields: JSONObject = ["type": .string("subscribe")]
        switch filter {
        case .keys(let keys): fields["keys"] = .array(keys.sorted().map { .string($0.string) })
        case .prefix(let prefix): fields["prefix"] = .string(prefix)
        }
        if let since { fields["since"] = .integer(since) }
        if let epoch { fields["epoch"] = .string(epoch) }
        let reply = try await send(fields, waitForReady: waitForReady) { reply, state in
            guard reply["type"]?.stringValue == "subscribed", let sub = reply["sub"]?.integerValue,
                let seq = reply["seq"]?.integerValue, var subscription = state.subscriptions[local]
            else { return }
            let reset = reply["reset"] == .bool(true)
            subscription.serverSub = sub
            subscription.lastSeq = seq
            subscription.snapshotsRemaining = Int(reply["snapshots"]?.integerValue ?? 0)
            state.serverSubs[sub] = local
            state.subscriptions[local] = subscription
            if since == nil || reset {
                subscription.continuation.yield(.started(seq: seq, reset: reset))
                if subscription.snapshotsRemaining == 0 { subscription.continuation.yield(.synced) }
            }
        }
        if let error = Self.serverError(reply) { throw error }
        guard reply["type"]?.stringValue == "subscribed" else { throw unexpected(reply) }
    }

    func endSubscription(_ local: Int) {
        state.withLock { state in
            guard let subscription = state.subscriptions.removeValue(forKey: local) else { return }
            if let sub = subscription.serverSub {
                state.serverSubs[sub] = nil
                // The reply is not awaited; an unknown rid is ignored by the reader.
                let text = JSONValue.object(["type": .string("unsubscribe"), "sub": .integer(sub)]).encodedString
                state.phase.outgoing?.yield(text)
            }
        }
    }
}
