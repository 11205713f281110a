import VersoCore

/// Why a client call failed.
public struct VersoClientError: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Kind: Sendable, Equatable {
        /// The server answered with an `error` reply.
        case server(ErrorCode)
        /// No reply within the request timeout.
        case timeout
        /// The connection dropped before the reply arrived and the request was not sent again: a
        /// read, or a write when the client does not reconnect or was closed (a write is otherwise
        /// resent after reconnecting). Such a write may or may not have been applied: read the key
        /// to find out, or send it again with the same idempotency key.
        case disconnected
        /// The server could not be reached.
        case cannotConnect
        /// The server sent something this client does not understand.
        case protocolViolation
        /// The client was closed.
        case closed
        /// The call's arguments break a rule of the protocol (merge with a forced write, say);
        /// nothing was sent.
        case invalidArgument
    }

    public let kind: Kind
    public let message: String

    public init(_ kind: Kind, _ message: String) {
        self.kind = kind
        self.message = message
    }

    /// The server's error code, for `server` errors.
    public var code: ErrorCode? {
        if case .server(let code) = kind { return code }
        return nil
    }

    public var description: String {
        switch kind {
        case .server(let code): "\(code.rawValue): \(message)"
        case .timeout: "timed out: \(message)"
        case .disconnected: "disconnected: \(message)"
        case .cannotConnect: "cannot connect: \(message)"
        case .protocolViolation: "unexpected reply: \(message)"
        case .closed: "closed: \(message)"
        case .invalidArgument: "invalid argument: \(message)"
        }
    }
}
