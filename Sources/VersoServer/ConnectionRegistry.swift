import Synchronization
import NIOWebSocket
import WSCore

/// The open WebSocket connections, so shutdown can close every one of them.
final class ConnectionRegistry: Sendable {
    private struct State {
        var outboxes: [ObjectIdentifier: Outbox] = [:]
        var closing: (WebSocketErrorCode, String)?
    }

    private let state = Mutex(State())

    /// Adds a connection; when shutdown has begun it is asked to close at once.
    func add(_ outbox: Outbox) {
        let closing = state.withLock { state -> (WebSocketErrorCode, String)? in
            state.outboxes[ObjectIdentifier(outbox)] = outbox
            return state.closing
        }
        if let (code, reason) = closing { outbox.requestClose(code, reason: reason) }
    }

    func remove(_ outbox: Outbox) {
        state.withLock { state in
            state.outboxes[ObjectIdentifier(outbox)] = nil
        }
    }


    /// Asks every connection, present and future, to close with `code`; returns the ones open now.
    @discardableResult
    func closeAll(_ code: WebSocketErrorCode, reason: String) -> Set<ObjectIdentifier> {
        let outboxes = state.withLock { state -> [ObjectIdentifier: Outbox] in
            state.closing = (code, reason)
            return state.outboxes
        }
        for outbox in outboxes.values { outbox.requestClose(code, reason: reason) }
        return Set(outboxes.keys)
    }

    /// Whether any of `connections` is still open.
    func containsAny(of connections: Set<ObjectIdentifier>) -> Bool {
        state.withLock { state in connections.contains { state.outboxes[$0] != nil } }
    }
}
