import Logging
import NIOCore
import Synchronization
import WSClient
import WSCompression
import WSCore

/// Why a load run or one of its connections failed.
public struct LoadError: Error, Sendable, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// One open WebSocket for a load worker: send a text message, await the next one.
/// Used by one task only (the connection's handler), so it needs no locking.
public struct LoadWire {
    var inbound: WebSocketInboundStream.AsyncIterator
    let outbound: WebSocketOutboundWriter

    /// Sends one text message.
    public func send(_ text: String) async throws {
        try await outbound.write(.text(text))
    }

    /// Subscribes to one key and waits for the `subscribed` reply; `scenario` names the caller in errors.
    public mutating func subscribe(to key: String, scenario: String) async throws {
        try await send(#"{"type":"subscribe","keys":[""# + key + #""]}"#)
        let reply = try await next()
        guard ReplyScan.type(reply) == "subscribed" else { throw LoadError("\(scenario): subscribe failed: \(reply.prefix(200))") }
    }

    /// The next text message; throws if the connection ends first.
    public mutating func next() async throws -> String {
        switch try await inbound.nextMessage(maxSize: 1 << 24) {
        case .text(let text)?: return text
        case .binary?: throw LoadError("the server sent a binary message")
        case nil: throw LoadError("the connection closed")
        }
    }
}

/// Opens load connections. Each runs its worker inside WSClient's handler, so a request and
/// its reply cost no hop between tasks.
public enum LoadConnection {
    /// Holds what the handler learned, for the caller after `connect` returns.
    private final class Outcome<T: Sendable>: Sendable {
        let failure = Mutex<(any Error)?>(nil)
        let result = Mutex<T?>(nil)
        let handshakeDone = Atomic<Bool>(false)

        /// Gives the handshake's place back, once.
        func endHandshake() {
            if !handshakeDone.exchange(true, ordering: .acquiringAndReleasing) { LoadConnection.handshakes.release() }
        }
    }

    /// Connection attempts in flight at once, over the whole process. Thousands of connects at
    /// once overflow the server's listen backlog, and the dropped SYNs fail or stall those
    /// connections; a few hundred at a time open 10,000 quickly.
    public static let handshakes = AsyncLimiter(limit: 128)

    /// Connects to `url` (offering permessage-deflate when `compression`), runs `body` with the
    /// open connection, then closes it. Throws if it could not connect or `body` threw.
    public static func run<T: Sendable>(
        url: String,
        compression: Bool,
        _ body: @escaping @Sendable (inout LoadWire) async throws -> T
    ) async throws -> T {
        var configuration = WebSocketClientConfiguration(maxFrameSize: 1 << 24, validateUTF8: false)
        if compression {
            configuration.extensions = [WebSocketExtensionFactory.perMessageDeflate(maxDecompressedFrameSize: 1 << 24).build()]
        }
        var logger = Logger(label: "verso.load")
        logger.logLevel = .critical
        let outcome = Outcome<T>()
        await handshakes.acquire()
        defer { outcome.endHandshake() }
        try await WebSocketClient.connect(url: url, configuration: configuration, logger: logger) { inbound, outbound, _ in
            outcome.endHandshake()
            var wire = LoadWire(inbound: inbound.makeAsyncIterator(), outbound: outbound)
            do {
                let result = try await body(&wire)
                outcome.result.withLock { $0 = result }
            } catch {
                outcome.failure.withLock { $0 = error }
            }
        }
        if let failure = outcome.failure.withLock({ $0 }) { throw failure }
        guard let result = outcome.result.withLock({ $0 }) else { throw LoadError("the connection to \(url) ended early") }
        return result
    }
}
