import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOWebSocket
import VersoWebSocket

/// The load tool's own WebSocket client, straight on SwiftNIO: it shares the cores with the
/// server under test, so a sent message is one `writeAndFlush` and a received one at most one
/// task wake (see `LeanWebSocketHandler` and `WireInbox`), with no actor or async writer between.
enum LeanWebSocket {
    /// An open, upgraded connection, before `LoadWire` wraps it.
    struct Connection: Sendable {
        let channel: any Channel
        let inbox: WireInbox
        /// What permessage-deflate the server agreed to; nil when none.
        let deflate: DeflateAgreement?
    }

    /// Where a `ws://` URL points.
    struct Endpoint: Equatable {
        var host: String
        var port: Int
        /// Path and query, as sent in the request line.
        var target: String
        /// The Host header.
        var authority: String

        init(url: String) throws {
            guard let parts = URLComponents(string: url), let host = parts.host, !host.isEmpty else {
                throw LoadError("not a WebSocket URL: \(url)")
            }
            guard parts.scheme?.lowercased() == "ws" else {
                throw LoadError("only ws:// URLs are supported, not \(url)")
            }
            self.host = host
            self.port = parts.port ?? 80
            let path = parts.percentEncodedPath.isEmpty ? "/" : parts.percentEncodedPath
            self.target = path + (parts.percentEncodedQuery.map { "?" + $0 } ?? "")
            let bracketed = host.contains(":") ? "[" + host + "]" : host
            self.authority = parts.port.map { bracketed + ":" + String($0) } ?? bracketed
        }
    }

    /// How the upgrade ended, on the channel's event loop.
    private enum Upgrade: Sendable {
        case open(WireInbox, DeflateAgreement?)
        /// The server answered with something other than 101; the future has its status.
        case rejected(EventLoopFuture<HTTPResponseStatus>)
    }

    /// Seconds a connect, and then the upgrade, may take.
    static let handshakeTimeout: Int64 = 30

    /// Connects to `url` and upgrades to WebSocket, offering permessage-deflate when
    /// `compression` and sending `token` as `Authorization: Bearer`. Messages over
    /// `maxMessageSize` bytes (after inflating) end the connection.
    static func connect(
        url: String,
        compression: Bool,
        token: String? = nil,
        maxMessageSize: Int
    ) async throws -> Connection {
        let endpoint = try Endpoint(url: url)
        let channel: any Channel
        let upgrade: EventLoopFuture<Upgrade>
        do {
            (channel, upgrade) = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .connectTimeout(.seconds(handshakeTimeout))
                .channelOption(.socketOption(.tcp_nodelay), value: 1)
                .connect(host: endpoint.host, port: endpoint.port) { channel in
                    channel.eventLoop.makeCompletedFuture {
                        let upgrade = try configure(
                            channel,
                            endpoint: endpoint,
                            compression: compression,
                            token: token,
                            maxMessageSize: maxMessageSize
                        )
                        return (channel, upgrade)
                    }
                }
        } catch {
            throw LoadError("could not connect to \(url): \(error)")
        }
        // A server that accepts the socket but never answers must not hold a handshake place forever.
        let timeout = channel.eventLoop.scheduleTask(in: .seconds(handshakeTimeout)) { channel.close(promise: nil) }
        defer { timeout.cancel() }
        let result: Upgrade
        do {
            result = try await upgrade.get()
        } catch {
            channel.close(promise: nil)
            throw error as? LoadError ?? LoadError("the WebSocket handshake with \(url) failed: \(error)")
        }
        switch result {
        case .open(let inbox, let deflate):
            return Connection(channel: channel, inbox: inbox, deflate: deflate)
        case .rejected(let status):
            let answer = try? await status.get()
            channel.close(promise: nil)
            throw LoadError(
                "the server at \(url) rejected the WebSocket handshake with HTTP status \(answer.map { "\($0.code) \($0.reasonPhrase)" } ?? "unknown")"
            )
        }
    }

