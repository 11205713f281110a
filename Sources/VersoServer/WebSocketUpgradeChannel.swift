import HTTPTypes
import HummingbirdCore
import Logging
import NIOCore
import NIOHTTP1
import NIOHTTPTypes
import NIOHTTPTypesHTTP1
import NIOWebSocket
import VersoWebSocket

/// A connection's HTTP/1.1 side, whose WebSocket upgrade is served by channel handlers on the
/// connection's event loop, not by a task: once upgraded, a connection holds no task, async
/// stream or buffer of its own while it is idle, and every frame is handled where it is read.
///
/// A request that is not an upgrade goes to Hummingbird's HTTP/1 handling (the router), in the
/// task Hummingbird runs for it. An upgrade pipelined behind another request is answered with a
/// redirect to the same path and `Connection: close` (NIO upgrades only a connection's first
/// request), so the client opens a new connection for it.
struct WebSocketUpgradeChannel: ServerChildChannel, HTTPChannelHandler {
    /// What the server makes of an upgrade request.
    enum Decision: Sendable {
        /// Not upgraded: answered with `400`, unless the decision answered it already.
        case refuse
        /// Upgraded, with these extra response headers; `open` is called on the channel's event
        /// loop once the `101` is written, before any byte of the connection is read, and
        /// installs what serves the connection (its frames are read by its own handler).
        case accept(HTTPFields, open: @Sendable (any Channel) throws -> Void)
    }

    enum UpgradeResult: Sendable {
        /// Served by the handlers `open` installed.
        case webSocket
        case notUpgraded(NIOAsyncChannel<HTTPRequestPart, HTTPResponsePart>)
        case failedUpgrade(NIOAsyncChannel<HTTPRequestPart, HTTPResponsePart>)
    }

    struct Value: ServerChildChannelValue {
        let upgradeResult: EventLoopFuture<UpgradeResult>
        let channel: any Channel
    }

    let responder: HTTPChannelHandler.Responder
    private let http1: HTTP1Channel.Configuration
    private let decide: @Sendable (HTTPRequest, any Channel) async throws -> Decision

    init(
        responder: @escaping HTTPChannelHandler.Responder,
        http1: HTTP1Channel.Configuration,
        decide: @escaping @Sendable (HTTPRequest, any Channel) async throws -> Decision
    ) {
        self.responder = Self.redirectingUpgrades(to: responder)
        self.http1 = http1
        self.decide = decide
    }

