import HTTPTypes
import Hummingbird
import HummingbirdCore
import Logging
import NIOCore
import NIOWebSocket
import ServiceLifecycle
import UnixSignals
import VersoCore
import VersoDeflate
import VersoEngine
import VersoPostgres
import VersoSQLite
import VersoWebClient

/// A Verso server: the record engine over a SQLite store, served over WebSocket at `/v1/ws`,
/// with `GET /healthz`.
///
/// `run()` serves until SIGINT/SIGTERM (or `triggerShutdown()`), then stops taking requests,
/// commits every queued write, closes each connection with 1001 and returns.
public final class VersoServer: Sendable {
    public let configuration: ServerConfiguration
    /// The engine (exposed for tests and tools in the same process).
    public let engine: RecordEngine
    private let registry: ConnectionRegistry
    private let logger: Logger
    private let onListening: @Sendable (Int) async -> Void
    private let serviceGroup: ServiceGroup
    /// What checks access tokens (`--auth`); nil when the server does not authenticate.
    private let authority: TokenAuthority?
    /// The certificate of `--tls-cert-file`; nil for plain TCP.
    private let tls: ServerTLS?

    /// Checks the configuration (throwing `ConfigurationError`), opens the store and prepares the
    /// server. `onListening` is called with the bound port.
    public init(
        configuration: ServerConfiguration,
        logger: Logger,
        handleSignals: Bool = true,
        onListening: @escaping @Sendable (Int) async -> Void = { _ in }
    ) async throws {
        try configuration.validate()
        let authority = try await TokenAuthority.make(configuration.authentication, logger: logger)
        let tls = try configuration.tls.map { files throws(ConfigurationError) in
            try ServerTLS(files: files, logger: logger)
        }
        self.authority = authority
        self.tls = tls
        self.configuration = configuration
        self.logger = logger
        self.onListening = onListening
        self.registry = ConnectionRegistry(maxQueuedBytes: configuration.maxQueuedBytes)
        let store: any RecordStore
        if let storeURL = configuration.storeURL {
            store = try PostgresStore(
                configuration: PostgresStoreConfiguration(
                    url: storeURL,
                    historyLimit: configuration.historyLimit,
                    keepVersions: configuration.keepVersions,
                    idempotencyRetention: .seconds(configuration.idempotencyHours * 3600)
                ),
                logger: logger
            )
        } else {
            store = SQLiteStore(
                configuration: SQLiteStoreConfiguration(
                    directory: configuration.dataDirectory,
                    durability: configuration.durability,
                    historyLimit: configuration.historyLimit,
                    keepVersions: configuration.keepVersions,
                    idempotencyRetention: .seconds(configuration.idempotencyHours * 3600)
                ),
                logger: logger
            )
        }
        let metrics = configuration.metrics ? ServerMetrics() : nil
        var engineConfiguration = EngineConfiguration(allowForce: configuration.allowForce)
        let registry = registry
        engineConfiguration.onFellBehind = {
            registry.closeOpen(.goingAway, reason: "the server fell behind the shared store; resume with since")
        }
        engineConfiguration.deliveringBatch = { deliver in LoopFlushQueue.holdingFlushes(deliver) }
        if let metrics {
            engineConfiguration.onCommit = { commands, duration, sync in
                metrics.commit(commands: commands, duration: duration, sync: sync)
            }
        }
        let engine = try await RecordEngine(store: store, configuration: engineConfiguration, logger: logger)
        self.engine = engine
        let application = Self.makeApplication(
            configuration: configuration,
            originPolicy: try configuration.originPolicy(),
            engine: engine,
            registry: registry,
            authority: authority,
            tls: tls,
            metrics: metrics,
            logger: logger,
            onListening: onListening
        )
        var reload: [ServiceGroupConfiguration.ServiceConfiguration] = []
        if handleSignals, authority != nil || tls != nil {
            reload.append(.init(service: ReloadService(authority: authority, tls: tls)))
        }
        serviceGroup = ServiceGroup(
            configuration: .init(
                // Shut down last first: the drain, the HTTP server, the writer, the bookmarks.
                services: reload + [
                    .init(service: ProgressService(engine: engine)),
                    .init(service: EngineService(engine: engine)),
                    .init(service: application),
                    .init(
                        service: DrainService(
                            engine: engine,
                            registry: registry,
                            gracePeriod: configuration.shutdownGracePeriod,
                            logger: logger
                        )
                    ),
                ],
                gracefulShutdownSignals: handleSignals ? [.sigterm, .sigint] : [],
                logger: logger
            )
        )
    }

    /// Serves until shut down.
    public func run() async throws {
        try await serviceGroup.run()
    }

