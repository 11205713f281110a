import Foundation
import Logging
import NIOCore
import NIOWebSocket
import VersoCore
import VersoDeflate
import VersoEngine
import VersoEventLoop

/// Serves one WebSocket connection: reads requests in order, queues writes in the engine
/// without waiting for their commit, answers every other request after the acks of the writes
/// before it, and writes replies and subscription updates through the connection's `Outbox`.
struct Connection {
    let engine: RecordEngine
    let registry: ConnectionRegistry
    let configuration: ServerConfiguration
    /// What checks the tokens clients present, when the server authenticates (`--auth`).
    let authority: TokenAuthority?
    /// Counts requests, writes and connections, when the server serves `/metrics`.
    let metrics: ServerMetrics?
    let logger: Logger

    /// Who a connection acts as: an explicit state, changed only by `hello`.
    enum Access {
        /// The server does not authenticate: every request is allowed.
        case open
        /// The server authenticates and the connection has presented no valid token yet.
        case anonymous
        /// Acting with this token of the tokens file, looked up again at every request, so
        /// that a token taken out of the file stops working at once.
        case listed(String)
        /// Acting as the identity of a verified signed token, until `expires` (then the
        /// connection is closed with 4401, and any request before that is `unauthorized`).
        case signed(Identity, expires: Date?)

        /// The access a valid token gives.
        init(token: String, identity: Identity, expires: Date?, authority: TokenAuthority) {
            switch authority {
            case .listed: self = .listed(token)
            case .signed: self = .signed(identity, expires: expires)
            }
        }

        /// When this access ends by itself (a signed token's `exp`).
        var expires: Date? {
            if case .signed(_, let expires) = self { expires } else { nil }
        }
    }

    /// Starts serving a connection that has just been upgraded, on its event loop, with the
    /// handlers `WebSocketGuard.install` put in place; returns at once. Nothing waits for the
    /// connection while it is open: it holds no task of its own.
    ///
    /// Requests come from the connection's `RequestReader` on the event loop: writes that can
    /// be queued at once are submitted there, every other request is handled in order by a
    /// task that runs while such requests wait (see `RequestDispatcher`). A message the reader
    /// finds wrong (1002, 1007, 1009) fails the connection through the `WebSocketGuard`, which
    /// also answers pings and completes the closing handshake.
    ///
    /// Replies and updates go out through the connection's `Outbox`, written on the channel's
    /// event loop. When the channel closes (the closing handshake completed, the outbox dropped
    /// a client that never answered its close, or the client went away), a task ends the
    /// connection: it lets queued requests finish, ends the subscriptions and waits for the
    /// writes in flight, then takes the connection out of the registry.
    ///
    /// `closing` is set by the connection's `WebSocketGuard` once the server sends (or decides to
    /// send) its close frame: from then on nothing the client sends is applied.
    ///
    /// `access` is what the upgrade's token (already checked) gives: `.open` on a server that
    /// does not authenticate, `.anonymous` when the upgrade carried no token.
    func open(
        channel: any Channel,
        handlers: (webSocket: WebSocketGuard, reader: RequestReader, frames: FrameWriter),
        compression: PerMessageDeflate.Agreement?,
        closing: ClosingFlag,
        access: Access
    ) {
        channel.eventLoop.preconditionInEventLoop()
        let session = UUID().uuidString.lowercased()
        var sessionLogger = logger
        sessionLogger[metadataKey: "verso.session"] = "\(session)"
        let logger = sessionLogger
        let outbox = Outbox(
            channel: channel,
            frameWriter: handlers.frames,
            webSocket: handlers.webSocket,
            compression: compression,
            maxQueuedBytes: configuration.maxQueuedBytesPerConnection,
            closeGracePeriod: .init(configuration.closeGracePeriod),
            registry: registry,
            metrics: metrics,
            logger: logger
        )
        registry.add(outbox)
        metrics?.connectionOpened()
        let writes = InFlightWrites(client: engine.newClient())
        let expiry = TokenExpiry(eventLoop: channel.eventLoop, outbox: outbox)
        expiry.arm(access.expires)
        watch(access, expiry: expiry)
        let dispatcher = RequestDispatcher(
            connection: self,
            access: access,
            eventLoop: channel.eventLoop,
            outbox: outbox,
            writes: writes,
            closing: closing
        )
        let presence = PresencePublisher(
            engine: engine,
            eventLoop: channel.eventLoop,
            connection: ObjectIdentifier(outbox),
            session: session
        )
        dispatcher.handler = { [self] request in
            await handleQueued(
                request,
                session: session,
                presence: presence,
                dispatcher: dispatcher,
                expiry: expiry,
                outbox: outbox,
                closing: closing,
                writes: writes
            )
        }
        dispatcher.reader = handlers.reader
        handlers.reader.attach(dispatcher)
        channel.closeFuture.whenComplete { [self] _ in
            // On the channel's event loop, where the dispatcher's state lives.
            Task(executorPreference: EventLoopTaskExecutor(channel.eventLoop)) {
                // No request arrives after the end of the channel.
                await dispatcher.waitUntilHandled()
                dispatcher.handler = nil
                presence.close()
                for (id, lane) in dispatcher.subscriptions { engine.unsubscribe(id, sink: lane) }
                dispatcher.subscriptions = [:]
                expiry.disarm()
                if case .listed(let tokens)? = authority { tokens.unwatch(ObjectIdentifier(expiry)) }
                await writes.wait(untilBelow: 1)
                await outbox.finishAndDrain()
                registry.remove(outbox)
                logger.trace("connection ended")
            }
        }
    }

