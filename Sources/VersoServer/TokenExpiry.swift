import Foundation
import NIOCore
import NIOWebSocket
import Synchronization
import VersoCore

/// Ends a connection when the token it acts with stops being valid: at a signed token's `exp`,
/// or when a reload withdraws a listed token (`end`). The server sends an `unauthorized` error
/// saying why, then closes with 4401 (Protocol.md section 1.2); the client reconnects with a
/// valid token. A `hello` with a new token before `exp` moves the deadline.
final class TokenExpiry: Sendable {
    /// The close code of an expired token (4000–4999 are for applications, RFC 6455 7.4.2).
    static let closeCode = WebSocketErrorCode(codeNumber: 4401)

    private let eventLoop: any EventLoop
    private let outbox: Outbox
    private let timer = Mutex<Scheduled<Void>?>(nil)

    init(eventLoop: any EventLoop, outbox: Outbox) {
        self.eventLoop = eventLoop
        self.outbox = outbox
    }

    /// The refusal of a request made with a token that expired at `date`.
    static func expired(_ date: Date) -> RequestError {
        RequestError(
            .unauthorized,
            "the token expired at \(date.formatted(.iso8601)): reconnect with a fresh one, or send one in hello (\"token\")"
        )
    }

    /// Closes the connection at `expires` (nil: never), replacing any earlier deadline.
    func arm(_ expires: Date?) {
        let scheduled = expires.map { expires in
            let delay = max(0, expires.timeIntervalSinceNow)
            let outbox = outbox
            return eventLoop.scheduleTask(in: .nanoseconds(Int64(delay * 1e9))) {
                Self.end(outbox, Self.expired(expires), reason: "access token expired")
            }
        }
        let previous = timer.withLock { timer in
            defer { timer = scheduled }
            return timer
        }
        previous?.cancel()
    }

    /// Ends the connection now: its token was withdrawn (`reason` says how).
    func end(withdrawn reason: String) {
        disarm()
        Self.end(
            outbox,
            RequestError(.unauthorized, "\(reason): reconnect with a valid token"),
            reason: "access token withdrawn"
        )
    }

    private static func end(_ outbox: Outbox, _ error: RequestError, reason: String) {
        outbox.send(Replies.error(rid: nil, error))
        outbox.requestClose(closeCode, reason: reason)
    }

    /// Stops watching (the connection has ended).
    func disarm() {
        timer.withLock { timer in
            timer?.cancel()
            timer = nil
        }
    }
}
