#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif
import HummingbirdCore
import Logging
import NIOCore
import Synchronization
import VersoCore

/// Every accepted connection, before Hummingbird's HTTP/WebSocket channel sees it: counts it
/// against `maxConnections` (one over is answered `503` and closed) and puts a
/// `HandshakeGuard` first in its pipeline, behind TLS when the server has a certificate (so
/// the guard's time limit covers the TLS handshake too).
struct GuardedChannel<Inner: ServerChildChannel>: ServerChildChannel {
    struct Value: ServerChildChannelValue {
        let channel: any Channel
        /// Nil for a connection refused at once.
        let inner: Inner.Value?
    }

    let inner: Inner
    let limits: HandshakeGuard.Limits
    let maxConnections: Int
    let open: OpenConnections
    /// The certificate to speak TLS with, or nil for plain TCP.
    let tls: ServerTLS?
    let logger: Logger

    func setup(channel: any Channel, logger: Logger) -> EventLoopFuture<Value> {
        guard open.admit(max: maxConnections) else {
            return channel.eventLoop.makeCompletedFuture {
                let refusal = HandshakeGuard.Refusal(
                    status: 503,
                    reason: "Service Unavailable",
                    code: .unavailable,
                    message: "the server has its maximum of \(maxConnections) connections open; retry later",
                    extraHeaders: [("Retry-After", "1")]
                )
                try channel.pipeline.syncOperations.addHandler(
                    HandshakeGuard(limits: limits, logger: self.logger, refuseAtOnce: refusal)
                )
                if let tls { try channel.pipeline.syncOperations.addHandler(tls.makeHandler(), position: .first) }
                self.open.logRefusal(max: maxConnections, logger: self.logger)
                return Value(channel: channel, inner: nil)
            }
        }
        let open = open
        channel.closeFuture.whenComplete { _ in open.release() }
        do {
            // Each connection keeps its receive buffer between reads: start it at 512 bytes, not
            // NIO's 2 KiB, as most connections are idle or send small requests (it grows, by
            // doubling, for a connection that reads more).
            try channel.syncOptions?.setOption(
                .recvAllocator,
                value: AdaptiveRecvByteBufferAllocator(minimum: 64, initial: 512, maximum: 65536)
            )
            try channel.pipeline.syncOperations.addHandler(
                HandshakeGuard(limits: limits, logger: self.logger),
                position: .first
            )
            if let tls { try channel.pipeline.syncOperations.addHandler(tls.makeHandler(), position: .first) }
        } catch {
            return channel.eventLoop.makeFailedFuture(error)
        }
        return inner.setup(channel: channel, logger: logger).map { Value(channel: channel, inner: $0) }
    }

    func handle(value: Value, logger: Logger) async {
        guard let inner = value.inner else { return }
        await self.inner.handle(value: inner, logger: logger)
    }
}

/// The number of connections open, shared by every event loop.
final class OpenConnections: Sendable {
    private let count = Atomic<Int>(0)
    private let refusals = RefusalLog()

    var current: Int { count.load(ordering: .relaxed) }

    /// Counts a new connection; false (and not counted) when `max` are open already.
    func admit(max: Int) -> Bool {
        let now = count.wrappingAdd(1, ordering: .relaxed).newValue
        if now <= max { return true }
        count.wrappingSubtract(1, ordering: .relaxed)
        return false
    }

    func release() {
        count.wrappingSubtract(1, ordering: .relaxed)
    }

    func logRefusal(max: Int, logger: Logger) {
        refusals.record { unlogged in
            logger.warning(
                "refusing connections: the connection limit is reached (503)",
                metadata: .refusal(["verso.max_connections": "\(max)"], unloggedBefore: unlogged)
            )
        }
    }
}

/// On the listening socket: logs (at most once every 10 s) when a connection cannot be accepted
/// because the process ran out of file descriptors. NIO's `AcceptBackoffHandler`, after this
/// handler, then waits a second before accepting again, rather than retrying at once.
final class AcceptErrorLogger: ChannelInboundHandler, RemovableChannelHandler {
    /// Never unwrapped: accepted channels are passed on as they come.
    typealias InboundIn = any Channel

    private let logger: Logger
    private var lastLog: NIODeadline?
    private var suppressed = 0

    init(logger: Logger) {
        self.logger = logger
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if let error = error as? IOError, error.errnoCode == EMFILE || error.errnoCode == ENFILE {
            let now = NIODeadline.now()
            if let lastLog, now - lastLog < .seconds(10) {
                suppressed += 1
            } else {
                logger.error(
                    "cannot accept connections: the open-file limit is reached; retrying every second (raise `ulimit -n` or lower --max-connections)",
                    metadata: ["verso.error": "\(error)", "verso.refused_since_last_log": "\(suppressed)"]
                )
                lastLog = now
                suppressed = 0
            }
        }
        context.fireErrorCaught(error)
    }
}