    func setup(channel: any Channel, logger: Logger) -> EventLoopFuture<Value> {
        channel.eventLoop.makeCompletedFuture {
            let attempted = NIOLoopBoundBox(false, eventLoop: channel.eventLoop)
            let opener = NIOLoopBoundBox<(@Sendable (any Channel) throws -> Void)?>(nil, eventLoop: channel.eventLoop)
            let decide = decide
            // NIO's handshake without NIO's frame codec: `open` installs the connection's own.
            let upgrader = WireFrameServerUpgrader<UpgradeResult>(
                shouldUpgrade: { channel, head in
                    attempted.value = true
                    let decided = channel.eventLoop.makePromise(of: Decision.self)
                    decided.completeWithTask {
                        try await decide(try HTTPRequest(head, secure: false, splitCookie: false), channel)
                    }
                    return decided.futureResult.map { decision -> HTTPHeaders? in
                        guard case .accept(let fields, let open) = decision else { return nil }
                        opener.value = open
                        return HTTPHeaders(fields.map { ($0.name.rawName, $0.value) })
                    }
                },
                upgradePipelineHandler: { channel, _ in
                    channel.eventLoop.makeCompletedFuture {
                        guard let open = opener.value else { throw NIOWebSocketUpgradeError.unsupportedWebSocketTarget }
                        opener.value = nil
                        try open(channel)
                        return .webSocket
                    }
                }
            )
            let http1 = http1
            let notUpgrading = NIOTypedHTTPServerUpgradeConfiguration<UpgradeResult>(
                upgraders: [upgrader],
                notUpgradingCompletionHandler: { channel in
                    channel.eventLoop.makeCompletedFuture {
                        let pipeline = channel.pipeline.syncOperations
                        try pipeline.addHandler(HTTP1ToHTTPServerCodec(secure: false))
                        try pipeline.addHandlers(http1.additionalChannelHandlers())
                        try pipeline.addHandler(
                            HTTPConnectionStateHandler(idleTimeout: http1.idleTimeout.map { .init($0) }, logger: logger)
                        )
                        let asyncChannel = try NIOAsyncChannel<HTTPRequestPart, HTTPResponsePart>(
                            wrappingChannelSynchronously: channel,
                            configuration: .init(isOutboundHalfClosureEnabled: true)
                        )
                        return attempted.value ? .failedUpgrade(asyncChannel) : .notUpgraded(asyncChannel)
                    }
                }
            )
            var configuration = NIOUpgradableHTTPServerPipelineConfiguration(upgradeConfiguration: notUpgrading)
            // Hummingbird's HTTP handling pipelines requests itself, checks response headers
            // (swift-http-types) and answers errors.
            configuration.enablePipelining = false
            configuration.enableErrorHandling = false
            configuration.enableResponseHeaderValidation = false
            configuration.decoderConfiguration.maxHeaderFieldSize = http1.httpDecoder.maxHeaderFieldSize
            configuration.decoderConfiguration.maxHeaderListSize = http1.httpDecoder.maxHeaderListSize
            configuration.decoderConfiguration.maxHeaderFieldCount = http1.httpDecoder.maxHeaderFieldCount
            let upgradeResult = try channel.pipeline.syncOperations.configureUpgradableHTTPServerPipeline(
                configuration: configuration
            )
            return Value(upgradeResult: upgradeResult, channel: channel)
        }
    }

    func handle(value: Value, logger: Logger) async {
        do {
            switch try await value.upgradeResult.get() {
            case .webSocket:
                // Served by its channel handlers from here on; no task waits for it.
                return
            case .notUpgraded(let http1):
                await handleHTTP(asyncChannel: http1, logger: logger)
            case .failedUpgrade(let http1):
                await Self.refuseUpgrade(http1, logger: logger)
            }
        } catch let error as ChannelError where error == .inputClosed {
            logger.trace("the connection closed before its first request")
        } catch {
            logger.debug("could not upgrade a connection", metadata: ["verso.error": "\(error)"])
        }
    }

    /// `400` with `Connection: close`, for an upgrade that was refused.
    private static func refuseUpgrade(_ http1: NIOAsyncChannel<HTTPRequestPart, HTTPResponsePart>, logger: Logger) async
    {
        do {
            try await http1.executeThenClose { _, outbound in
                let head = HTTPResponse(status: .badRequest, headerFields: [.connection: "close", .contentLength: "0"])
                try await outbound.write(contentsOf: [.head(head), .end(nil)])
            }
        } catch {
            logger.trace("could not answer a refused upgrade", metadata: ["verso.error": "\(error)"])
        }
    }

    /// `responder`, except that an upgrade to WebSocket (which only a connection's first request
    /// may be) is answered `307` to the same path with `Connection: close`, so the client makes
    /// it again as the first request of a new connection.
    private static func redirectingUpgrades(
        to responder: @escaping HTTPChannelHandler.Responder
    ) -> HTTPChannelHandler.Responder {
        struct RedirectedUpgrade: Error {}
        return { request, writer, channel in
            guard request.headers[.upgrade]?.lowercased() == "websocket" else {
                try await responder(request, writer, channel)
                return
            }
            var path = request.uri.path
            if let query = request.uri.query { path += "?\(query)" }
            let response = HTTPResponse(
                status: .temporaryRedirect,
                headerFields: [.connection: "close", .location: path]
            )
            try await writer.writeResponse(response)
            // Ends the connection.
            throw RedirectedUpgrade()
        }
    }
}
