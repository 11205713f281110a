import Logging
import NIOCore
import NIOWebSocket
import Synchronization
import VersoClient
import VersoCore
import WSClient

/// Why a wire connection failed.
public struct WireError: Error, Sendable, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// A Verso connection at the level of the wire: send text (or raw frames), await the next
/// message as JSON, see how the connection closed. For conformance checks and tests; the
/// typed client is `VersoClient`. Use it from one task at a time.
public final class WireConnection: Sendable {
    private struct State {
        var messages: [WebSocketMessage] = []
        var waiter: CheckedContinuation<Void, Never>?
        var outbound: WebSocketOutboundWriter?
        var ended = false
        var failure: (any Error)?
        var closeFrame: WebSocketCloseFrame?
    }

    private let state = Mutex(State())

    private func wake(_ update: (inout State) -> Void) {
        let waiter = state.withLock { state -> CheckedContinuation<Void, Never>? in
            update(&state)
            defer { state.waiter = nil }
            return state.waiter
        }
        waiter?.resume()
    }

    /// Waits until `ready` is true of the state, or `timeout` passes.
    private func wait(timeout: Duration, until ready: @escaping (State) -> Bool) async -> Bool {
        if state.withLock({ ready($0) }) { return true }
        let deadline = ContinuousClock.now + timeout
        return await withTaskGroup(of: Void.self) { group in
            group.addTask { [weak self] in
                try? await Task.sleep(until: deadline)
                self?.wake { _ in }
            }
            defer { group.cancelAll() }
            while true {
                await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                    let resume = state.withLock { state -> Bool in
                        if ready(state) { return true }
                        state.waiter = continuation
                        return false
                    }
                    if resume { continuation.resume() }
                }
                if state.withLock({ ready($0) }) { return true }
                if ContinuousClock.now >= deadline { return false }
            }
        }
    }

    /// Connects to `url`, runs `body` with the connection, then closes it.
    /// `compression` offers permessage-deflate; `token` is sent as `Authorization: Bearer`;
    /// `caFile` (PEM) replaces the system's certificate authorities for a `wss://` URL.
    public static func with<T: Sendable>(
        url: String,
        compression: Bool = true,
        token: String? = nil,
        caFile: String? = nil,
        _ body: (WireConnection) async throws -> T
    ) async throws -> T {
        let client = WireConnection()
        let tls = try ClientTLS.configuration(url: url, caFile: caFile)
        var logger = Logger(label: "verso.test.client")
        logger.logLevel = .critical
        return try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { [logger, tls] in
                do {
                    let frame = try await ClientWebSocket.connect(
                        url: url,
                        token: token,
                        compression: compression,
                        tls: tls,
                        timeout: .seconds(10),
                        logger: logger
                    ) { inbound, outbound, _ in
                        client.wake { $0.outbound = outbound }
                        for try await message in inbound.messages(maxSize: 1 << 24) {
                            client.wake { $0.messages.append(message) }
                        }
                    }
                    client.wake {
                        $0.closeFrame = frame; $0.ended = true
                    }
                } catch {
                    client.wake {
                        $0.failure = error; $0.ended = true
                    }
                }
            }
            // The attempt gives up after 10 s; the margin covers a busy machine.
            guard await client.wait(timeout: .seconds(15), until: { $0.outbound != nil || $0.ended }),
                client.state.withLock({ $0.outbound != nil })
            else {
                let failure = client.state.withLock { $0.failure }
                group.cancelAll()
                throw WireError("could not connect to \(url): \(failure.map { "\($0)" } ?? "timed out")")
            }
            do {
                let result = try await body(client)
                try? await client.close()
                try await group.waitForAll()
                return result
            } catch {
                try? await client.close()
                group.cancelAll()
                throw error
            }
        }
    }

    private var outbound: WebSocketOutboundWriter {
        get throws {
            guard let outbound = state.withLock({ $0.outbound }) else { throw WireError("not connected") }
            return outbound
        }
    }

    /// Sends one text message.
    public func send(_ text: String) async throws {
        try await outbound.write(.text(text))
    }

    /// Sends a raw frame (for protocol-violation tests).
    public func send(frame: WebSocketFrame) async throws {
        try await outbound.write(.custom(frame))
    }

    /// Sends a binary message.
    public func send(binary bytes: [UInt8]) async throws {
        try await outbound.write(.binary(ByteBuffer(bytes: bytes)))
    }

    /// Closes the connection normally.
    public func close() async throws {
        try await outbound.close(.normalClosure, reason: nil)
    }

    /// The next message as text; throws if none arrives within `timeout`.
    public func nextText(timeout: Duration = .seconds(10)) async throws -> String {
        guard await wait(timeout: timeout, until: { !$0.messages.isEmpty || $0.ended }) else {
            throw WireError("no message within \(timeout)")
        }
        let message = state.withLock { state -> WebSocketMessage? in
            state.messages.isEmpty ? nil : state.messages.removeFirst()
        }
        switch message {
        case .text(let text)?: return text
        case .binary?: throw WireError("received a binary message")
        case nil: throw WireError("the connection closed while waiting for a message")
        }
    }

    /// The next message parsed as JSON.
    public func next(timeout: Duration = .seconds(10)) async throws -> JSONValue {
        let text = try await nextText(timeout: timeout)
        return try JSONParser.parse(text, maxDepth: JSONParser.maxReplyDepth)
    }

    /// Sends `text` and returns the next message.
    public func request(_ text: String) async throws -> JSONValue {
        try await send(text)
        return try await next()
    }

    /// Messages received and not yet read.
    public var pendingCount: Int { state.withLock { $0.messages.count } }

    /// Waits until the connection has ended and returns the close frame the server sent.
    public func waitForClose(timeout: Duration = .seconds(10)) async throws -> WebSocketCloseFrame? {
        guard await wait(timeout: timeout, until: { $0.ended }) else {
            throw WireError("connection did not close within \(timeout)")
        }
        return state.withLock { $0.closeFrame }
    }
}