    /// Handles one request the dispatcher queued (requests are handled one at a time, in order).
    private func handleQueued(
        _ request: QueuedRequest,
        session: String,
        presence: PresencePublisher,
        dispatcher: RequestDispatcher,
        expiry: TokenExpiry,
        outbox: Outbox,
        closing: ClosingFlag,
        writes: InFlightWrites
    ) async {
        // Once a close is under way, requests still queued are not applied.
        guard !closing.isSet, !outbox.isClosing else { return }
        switch request {
        case .request(let envelope):
            await handle(
                envelope,
                session: session,
                presence: presence,
                dispatcher: dispatcher,
                expiry: expiry,
                outbox: outbox,
                closing: closing,
                writes: writes
            )
        case .rejected(let rejected):
            await writes.wait(untilBelow: 1)
            logRefusal(rejected.error, rid: rejected.rid, session: session)
            outbox.send(Replies.error(rid: rejected.rid, rejected.error))
        case .binary:
            await writes.wait(untilBelow: 1)
            outbox.send(
                Replies.error(
                    rid: nil,
                    .badRequest("binary frames are not accepted: send each request as JSON in a text frame")
                )
            )
        case .refused(let rid, let error):
            await writes.wait(untilBelow: 1)
            outbox.send(Replies.error(rid: rid, error))
        }
    }

    /// Has a connection acting with a listed token ended (4401) when a reload of the tokens file
    /// withdraws the token or changes what it stands for.
    private func watch(_ access: Access, expiry: TokenExpiry) {
        guard case .listed(let token) = access, case .listed(let tokens)? = authority,
            let identity = tokens.identity(for: token)
        else { return }
        tokens.watch(ObjectIdentifier(expiry), token: token, identity: identity) { [expiry] reason in
            expiry.end(withdrawn: reason)
        }
    }

    /// Most writes one connection may have queued in the engine before its next request waits.
    static let maxWritesInFlight = 128

