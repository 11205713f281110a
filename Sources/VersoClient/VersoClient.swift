import HTTPTypes
import Logging
import NIOCore
import NIOSSL
import NIOWebSocket
import Synchronization
import VersoCore
import WSClient
import WSCompression

/// Settings of a `VersoClient`, each with a default.
public struct VersoClientConfiguration: Sendable {
    /// The server's WebSocket URL. Default `ws://127.0.0.1:7070/v1/ws`.
    public var url: String
    /// Offer permessage-deflate. Default true.
    public var compression: Bool
    /// How long a request waits for its reply (including waiting for a connection). Default 10 s.
    public var requestTimeout: Duration
    /// How long one connection attempt may take, up to the server's answer to the WebSocket
    /// upgrade; then the attempt counts as failed (and, with `reconnect`, is tried again).
    /// Default 10 s.
    public var connectTimeout: Duration = .seconds(10)
    /// Reconnect after the connection drops. Default true.
    public var reconnect: Bool
    /// First delay before reconnecting; doubles up to `maxBackoff`. Default 100 ms.
    public var initialBackoff: Duration
    /// Longest delay between reconnect attempts. Default 5 s.
    public var maxBackoff: Duration
    /// Sent in `hello`. Default nil.
    public var clientName: String?
    /// An access token, for a server that authenticates (Protocol.md 2.1): sent in every
    /// (re)connect's upgrade as `Authorization: Bearer`. Default nil.
    public var token: String?
    /// Asked for a token before every (re)connect, instead of `token`: for tokens that expire
    /// (the server closes a connection whose token expires with 4401, and the client then
    /// reconnects with a fresh one). Default nil.
    public var tokenProvider: (@Sendable () async throws -> String)?
    /// For `wss://` URLs: a PEM file of the certificate authorities to trust instead of the
    /// system's (a private CA, or a self-signed server certificate). Default nil.
    public var caFile: String?

    public init(
        url: String = "ws://127.0.0.1:7070/v1/ws",
        compression: Bool = true,
        requestTimeout: Duration = .seconds(10),
        reconnect: Bool = true,
        initialBackoff: Duration = .milliseconds(100),
        maxBackoff: Duration = .seconds(5),
        clientName: String? = nil
    ) {
        self.url = url
        self.compression = compression
        self.requestTimeout = requestTimeout
        self.reconnect = reconnect
        self.initialBackoff = initialBackoff
        self.maxBackoff = maxBackoff
        self.clientName = clientName
    }
}

/// A typed Verso client with automatic reconnect.
///
/// Use it inside `VersoClient.with(_:_:)`, which connects, runs your code and closes everything
/// it started. After a dropped connection the client reconnects with backoff and resumes every
/// subscription from the last seq it delivered (`since`); when the server cannot replay that far,
/// the subscription yields `.started(reset: true)` and fresh snapshots. Requests in flight when
/// the connection drops fail with `.disconnected`.
public final class VersoClient: Sendable {
    fileprivate struct Slot {
        var continuation: CheckedContinuation<JSONValue, any Error>?
        var reply: Result<JSONValue, VersoClientError>?
        /// Runs in the reader, under the lock, before anything after the reply is dispatched.
        var onReply: (@Sendable (JSONValue, inout State) -> Void)?
    }

    fileprivate struct LocalSubscription {
        let filter: SubscriptionFilter
        let continuation: AsyncThrowingStream<SubscriptionEvent, any Error>.Continuation
        /// The last seq delivered (start seq, then each update's seq): where a resume starts.
        var lastSeq: Int64?
        var serverSub: Int64?
        var snapshotsRemaining = 0
    }

    fileprivate struct State {
        var outgoing: AsyncStream<String>.Continuation?
        var ready = false
        var readyWaiters: [Int: CheckedContinuation<Void, Never>] = [:]
        var nextWaiter = 0
        var session: String?
        var epoch: String?
        var allowsForce = false
        var nextRID: Int64 = 1
        var pending: [Int64: Slot] = [:]
        var subscriptions: [Int: LocalSubscription] = [:]
        var nextLocalSub = 1
        var serverSubs: [Int64: Int] = [:]
        var closed = false
        var everConnected = false
        var lastFailure: String?
    }

    public let configuration: VersoClientConfiguration
    private let state = Mutex(State())
    private let logger: Logger
    private let stateContinuation: AsyncStream<ConnectionState>.Continuation
    /// Connection state changes, for a status line. One consumer.
    public let connectionStates: AsyncStream<ConnectionState>

