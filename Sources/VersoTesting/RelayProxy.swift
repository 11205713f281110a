import NIOCore
import NIOPosix

/// What a relay does with a chunk of bytes it read from one side of a connection.
public enum RelayAction: Sendable {
    /// Pass them on.
    case relay
    /// Lose them; the connection stays open.
    case drop
    /// Lose them and close both sides.
    case cut
    /// Pass on the first `count` bytes, then close both sides.
    case cutAfter(count: Int)
    /// Pass them on, send `reply` back to the side they came from in place of whatever the
    /// other side answers, then close both sides.
    case answerAndCut(reply: ByteBuffer)
}

/// Decides what a `RelayProxy` does with each chunk of bytes, as it reads them.
public protocol RelayInspector: Sendable {
    /// A client connected.
    func accepted()
    /// What to do with `bytes`, read from the client (`toServer`) or from the server.
    func action(for bytes: ByteBuffer, toServer: Bool) -> RelayAction
}

/// A TCP proxy on 127.0.0.1 in front of a server's port: each connection it accepts gets its
/// own connection to the server, and the bytes of each go to the other as its inspector says.
/// A side that closes closes the other.
public enum RelayProxy {
    /// Runs `body` with the proxy's port, then stops it.
    public static func with<T: Sendable>(
        to port: Int,
        inspector: some RelayInspector,
        _ body: (Int) async throws -> T
    ) async throws -> T {
        let bootstrap = ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .childChannelOption(.autoRead, value: false)
            .childChannelInitializer { inbound in
                inspector.accepted()
                return ClientBootstrap(group: inbound.eventLoop)
                    .connect(host: "127.0.0.1", port: port)
                    .flatMapThrowing { outbound in
                        // Both channels are on `inbound`'s event loop.
                        try inbound.pipeline.syncOperations.addHandler(
                            Relay(inspector: inspector, partner: outbound, toServer: true)
                        )
                        try outbound.pipeline.syncOperations.addHandler(
                            Relay(inspector: inspector, partner: inbound, toServer: false)
                        )
                    }
                    .flatMap { inbound.setOption(.autoRead, value: true) }
            }
        return try await LoopbackListener.with(bootstrap, body)
    }

    /// Passes what one side reads to the other, as the inspector says.
    private final class Relay<Inspector: RelayInspector>: ChannelInboundHandler {
        typealias InboundIn = ByteBuffer

        let inspector: Inspector
        let partner: any Channel
        let toServer: Bool

        init(inspector: Inspector, partner: any Channel, toServer: Bool) {
            self.inspector = inspector
            self.partner = partner
            self.toServer = toServer
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            let bytes = unwrapInboundIn(data)
            switch inspector.action(for: bytes, toServer: toServer) {
            case .relay:
                partner.writeAndFlush(bytes, promise: nil)
            case .drop:
                break
            case .cut:
                context.close(promise: nil)
                partner.close(promise: nil)
            case .cutAfter(let count):
                // Flushed at once into an idle loopback socket, before the close below.
                partner.writeAndFlush(bytes.getSlice(at: bytes.readerIndex, length: count)!, promise: nil)
                context.close(promise: nil)
                partner.close(promise: nil)
            case .answerAndCut(let reply):
                partner.writeAndFlush(bytes, promise: nil)
                context.channel.writeAndFlush(reply, promise: nil)
                context.close(promise: nil)
                partner.close(promise: nil)
            }
        }

        func channelInactive(context: ChannelHandlerContext) {
            partner.close(promise: nil)
        }

        func errorCaught(context: ChannelHandlerContext, error: any Error) {
            context.close(promise: nil)
        }
    }
}