    private func handle(
        _ envelope: RequestEnvelope,
        session: String,
        presence: PresencePublisher,
        dispatcher: RequestDispatcher,
        expiry: TokenExpiry,
        outbox: Outbox,
        closing: ClosingFlag,
        writes: InFlightWrites
    ) async {
        let rid = envelope.rid
        if let command = writeCommand(envelope, access: dispatcher.access) {
            await submit(
                command,
                rid: rid,
                access: dispatcher.access,
                outbox: outbox,
                closing: closing,
                writes: writes
            )
            return
        }
        // Every other reply follows the acks of the writes before it, and sees them.
        await writes.wait(untilBelow: 1)
        do throws(RequestError) {
            if case .hello(let client, let token) = envelope.request {
                guard engine.isAccepting else {
                    throw RequestError(.unavailable, "the server is shutting down; reconnect and retry")
                }
                defer { presence.client = client }
                var user: String?
                if let authority, let token {
                    switch await authority.check(token) {
                    case .valid(let identity, let expires):
                        // A token in hello refreshes the connection's identity, never changes it:
                        // what it subscribed to was checked against the rules it had.
                        if let current = try? self.identity(for: dispatcher.access), current != identity {
                            throw RequestError(
                                .forbidden,
                                "this token stands for another user or other rules than the connection's (\(current.user)): open a new connection with it"
                            )
                        }
                        dispatcher.access = Access(
                            token: token,
                            identity: identity,
                            expires: expires,
                            authority: authority
                        )
                        expiry.arm(expires)
                        watch(dispatcher.access, expiry: expiry)
                        user = identity.user
                    case .invalid(let reason):
                        throw Self.badToken(reason)
                    }
                } else if case .anonymous = dispatcher.access {
                    user = nil
                } else {
                    user = try identity(for: dispatcher.access)?.user
                }
                outbox.send(
                    Replies.welcome(
                        rid: rid,
                        session: session,
                        epoch: engine.epoch,
                        seq: engine.currentSeq,
                        allowsForce: engine.configuration.allowForce,
                        user: user
                    )
                )
                return
            }
            let rules = try rules(for: dispatcher.access)
            switch envelope.request {
            case .write, .txn, .batch, .hello:
                break
            case .get(let key):
                guard rules.allows(.read, on: key) else {
                    outbox.send(Replies.error(rid: rid, Self.forbidden(.read, key), key: key))
                    return
                }
                let stored = try await engine.record(key)
                guard let stored, let data = stored.data else {
                    let message = stored == nil ? "no record at \"\(key)\"" : "the record at \"\(key)\" was deleted"
                    let tombstone = stored.map { RecordState(version: $0.version, data: nil) }
                    outbox.send(Replies.error(rid: rid, RequestError(.notFound, message), key: key, current: tombstone))
                    return
                }
                outbox.send(
                    Replies.snapshot(
                        rid: rid,
                        sub: nil,
                        record: RecordSnapshot(key: key, version: stored.version, data: data)
                    )
                )
            case .subscribe(let filter, let since, let epoch, let progress):
                if let (error, key) = Self.readRefusal(filter, rules) {
                    outbox.send(Replies.error(rid: rid, error, key: key))
                    return
                }
                guard dispatcher.subscriptions.count < RequestLimits.maxSubscriptionsPerConnection else {
                    throw Self.tooManySubscriptions
                }
                // Live updates wait in the lane, counted against this connection's limit, until
                // the starting records are queued: they go out as the client reads them.
                let lane = outbox.makeLane()
                defer { lane.release() }
                let start = try await engine.subscribe(
                    filter,
                    since: since,
                    epoch: epoch,
                    progress: progress.map { .seconds($0) },
                    sink: lane
                )
                dispatcher.subscriptions[start.id] = lane
                engine.activate(start)
                outbox.send(
                    Replies.subscribed(
                        rid: rid,
                        sub: start.id,
                        seq: start.seq,
                        reset: start.reset,
                        snapshots: start.snapshots.count
                    )
                )
                if start.replay.isEmpty {
                    let bytes = start.snapshots.reduce(0) { $0 + $1.encodedSizeBound }
                    await outbox.send(
                        paced: start.snapshots.lazy.map { Replies.snapshot(rid: nil, sub: start.id, record: $0) },
                        totalBytes: bytes
                    )
                } else {
                    let bytes = start.replay.reduce(0) { $0 + $1.encodedSizeBound }
                    await outbox.send(
                        paced: start.replay.lazy.map { EncodedUpdate($0).message(sub: start.id) },
                        totalBytes: bytes
                    )
                }
            case .unsubscribe(let sub):
                guard let lane = dispatcher.subscriptions.removeValue(forKey: sub), engine.unsubscribe(sub, sink: lane)
                else {
                    throw RequestError(.notFound, "this connection has no subscription \(sub)")
                }
                outbox.send(Replies.unsubscribed(rid: rid, sub: sub))
            case .list(let prefix, let after, let limit):
                let page = try await engine.list(prefix: prefix, after: after, limit: limit)
                // Keys the identity may not read are left out; `next` still moves past them.
                let readable = page.records.filter { rules.allows(.read, on: $0.key) }
                let reply = Replies.records(rid: rid, records: readable, next: page.next)
                await outbox.send(paced: CollectionOfOne(reply), totalBytes: reply.count)
            case .history(let key, let before, let limit):
                guard rules.allows(.read, on: key) else {
                    outbox.send(Replies.error(rid: rid, Self.forbidden(.read, key), key: key))
                    return
                }
                guard let history = try await engine.history(of: key, before: before, limit: limit) else {
                    throw RequestError(.notFound, "no record at \"\(key)\" (it never existed)")
                }
                let reply = Replies.history(rid: rid, key: key, history)
                await outbox.send(paced: CollectionOfOne(reply), totalBytes: reply.count)
            case .presence(let key, let state):
                guard rules.allows(.presence, on: key) || rules.allows(.write, on: key) else {
                    let refusal = RequestError(
                        .forbidden,
                        "no rule of this token allows presence (or write) on \"\(key)\""
                    )
                    outbox.send(Replies.error(rid: rid, refusal, key: key))
                    return
                }
                let user = try identity(for: dispatcher.access)?.user
                let shown = try presence.set(state.map { JSONValue.object($0).encodedBytes }, on: key, user: user)
                outbox.send(Replies.presence(rid: rid, key: key, shown))
            }
        } catch {
            logRefusal(error, rid: rid, session: session)
            outbox.send(Replies.error(rid: rid, error))
        }
    }