    /// Whether shutdown has committed every queued write (the engine's writer has stopped).
    public var hasDrained: Bool { engine.hasDrained }

    /// Bytes queued for all clients now (for tests and metrics).
    public var queuedBytes: Int { registry.queuedBytes }

    /// Connections closed with 1008 so far because they did not read (either queue limit).
    public var slowConnectionsClosed: Int { registry.slowConnectionsClosed }

    /// Reads the tokens or key file of `--auth` again, as SIGHUP does; returns the error when
    /// the file cannot be used (what was loaded before then stays in force). Nothing to do
    /// without `--auth`.
    @discardableResult
    public func reloadTokens() async -> ConfigurationError? {
        await authority?.reload()
    }

    /// Reads the TLS certificate and key again, as SIGHUP does; returns the error when they
    /// cannot be used (the pair loaded before then stays in use). Nothing to do without TLS.
    @discardableResult
    public func reloadCertificate() -> ConfigurationError? {
        tls?.reload()
    }

    /// Begins a graceful shutdown, as SIGTERM does.
    public func triggerShutdown() async {
        await serviceGroup.triggerGracefulShutdown()
    }

    private static func makeApplication(
        configuration: ServerConfiguration,
        originPolicy: OriginPolicy,
        engine: RecordEngine,
        registry: ConnectionRegistry,
        authority: TokenAuthority?,
        tls: ServerTLS?,
        metrics: ServerMetrics?,
        logger: Logger,
        onListening: @escaping @Sendable (Int) async -> Void
    ) -> some Service {
        let router = Router()
        router.get("/") { request, _ in
            guard let page = WebClientPage.html else { return Response(status: .notFound) }
            var headers: HTTPFields = [.contentType: "text/html; charset=utf-8"]
            for (name, value) in WebClientPage.securityHeaders(host: request.head.authority) {
                if let name = HTTPField.Name(name) { headers[name] = value }
            }
            return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: page)))
        }
        router.get("/healthz") { _, _ in
            engine.isAccepting
                ? Response(status: .ok, body: .init(byteBuffer: ByteBuffer(string: "ok\n")))
                : Response(status: .serviceUnavailable)
        }
        if let metrics {
            // The SQLite files' sizes; nothing to measure over PostgreSQL.
            let dataDirectory = configuration.storeURL == nil ? configuration.dataDirectory : nil
            router.get("/metrics") { request, _ in
                if let refusal = await Self.metricsRefusal(request.headers, authority: authority) { return refusal }
                let body = await metrics.render(engine: engine, registry: registry, dataDirectory: dataDirectory)
                return Response(
                    status: .ok,
                    headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                    body: .init(byteBuffer: ByteBuffer(bytes: body))
                )
            }
        }
        router.get("/v1/ws") { _, _ in
            let body = Replies.error(
                rid: nil,
                .badRequest("this path speaks WebSocket (RFC 6455): send a GET with Upgrade: websocket")
            )
            return Response(
                status: .badRequest,
                headers: [.contentType: "application/json"],
                body: .init(byteBuffer: ByteBuffer(bytes: body))
            )
        }
        let http1 = HTTP1Channel.Configuration(
            idleTimeout: nil,
            httpDecoderConfiguration: .init(
                maxHeaderFieldSize: configuration.maxRequestHeadBytes,
                maxHeaderListSize: configuration.maxRequestHeadBytes
            )
        )
        let connection = Connection(
            engine: engine,
            registry: registry,
            configuration: configuration,
            authority: authority,
            metrics: metrics,
            logger: logger
        )
        let guardLimits = HandshakeGuard.Limits(
            timeout: .init(configuration.handshakeTimeout),
            maxHeadBytes: configuration.maxRequestHeadBytes,
            closeGracePeriod: .init(configuration.closeGracePeriod)
        )
        let openConnections = OpenConnections()
        // Each kind of refusal is logged at most once a second, with a count of those between.
        let originRefusals = RefusalLog()
        let tokenRefusals = RefusalLog()
        let server = HTTPServerBuilder { responder in
            let upgrade = WebSocketUpgradeChannel(
                responder: responder,
                http1: http1
            ) { request, channel async throws -> WebSocketUpgradeChannel.Decision in
                guard request.path == "/v1/ws" || request.path?.hasPrefix("/v1/ws?") == true else {
                    return .refuse
                }
                // The origin check is here, where NIO asks whether to upgrade, rather than in the
                // byte-level HandshakeGuard: every handshake that could become a WebSocket passes
                // through here as a parsed request, however its bytes arrived (split or joined
                // across reads, pipelined behind another request), while the guard parses only the
                // head it is reading when a read begins and passes pipelined bytes behind it on
                // unread. (Today Hummingbird answers an upgrade pipelined behind another request
                // with a 307 and never upgrades it; should that change, it still comes here.) The
                // answer goes out through the guard, like the guard's own refusals.
                if let refusal = Self.originRefusal(
                    request,
                    policy: originPolicy,
                    channel: channel,
                    log: originRefusals,
                    logger: logger
                ) {
                    try await channel.eventLoop.submit {
                        try HandshakeGuard.refuse(refusal, on: channel.pipeline.syncOperations)
                    }.get()
                    return .refuse
                }
                // A token that is not valid is answered 401; no token at all upgrades, and every
                // request but hello gets unauthorized until one is given.
                let credentials = UpgradeToken(request.headerFields)
                let access: Connection.Access
                switch (authority, credentials.token) {
                case (nil, _):
                    access = .open
                case (_?, nil):
                    access = .anonymous
                case (let authority?, let token?):
                    switch await authority.check(token) {
                    case .valid(let identity, let expires):
                        access = Connection.Access(
                            token: token,
                            identity: identity,
                            expires: expires,
                            authority: authority
                        )
                    case .invalid(let reason):
                        tokenRefusals.record { unlogged in
                            logger.info(
                                "refused a WebSocket upgrade whose token is not valid (401)",
                                metadata: .refusal(["verso.reason": "\(reason)"], unloggedBefore: unlogged)
                            )
                        }
                        let refusal = UpgradeToken.refusal(reason: reason)
                        try await channel.eventLoop.submit {
                            try HandshakeGuard.refuse(refusal, on: channel.pipeline.syncOperations)
                        }.get()
                        return .refuse
                    }
                }
                var responseHeaders: HTTPFields = [:]
                if let selected = credentials.selectedProtocol { responseHeaders[.secWebSocketProtocol] = selected }
                let compression = PerMessageDeflate.agreement(requestHeaders: request.headerFields)
                if let compression { responseHeaders[.secWebSocketExtensions] = compression.responseHeader }
                let settings = WebSocketGuard.Settings(
                    allowsRSV1: compression != nil,
                    pingInterval: .init(configuration.pingInterval),
                    closeGracePeriod: .init(configuration.closeGracePeriod),
                    maxMessageBytes: configuration.maxMessageBytes,
                    logger: logger
                )
                return .accept(responseHeaders) { channel in
                    let closing = ClosingFlag()
                    let handlers = try WebSocketGuard.install(
                        on: channel.pipeline.syncOperations,
                        settings: settings,
                        closing: closing
                    )
                    connection.open(
                        channel: channel,
                        handlers: handlers,
                        compression: compression,
                        closing: closing,
                        access: access
                    )
                }
            }
            return GuardedChannel(
                inner: upgrade,
                limits: guardLimits,
                maxConnections: configuration.maxConnections,
                open: openConnections,
                tls: tls,
                logger: logger
            )
        }
        return Application(
            router: router,
            server: server,
            // A burst of thousands of clients connecting at once must queue, not be dropped: the
            // kernel caps this at net.core.somaxconn (4096 by default).
            configuration: .init(
                address: .hostname(configuration.host, port: configuration.port),
                serverName: nil,
                backlog: 4096
            ),
            onServerRunning: { channel in
                try? await channel.eventLoop.submit {
                    try channel.pipeline.syncOperations.addHandler(AcceptErrorLogger(logger: logger), position: .first)
                }.get()
                let port = channel.localAddress?.port ?? configuration.port
                let host =
                    configuration.host.contains(":") && !configuration.host.hasPrefix("[")
                    ? "[\(configuration.host)]" : configuration.host
                // Before "listening", which tools wait for.
                if !configuration.listensOnLoopbackOnly, configuration.authentication != .none, tls == nil {
                    logger.warning(
                        "listening on a non-loopback address without TLS: access tokens and records travel in clear text; put a TLS proxy in front",
                        metadata: ["verso.host": "\(configuration.host)", "verso.port": "\(port)"]
                    )
                } else if !configuration.listensOnLoopbackOnly {
                    logger.warning(
                        "--insecure: listening on a non-loopback address with no authentication and no TLS; anyone who can reach this port can read, overwrite and delete every record, and the traffic is in clear text",
                        metadata: ["verso.host": "\(configuration.host)", "verso.port": "\(port)"]
                    )
                }
                if configuration.allowAnyOrigin {
                    logger.warning(
                        "--allow-any-origin: a web page of any origin may open a WebSocket; any site a user of this machine visits can read and write the records"
                    )
                }
                logger.info(
                    "listening",
                    metadata: [
                        "verso.url": "\(tls == nil ? "ws" : "wss")://\(host):\(port)/v1/ws",
                        "verso.data": "\(configuration.dataDirectory)",
                    ]
                )
                await onListening(port)
            },
            logger: logger
        )
    }
}