    /// Sets up the HTTP/1 upgrade on a new channel; the future ends with the upgrade.
    private static func configure(
        _ channel: any Channel,
        endpoint: Endpoint,
        compression: Bool,
        token: String?,
        maxMessageSize: Int
    ) throws -> EventLoopFuture<Upgrade> {
        var headers = HTTPHeaders()
        headers.add(name: "Host", value: endpoint.authority)
        if let token { headers.add(name: "Authorization", value: "Bearer \(token)") }
        if compression { headers.add(name: "Sec-WebSocket-Extensions", value: DeflateAgreement.offer) }
        let request = HTTPRequestHead(version: .http1_1, method: .GET, uri: endpoint.target, headers: headers)
        // NIO's handshake; the frames are read and written by VersoWebSocket's codec.
        let upgrader = WireFrameClientUpgrader<Upgrade> { channel, response in
            channel.eventLoop.makeCompletedFuture {
                let deflate = try DeflateAgreement(
                    response: response.headers[canonicalForm: "sec-websocket-extensions"].map(String.init),
                    offered: compression
                )
                let inbox = WireInbox()
                let handler = LeanWebSocketHandler(inbox: inbox, deflate: deflate, maxMessageSize: maxMessageSize)
                try channel.pipeline.syncOperations.addHandler(handler)
                return .open(inbox, deflate)
            }
        }
        let upgrade = NIOTypedHTTPClientUpgradeConfiguration<Upgrade>(
            upgradeRequestHead: request,
            upgraders: [upgrader],
            notUpgradingCompletionHandler: { channel in
                channel.eventLoop.makeCompletedFuture {
                    let status = channel.eventLoop.makePromise(of: HTTPResponseStatus.self)
                    try channel.pipeline.syncOperations.addHandler(RejectedUpgradeHandler(status: status))
                    return .rejected(status.futureResult)
                }
            }
        )
        var configuration = NIOUpgradableHTTPClientPipelineConfiguration(upgradeConfiguration: upgrade)
        configuration.leftOverBytesStrategy = .forwardBytes
        return try channel.pipeline.syncOperations.configureUpgradableHTTPClientPipeline(configuration: configuration)
    }
}

/// Reads the status of an upgrade the server refused.
private final class RejectedUpgradeHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPClientResponsePart

    private let status: EventLoopPromise<HTTPResponseStatus>

    init(status: EventLoopPromise<HTTPResponseStatus>) { self.status = status }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if case .head(let head) = unwrapInboundIn(data) { status.succeed(head.status) }
    }

    func channelInactive(context: ChannelHandlerContext) {
        status.fail(LoadError("the connection closed"))
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        status.fail(error)
        context.close(promise: nil)
    }
}

/// That the server agreed to permessage-deflate (RFC 7692), read from its handshake response.
///
/// verso-load compresses and inflates with the server's own implementation (VersoDeflate), which
/// takes every message on its own: it needs the server to agree `server_no_context_takeover`
/// (Verso always does), and compresses its own messages without context whatever the server
/// said of `client_no_context_takeover`.
struct DeflateAgreement: Sendable, Equatable {
    /// The offer: both sides forget between messages, so a connection keeps no window between them.
    static let offer = "permessage-deflate; client_no_context_takeover; server_no_context_takeover"

    init() {}

    /// Reads the response's Sec-WebSocket-Extensions values; nil when the server declined.
    /// Throws when the server answered with something that was not offered, or kept its
    /// compression context between messages.
    init?(response values: [String], offered: Bool) throws {
        var agreed: DeflateAgreement?
        for value in values {
            for offer in value.split(separator: ",") {
                let parameters = offer.split(separator: ";").map { $0.trimmingCharacters(in: .whitespaces) }
                guard let name = parameters.first, !name.isEmpty else { continue }
                guard offered, agreed == nil, name.lowercased() == "permessage-deflate" else {
                    throw LoadError("the server agreed to an extension that was not offered: \(offer)")
                }
                var serverNoContextTakeover = false
                for parameter in parameters.dropFirst() {
                    switch parameter.split(separator: "=", maxSplits: 1).first.map({
                        $0.trimmingCharacters(in: .whitespaces).lowercased()
                    }) ?? "" {
                    case "client_no_context_takeover": break
                    case "server_no_context_takeover": serverNoContextTakeover = true
                    // Inflating with the largest window reads any smaller one the server chose.
                    case "server_max_window_bits": break
                    default:
                        throw LoadError(
                            "permessage-deflate: the server answered with \(parameter), which was not offered"
                        )
                    }
                }
                guard serverNoContextTakeover else {
                    throw LoadError(
                        "permessage-deflate: the server keeps its compression context between messages (no server_no_context_takeover); verso-load inflates each message on its own"
                    )
                }
                agreed = DeflateAgreement()
            }
        }
        guard let agreed else { return nil }
        self = agreed
    }
}
