import NIOCore
import NIOHTTP1
import NIOWebSocket

/// NIO's WebSocket upgrade for a server (the handshake's checks and its `Sec-WebSocket-Accept`
/// answer), without the frame codec NIO's upgrader puts in the pipeline: `upgradePipelineHandler`
/// installs the connection's own handlers, which read frames with `WireFrameParser`.
public struct WireFrameServerUpgrader<UpgradeResult: Sendable>: NIOTypedHTTPServerProtocolUpgrader {
    private let handshake: NIOTypedWebSocketServerUpgrader<UpgradeResult>
    private let upgradePipelineHandler: @Sendable (any Channel, HTTPRequestHead) -> EventLoopFuture<UpgradeResult>

    /// - Parameters:
    ///   - shouldUpgrade: the extra response headers for an accepted upgrade, or nil to refuse it.
    ///   - upgradePipelineHandler: called on the channel's event loop once the `101` is written.
    public init(
        shouldUpgrade: @escaping @Sendable (any Channel, HTTPRequestHead) -> EventLoopFuture<HTTPHeaders?>,
        upgradePipelineHandler: @escaping @Sendable (any Channel, HTTPRequestHead) -> EventLoopFuture<UpgradeResult>
    ) {
        self.handshake = NIOTypedWebSocketServerUpgrader(
            shouldUpgrade: shouldUpgrade,
            upgradePipelineHandler: upgradePipelineHandler
        )
        self.upgradePipelineHandler = upgradePipelineHandler
    }

    public var supportedProtocol: String { handshake.supportedProtocol }
    public var requiredUpgradeHeaders: [String] { handshake.requiredUpgradeHeaders }

    public func buildUpgradeResponse(
        channel: any Channel,
        upgradeRequest: HTTPRequestHead,
        initialResponseHeaders: HTTPHeaders
    ) -> EventLoopFuture<HTTPHeaders> {
        handshake.buildUpgradeResponse(
            channel: channel,
            upgradeRequest: upgradeRequest,
            initialResponseHeaders: initialResponseHeaders
        )
    }

    public func upgrade(channel: any Channel, upgradeRequest: HTTPRequestHead) -> EventLoopFuture<UpgradeResult> {
        upgradePipelineHandler(channel, upgradeRequest)
    }
}

/// NIO's WebSocket upgrade for a client (a random `Sec-WebSocket-Key`, and the server's
/// `Sec-WebSocket-Accept` checked against it), without NIO's frame codec:
/// `upgradePipelineHandler` installs the connection's own handlers.
public struct WireFrameClientUpgrader<UpgradeResult: Sendable>: NIOTypedHTTPClientProtocolUpgrader {
    private let handshake: NIOTypedWebSocketClientUpgrader<UpgradeResult>
    private let upgradePipelineHandler: @Sendable (any Channel, HTTPResponseHead) -> EventLoopFuture<UpgradeResult>

    /// - Parameter upgradePipelineHandler: called on the channel's event loop once the server
    ///   accepted the upgrade.
    public init(
        upgradePipelineHandler: @escaping @Sendable (any Channel, HTTPResponseHead) -> EventLoopFuture<UpgradeResult>
    ) {
        self.handshake = NIOTypedWebSocketClientUpgrader(upgradePipelineHandler: upgradePipelineHandler)
        self.upgradePipelineHandler = upgradePipelineHandler
    }

    public var supportedProtocol: String { handshake.supportedProtocol }
    public var requiredUpgradeHeaders: [String] { handshake.requiredUpgradeHeaders }

    public func addCustom(upgradeRequestHeaders: inout HTTPHeaders) {
        handshake.addCustom(upgradeRequestHeaders: &upgradeRequestHeaders)
    }

    public func shouldAllowUpgrade(upgradeResponse: HTTPResponseHead) -> Bool {
        handshake.shouldAllowUpgrade(upgradeResponse: upgradeResponse)
    }

    public func upgrade(channel: any Channel, upgradeResponse: HTTPResponseHead) -> EventLoopFuture<UpgradeResult> {
        upgradePipelineHandler(channel, upgradeResponse)
    }
}