/// Reads the tokens or key file of `--auth` and the TLS certificate again at every SIGHUP,
/// until shutdown.
private struct ReloadService: Service {
    let authority: TokenAuthority?
    let tls: ServerTLS?

    func run() async throws {
        let signals = await UnixSignalsSequence(trapping: .sighup)
        for await _ in signals.cancelOnGracefulShutdown() {
            // Each reload logs its own outcome; a failed one keeps what was loaded before.
            _ = await authority?.reload()
            _ = tls?.reload()
        }
    }
}

extension VersoServer {
    /// The `403` for a handshake whose `Origin` the policy refuses (logged through `log`, with the
    /// origin and the peer), or nil.
    /// Who may read `/metrics`: anyone on a server that does not authenticate (which listens
    /// on loopback unless `--insecure`); on one that does, a bearer token whose rules give read
    /// on every key. Nil when allowed, else the answer (401 or 403).
    static func metricsRefusal(_ headers: HTTPFields, authority: TokenAuthority?) async -> Response? {
        guard let authority else { return nil }
        let unauthorized = Response(status: .unauthorized, headers: [.wwwAuthenticate: "Bearer"])
        guard let token = UpgradeToken(headers).token else { return unauthorized }
        switch await authority.check(token) {
        case .valid(let identity, _):
            return identity.rules.allows(.read, onEveryKeyWithPrefix: "") ? nil : Response(status: .forbidden)
        case .invalid:
            return unauthorized
        }
    }