    /// Logs a request answered with an error, at debug: its code and the session and `rid` it
    /// came with, never its data.
    private func logRefusal(_ error: RequestError, rid: JSONValue?, session: String) {
        var metadata: Logger.Metadata = ["verso.session": "\(session)", "verso.code": "\(error.code.rawValue)"]
        if let rid { metadata["verso.rid"] = "\(rid.stringValue ?? rid.encodedString)" }
        logger.debug("request refused", metadata: metadata)
    }

    static let idempotencyKeyReused = RequestError(
        .badRequest,
        "this idempotency_key was already used for a different request: use a new key for a new write"
    )

    static let tooManySubscriptions = RequestError(
        .tooLarge,
        "this connection already holds \(RequestLimits.maxSubscriptionsPerConnection) subscriptions, the most one connection may hold: unsubscribe from one, or open another connection"
    )

    /// Queues a write in the engine without waiting for its commit; its ack (or conflict) is
    /// sent when it is decided. A refusal waits for the writes before it, to keep reply order.
    /// A write (or txn) with any operation its identity may not make is refused whole.
    private func submit(
        _ command: WriteCommand,
        rid: JSONValue?,
        access: Access,
        outbox: Outbox,
        closing: ClosingFlag,
        writes: InFlightWrites
    ) async {
        let rules: AccessRules
        do throws(RequestError) {
            rules = try self.rules(for: access)
        } catch {
            metrics?.count(.refused(error))
            await writes.wait(untilBelow: 1)
            outbox.send(Replies.error(rid: rid, error))
            return
        }
        for operation in command.operations {
            guard let right = rules.missingRight(for: operation) else { continue }
            let refusal = Self.forbidden(right, operation.key)
            metrics?.count(.refused(refusal))
            await writes.wait(untilBelow: 1)
            outbox.send(Replies.error(rid: rid, refusal, key: operation.key))
            return
        }
        await writes.wait(untilBelow: Self.maxWritesInFlight)
        // A close may have begun while this write waited for room: then it is not applied.
        guard !closing.isSet, !outbox.isClosing else { return }
        writes.begin()
        guard let refusal = enqueue(command, rid: rid, rules: rules, outbox: outbox, writes: writes) else { return }
        await writes.wait(untilBelow: 1)
        outbox.send(Replies.error(rid: rid, refusal))
    }

    /// Queues a write already counted in `writes`; its reply goes out through `outbox` when
    /// it is decided. Returns the engine's refusal instead (the count given back), which the
    /// caller answers once the writes before it are answered.
    func enqueue(
        _ command: WriteCommand,
        rid: JSONValue?,
        rules: AccessRules,
        outbox: Outbox,
        writes: InFlightWrites
    ) -> RequestError? {
        let shape = command.shape
        let metrics = metrics
        let refusal = engine.enqueue(command, from: writes.client) { result in
            metrics?.count(result)
            outbox.send(Self.reply(to: result, rid: rid, shape: shape, rules: rules))
            writes.end()
        }
        if let refusal {
            writes.end()
            metrics?.count(.refused(refusal))
        }
        return refusal
    }

    /// The reply to a write, encoded; a conflict on a key `rules` do not let the writer read
    /// withholds the data.
    static func reply(
        to result: WriteResult,
        rid: JSONValue?,
        shape: WriteShape,
        rules: AccessRules = .everything
    ) -> [UInt8] {
        switch result {
        case .refused(let error): Replies.error(rid: rid, error)
        case .outcome(let outcome): reply(to: outcome, rid: rid, shape: shape, rules: rules)
        }
    }

