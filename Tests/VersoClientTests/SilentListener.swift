import NIOCore
import NIOPosix
import VersoTesting

/// A TCP listener that reads what a client sends and then closes the connection without a word:
/// a server killed, or shutting down, between reading an upgrade request and answering it.
enum SilentListener {
    /// Closes each connection once its first bytes have arrived.
    private final class CloseAfterFirstRead: ChannelInboundHandler, Sendable {
        typealias InboundIn = ByteBuffer

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            context.close(promise: nil)
        }
    }

    /// Runs `body` with the port of a listener on 127.0.0.1, then stops it.
    static func with<T: Sendable>(_ body: (Int) async throws -> T) async throws -> T {
        try await LoopbackListener.with(
            ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .childChannelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHandler(CloseAfterFirstRead())
                    }
                },
            body
        )
    }
}