    static func originRefusal(
        _ request: HTTPRequest,
        policy: OriginPolicy,
        channel: any Channel,
        log: RefusalLog,
        logger: Logger
    ) -> HandshakeGuard.Refusal? {
        let origin = request.headerFields[.origin]
        guard !policy.verdict(origin: origin, host: request.authority).isAccepted, let origin else { return nil }
        let shown = OriginPolicy.displayable(origin)
        log.record { unlogged in
            logger.warning(
                "refused a WebSocket from a web page of another origin (403); to let it connect, give --allow-origin with its origin",
                metadata: .refusal(
                    [
                        "verso.origin": "\(shown)",
                        "verso.peer": "\(channel.remoteAddress.map { "\($0)" } ?? "unknown")",
                    ],
                    unloggedBefore: unlogged
                )
            )
        }
        return HandshakeGuard.Refusal(
            status: 403,
            reason: "Forbidden",
            code: .forbidden,
            message:
                "a web page from \(shown) may not open a WebSocket here: only the page this server serves at / and the origins it was started with (--allow-origin) may"
        )
    }
}

/// Runs the engine's writer; on shutdown lets it finish the queue, then closes the store.
///
/// It is the last service to be shut down, so the store closes after the HTTP server has stopped.
private struct EngineService: Service {
    let engine: RecordEngine

    func run() async throws {
        await withGracefulShutdownHandler {
            await withTaskCancellationHandler {
                async let follower: Void = engine.runFollower()
                await engine.runWriter()
                await follower
            } onCancel: {
                engine.stopAccepting()
            }
        } onGracefulShutdown: {
            engine.stopAccepting()
        }
        // The drain service stops the writer first; the store stays open until this service's turn.
        try? await gracefulShutdown()
        await engine.close()
    }
}

/// Sends subscriptions' due progress bookmarks once a second, until shutdown.
private struct ProgressService: Service {
    let engine: RecordEngine

    func run() async throws {
        while !Task.isCancelled, !Task.isShuttingDownGracefully {
            // Ends at once when shutdown reaches this service, last of all.
            guard (try? await cancelWhenGracefulShutdown({ try await Task.sleep(for: .seconds(1)) })) != nil else {
                return
            }
            engine.sendProgress()
        }
    }
}

/// First to hear of shutdown: refuses new requests, waits for queued writes to commit, then
/// closes every WebSocket with 1001 (going away) and waits briefly for clients to go.
private struct DrainService: Service {
    let engine: RecordEngine
    let registry: ConnectionRegistry
    let gracePeriod: Duration
    let logger: Logger

    func run() async throws {
        try? await gracefulShutdown()
        logger.info("shutting down: finishing queued writes")
        engine.stopAccepting()
        await engine.waitUntilDrained()
        // Clients that reconnect at once are closed again as they arrive; only the connections
        // open now are waited for.
        let open = registry.closeAll(.goingAway, reason: "server shutting down")
        let deadline = ContinuousClock.now + gracePeriod
        while registry.containsAny(of: open), ContinuousClock.now < deadline {
            try? await Task.sleep(for: .milliseconds(10))
        }
        logger.info("shut down: every queued write committed", metadata: ["verso.seq": "\(engine.currentSeq)"])
    }
}