    private static func reply(
        to outcome: CommandOutcome,
        rid: JSONValue?,
        shape: WriteShape,
        rules: AccessRules,
        replayed: Bool = false
    ) -> [UInt8] {
        switch outcome {
        case .applied(let seq, _, let versions):
            if shape == .txn {
                return Replies.txnAck(rid: rid, seq: seq, versions: versions, replayed: replayed)
            }
            let only = versions[0]
            return Replies.ack(
                rid: rid,
                key: only.key,
                version: only.version,
                seq: seq,
                merged: only.merged,
                replayed: replayed
            )
        case .conflict(var details):
            for index in details.indices where !rules.allows(.read, on: details[index].key) {
                details[index].data = nil
                details[index].deleted = false
                details[index].hidden = true
                // Which values changed would tell what the data holds.
                details[index].merge?.clashes = []
                details[index].changed = nil
                details[index].by = nil
            }
            return shape == .txn ? Replies.txnConflict(rid: rid, details) : Replies.conflict(rid: rid, details[0])
        case .batch(let outcomes):
            let results = outcomes.map { reply(to: $0, rid: nil, shape: .single, rules: rules) }
            return Replies.results(rid: rid, results, replayed: replayed)
        case .replayed(let original):
            return reply(to: original, rid: rid, shape: shape, rules: rules, replayed: true)
        case .keyReused:
            return Replies.error(rid: rid, Self.idempotencyKeyReused)
        case .notFound(let key, let current):
            let message =
                current == nil ? "no record at \"\(key)\" to delete" : "the record at \"\(key)\" is already deleted"
            return Replies.error(rid: rid, RequestError(.notFound, message), key: key, current: current)
        }
    }

    // MARK: Access

    /// The answer to a token that is not valid; `reason` says why (never the token itself).
    static func badToken(_ reason: String) -> RequestError {
        RequestError(.unauthorized, "the token is not valid on this server: \(reason); check it, or ask for a new one")
    }

    /// The command a write, txn or batch request makes, its idempotency key (if any) scoped to the
    /// identity the connection acts as; nil for any other request.
    func writeCommand(_ envelope: RequestEnvelope, access: Access) -> WriteCommand? {
        let operations: [WriteOperation]
        let shape: WriteShape
        switch envelope.request {
        case .write(let operation): (operations, shape) = ([operation], .single)
        case .txn(let txn): (operations, shape) = (txn, .txn)
        case .batch(let batch): (operations, shape) = (batch, .batch)
        default: return nil
        }
        // A connection without a valid identity has its write refused before this is used.
        let user = (try? identity(for: access))??.user
        let claim = envelope.idempotencyKey.map { key in
            IdempotencyClaim(
                scope: user.map { "user:\($0)" } ?? "",
                key: key,
                operations: operations,
                shape: shape
            )
        }
        return WriteCommand(operations: operations, shape: shape, idempotency: claim, author: user)
    }

    /// The rules the connection acts under now; `unauthorized` when it has no valid token.
    func rules(for access: Access) throws(RequestError) -> AccessRules {
        try identity(for: access)?.rules ?? .everything
    }

    /// Who the connection acts as now: nil on a server that does not authenticate;
    /// `unauthorized` when it has no valid token (none yet, withdrawn, or expired).
    private func identity(for access: Access) throws(RequestError) -> Identity? {
        switch access {
        case .open:
            return nil
        case .anonymous:
            throw RequestError(
                .unauthorized,
                "this server needs an access token: send it in the upgrade (Authorization: Bearer TOKEN) or in hello (\"token\")"
            )
        case .listed(let token):
            guard case .listed(let tokens)? = authority, let identity = tokens.identity(for: token) else {
                throw RequestError(
                    .unauthorized,
                    "the token this connection used is no longer valid on this server: send a valid one in hello (\"token\") or reconnect with one"
                )
            }
            return identity
        case .signed(let identity, let expires):
            if let expires, Date() >= expires { throw TokenExpiry.expired(expires) }
            return identity
        }
    }

    static func forbidden(_ right: AccessRight, _ key: String) -> RequestError {
        RequestError(.forbidden, "no rule of this token allows \(right.rawValue) on \"\(key)\"")
    }

    /// Why `rules` do not let a connection subscribe to `filter`, with the key refused, or nil:
    /// a subscription needs read on each of its keys, or one rule giving read on its whole prefix.
    private static func readRefusal(_ filter: SubscriptionFilter, _ rules: AccessRules) -> (RequestError, key: String?)?
    {
        switch filter {
        case .keys(let keys):
            guard let refused = keys.sorted(by: <).first(where: { !rules.allows(.read, on: $0.string) }) else {
                return nil
            }
            return (forbidden(.read, refused.string), refused.string)
        case .prefix(let prefix):
            guard !rules.allows(.read, onEveryKeyWithPrefix: prefix) else { return nil }
            return (
                RequestError(
                    .forbidden,
                    "no rule of this token allows read on every key starting with \"\(prefix)\": subscribe to a prefix one rule covers, or to keys"
                ), nil
            )
        }
    }
}