    private init(configuration: VersoClientConfiguration, logger: Logger) {
        self.configuration = configuration
        self.logger = logger
        (connectionStates, stateContinuation) = AsyncStream.makeStream(bufferingPolicy: .bufferingNewest(16))
    }

    /// Connects, runs `body` with the client, then closes the connection and every subscription.
    ///
    /// Throws `.cannotConnect` if the first connection fails.
    public static func with<T: Sendable>(
        _ configuration: VersoClientConfiguration,
        logger: Logger = Logger(label: "verso.client", factory: { _ in SwiftLogNoOpLogHandler() }),
        _ body: (VersoClient) async throws -> T
    ) async throws -> T {
        let client = VersoClient(configuration: configuration, logger: logger)
        return try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { await client.maintainConnection() }
            defer {
                client.close()
                group.cancelAll()
            }
            try await client.waitUntilFirstConnection()
            return try await body(client)
        }
    }

    /// The session id the server gave the current connection.
    public var session: String? { state.withLock { $0.session } }

    /// The store's epoch.
    public var epoch: String? { state.withLock { $0.epoch } }

    /// Whether the server accepts forced writes (from its `welcome`).
    public var serverAllowsForce: Bool { state.withLock { $0.allowsForce } }

    // MARK: Connection

    private func setConnectionState(_ connectionState: ConnectionState) {
        stateContinuation.yield(connectionState)
    }

    private func maintainConnection() async {
        var backoff = configuration.initialBackoff
        while !Task.isCancelled, !state.withLock({ $0.closed }) {
            setConnectionState(.connecting)
            let connectedAt = ContinuousClock.now
            let reason = await connectOnce()
            let everConnected = state.withLock { state -> Bool in
                state.lastFailure = reason
                return state.everConnected
            }
            if state.withLock({ $0.closed }) { break }
            setConnectionState(.disconnected(reason: reason))
            wakeReadyWaiters()
            guard everConnected, configuration.reconnect else { break }
            if ContinuousClock.now - connectedAt > .seconds(10) { backoff = configuration.initialBackoff }
            let jitter = Double.random(in: 0.8...1.2)
            try? await Task.sleep(for: backoff * jitter)
            backoff = min(backoff * 2, configuration.maxBackoff)
        }
        state.withLock { $0.closed = true }
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
    private func connectOnce() async -> String {
        var wsConfiguration = WebSocketClientConfiguration(maxFrameSize: 1 << 24, validateUTF8: true)
        let token: String?
        let tls: TLSConfiguration?
        do {
            token = try await configuration.tokenProvider?() ?? configuration.token
            tls = try ClientTLS.configuration(url: configuration.url, caFile: configuration.caFile)
        } catch {
            return "\(error)"
        }
        if let token { wsConfiguration.additionalHeaders[.authorization] = "Bearer \(token)" }
        if configuration.compression {
            wsConfiguration.extensions = [
                WebSocketExtensionFactory.perMessageDeflate(maxDecompressedFrameSize: 1 << 24).build()
            ]
        }
        do {
            let url = configuration.url
            let frame = try await UpgradeDeadline.run(timeout: configuration.connectTimeout) {
                [wsConfiguration, logger] upgraded in
                try await WebSocketClient.connect(
                    url: url,
                    configuration: wsConfiguration,
                    tlsConfiguration: tls,
                    logger: logger
                ) { inbound, outbound, _ in
                    // An answer that came after the deadline: this attempt was given up on.
                    guard upgraded() else { return }
                    let (outgoing, continuation) = AsyncStream<String>.makeStream()
                    self.state.withLock { $0.outgoing = continuation }
                    try await withThrowingTaskGroup(of: Void.self) { group in
                        group.addTask {
                            for await text in outgoing {
                                try await outbound.write(.text(text))
                            }
                        }
                        group.addTask {
                            try await self.startSession()
                        }
                        defer { group.cancelAll() }
                        for try await message in inbound.messages(maxSize: 1 << 24) {
                            if case .text(let text) = message { self.dispatch(text) }
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

    /// Sends hello and resumes every subscription; then marks the connection ready.
    private func startSession() async throws {
        var hello: JSONObject = ["type": .string("hello")]
        if let name = configuration.clientName { hello["client"] = .string(name) }
        let welcome = try await send(hello, waitForReady: false)
        guard welcome["type"]?.stringValue == "welcome", let session = welcome["session"]?.stringValue else {
            throw VersoClientError(.protocolViolation, "expected welcome, got \(welcome.encodedString)")
        }
        let previousEpoch = state.withLock { state -> String? in
            defer {
                state.session = session
                state.epoch = welcome["epoch"]?.stringValue
                state.allowsForce = welcome["force"] == .bool(true)
            }
            return state.epoch
        }
        let subscriptions = state.withLock { state in
            state.subscriptions.map { ($0.key, $0.value.filter, $0.value.lastSeq) }
        }
        for (local, filter, lastSeq) in subscriptions {
            do {
                _ = try await sendSubscribe(
                    local: local,
                    filter: filter,
                    since: lastSeq,
                    epoch: previousEpoch,
                    waitForReady: false
                )
            } catch {
                let continuation = state.withLock { $0.subscriptions.removeValue(forKey: local)?.continuation }
                continuation?.finish(throwing: error)
            }
        }
        let waiters = state.withLock { state -> [CheckedContinuation<Void, Never>] in
            state.ready = true
            state.everConnected = true
            defer { state.readyWaiters = [:] }
            return Array(state.readyWaiters.values)
        }
        for waiter in waiters { waiter.resume() }
        setConnectionState(.connected(session: session))
    }

    private func detach(reason: String) {
        let (slots, subscriptions) = state.withLock { state -> ([Slot], [LocalSubscription]) in
            state.outgoing?.finish()
            state.outgoing = nil
            state.ready = false
            state.serverSubs = [:]
            for key in state.subscriptions.keys { state.subscriptions[key]?.serverSub = nil }
            defer { state.pending = [:] }
            return (Array(state.pending.values), configuration.reconnect ? [] : Array(state.subscriptions.values))
        }
        for slot in slots {
            slot.continuation?.resume(throwing: VersoClientError(.disconnected, reason))
        }
        for subscription in subscriptions {
            subscription.continuation.finish(throwing: VersoClientError(.disconnected, reason))
        }
    }

    private func wakeReadyWaiters() {
        let waiters = state.withLock { state -> [CheckedContinuation<Void, Never>] in
            defer { state.readyWaiters = [:] }
            return Array(state.readyWaiters.values)
        }
        for waiter in waiters { waiter.resume() }
    }

    private func waitUntilFirstConnection() async throws {
        while true {
            let status = state.withLock { state -> (ready: Bool, failed: String?) in
                (state.ready, state.everConnected || state.lastFailure == nil ? nil : state.lastFailure)
            }
            if status.ready { return }
            if let failure = status.failed {
                throw VersoClientError(.cannotConnect, "\(configuration.url): \(failure)")
            }
            if state.withLock({ $0.closed }) { throw VersoClientError(.closed, "the client was closed") }
            await waitForReadyOrChange()
        }
    }

    private func waitForReadyOrChange() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let resumeNow = state.withLock { state -> Bool in
                if state.ready || state.closed || (!state.everConnected && state.lastFailure != nil) { return true }
                let id = state.nextWaiter
                state.nextWaiter += 1
                state.readyWaiters[id] = continuation
                return false
            }
            if resumeNow { continuation.resume() }
        }
    }

    /// Waits (at most `timeout`) until the connection is ready.
    private func waitUntilReady(deadline: ContinuousClock.Instant) async throws {
        while true {
            let (ready, closed) = state.withLock { ($0.ready, $0.closed) }
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
    private func close() {
        let outgoing = state.withLock { state -> AsyncStream<String>.Continuation? in
            state.closed = true
            return state.outgoing
        }
        outgoing?.finish()
        wakeReadyWaiters()
    }

    // MARK: Requests

    /// Sends a request and returns the reply. `onReply` runs in the reader before any later message.
    private func send(
        _ fields: JSONObject,
        waitForReady: Bool = true,
        onReply: (@Sendable (JSONValue, inout State) -> Void)? = nil
    ) async throws -> JSONValue {
        let deadline = ContinuousClock.now + configuration.requestTimeout
        if waitForReady { try await waitUntilReady(deadline: deadline) }
        let rid = state.withLock { state -> Int64 in
            defer { state.nextRID += 1 }
            state.pending[state.nextRID] = Slot(onReply: onReply)
            return state.nextRID
        }
        var fields = fields
        fields["rid"] = .integer(rid)
        let text = JSONValue.object(fields).encodedString
        let sent = state.withLock { state -> Bool in
            guard let outgoing = state.outgoing, case .enqueued = outgoing.yield(text) else { return false }
            return true
        }
        guard sent else {
            state.withLock { $0.pending[rid] = nil }
            throw VersoClientError(.disconnected, "not connected to \(configuration.url)")
        }
        return try await withThrowingTaskGroup(of: JSONValue.self) { group in
            group.addTask { try await self.reply(to: rid) }
            group.addTask {
                try await Task.sleep(until: deadline)
                throw VersoClientError(.timeout, "no reply within \(self.configuration.requestTimeout)")
            }
            defer {
                group.cancelAll()
                state.withLock { $0.pending[rid] = nil }
            }
            return try await group.next()!
        }
    }

    private func reply(to rid: Int64) async throws -> JSONValue {
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<JSONValue, any Error>) in
                let ready = state.withLock { state -> Result<JSONValue, VersoClientError>? in
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

    /// Routes one message from the server.
    private func dispatch(_ text: String) {
        let message: JSONValue
        do {
            message = try JSONParser.parse(text, maxDepth: JSONParser.maxReplyDepth)
        } catch {
            logger.warning("unparseable message from server", metadata: ["verso.error": "\(error)"])
            return
        }
        if let rid = message["rid"]?.integerValue {
            let continuation = state.withLock { state -> CheckedContinuation<JSONValue, any Error>? in
                guard var slot = state.pending[rid] else { return nil }
                slot.onReply?(message, &state)
                slot.onReply = nil
                if let continuation = slot.continuation {
                    state.pending[rid] = nil
                    return continuation
                }
                slot.reply = .success(message)
                state.pending[rid] = slot
                return nil
            }
            continuation?.resume(returning: message)
            return
        }
        guard let sub = message["sub"]?.integerValue else { return }
        state.withLock { state in
            guard let local = state.serverSubs[sub], var subscription = state.subscriptions[local] else { return }
            switch message["type"]?.stringValue {
            case "snapshot":
                if let record = Self.record(message) { subscription.continuation.yield(.snapshot(record)) }
                subscription.snapshotsRemaining -= 1
                if subscription.snapshotsRemaining == 0 { subscription.continuation.yield(.synced) }
            case "update":
                guard let key = message["key"]?.stringValue, let version = message["version"]?.integerValue,
                    let seq = message["seq"]?.integerValue
                else { return }
                subscription.continuation.yield(
                    .update(key: key, version: version, seq: seq, data: message["data"]?.objectValue)
                )
                subscription.lastSeq = max(subscription.lastSeq ?? 0, seq)
            default:
                return
            }
            state.subscriptions[local] = subscription
        }
    }

    private static func record(_ message: JSONValue) -> Record? {
        guard let key = message["key"]?.stringValue, let version = message["version"]?.integerValue,
            let data = message["data"]?.objectValue
        else { return nil }
        return Record(key: key, version: version, data: data)
    }

    private static func serverError(_ reply: JSONValue) -> VersoClientError? {
        guard reply["type"]?.stringValue == "error" else { return nil }
        let code = reply["code"]?.stringValue.flatMap(ErrorCode.init(rawValue:)) ?? .internal
        return VersoClientError(.server(code), reply["message"]?.stringValue ?? "no message")
    }

    private static func conflict(_ value: JSONValue) -> RecordConflict? {
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

    private func unexpected(_ reply: JSONValue) -> VersoClientError {
        Self.serverError(reply) ?? VersoClientError(.protocolViolation, reply.encodedString)
    }

    // MARK: Typed API

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

    private func write(_ type: String, key: String, base: Int64?, extra: JSONObject) async throws -> WriteOutcome {
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

    private func sendSubscribe(
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

    private func endSubscription(_ local: Int) {
        state.withLock { state in
            guard let subscription = state.subscriptions.removeValue(forKey: local) else { return }
            if let sub = subscription.serverSub {
                state.serverSubs[sub] = nil
                // The reply is not awaited; an unknown rid is ignored by the reader.
                let text = JSONValue.object(["type": .string("unsubscribe"), "sub": .integer(sub)]).encodedString
                state.outgoing?.yield(text)
            }
        }
    }
}
