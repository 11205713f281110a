import Synchronization
import VersoCore

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

    static func conflict(_ value: JSONValue) -> RecordConflict? {
        guard let key = value["key"]?.stringValue, let base = value["base"]?.integerValue,
            let version = value["version"]?.integerValue
        else { return nil }
        return RecordConflict(
            key: key,
            base: base,
            version: version,
            data: value["data"]?.objectValue,
            deleted: value["deleted"] == .bool(true)
        )
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

    func write(_ type: String, key: String, base: Int64?, extra: JSONObject) async throws -> WriteOutcome {
        var fields = extra
        fields["type"] = .string(type)
        fields["key"] = .string(key)
        if let base { fields["base"] = .integer(base) } else { fields["force"] = .bool(true) }
        let reply = try await send(fields)
        switch reply["type"]?.stringValue {
        case "ack":
            guard let version = reply["version"]?.integerValue, let seq = reply["seq"]?.integerValue else {
                throw unexpected(reply)
            }
            return .ack(version: version, seq: seq)
        case "conflict":
            guard let conflict = Self.conflict(reply) else { throw unexpected(reply) }
            return .conflict(conflict)
        default:
            throw unexpected(reply)
        }
    }

    /// Replaces the object at `key` if its version is `base` (nil: forced write).
    public func put(_ key: String, base: Int64?, data: JSONObject) async throws -> WriteOutcome {
        try await write("put", key: key, base: base, extra: ["data": .object(data)])
    }

    /// Applies an RFC 7396 merge patch to `key` if its version is `base` (nil: forced write).
    public func patch(_ key: String, base: Int64?, patch: JSONObject) async throws -> WriteOutcome {
        try await write("patch", key: key, base: base, extra: ["patch": .object(patch)])
    }

    /// Deletes `key` if its version is `base` (nil: forced write). Throws `not_found` when the key
    /// does not exist or is already deleted.
    public func delete(_ key: String, base: Int64?) async throws -> WriteOutcome {
        try await write("delete", key: key, base: base, extra: [:])
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
    public func txn(_ operations: [TxnOperation]) async throws -> TxnOutcome {
        let ops: [JSONValue] = operations.map { operation in
            var fields: JSONObject = ["key": .string(operation.key)]
            if let base = operation.base { fields["base"] = .integer(base) } else { fields["force"] = .bool(true) }
            switch operation.action {
            case .put(let data): fields["op"] = .string("put"); fields["data"] = .object(data)
            case .patch(let patch): fields["op"] = .string("patch"); fields["patch"] = .object(patch)
            case .delete: fields["op"] = .string("delete")
            case .check: fields["op"] = .string("check")
            }
            return .object(fields)
        }
        let reply = try await send(["type": .string("txn"), "ops": .array(ops)])
        switch reply["type"]?.stringValue {
        case "ack":
            guard let seq = reply["seq"]?.integerValue, let versions = reply["versions"]?.objectValue else {
                throw unexpected(reply)
            }
            return .ack(seq: seq, versions: versions.compactMapValues(\.integerValue))
        case "conflict":
            guard case .array(let items)? = reply["conflicts"] else { throw unexpected(reply) }
            return .conflict(items.compactMap(Self.conflict))
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
