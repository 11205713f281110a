import VersoCore

/// Why a client call failed.
public struct VersoClientError: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Kind: Sendable, Equatable {
        /// The server answered with an `error` reply.
        case server(ErrorCode)
        /// No reply within the request timeout.
        case timeout
        /// The connection dropped before the reply arrived. A write may or may not have been
        /// applied: read the key to find out.
        case disconnected
        /// The server could not be reached.
        case cannotConnect
        /// The server sent something this client does not understand.
        case protocolViolation
        /// The client was closed.
        case closed
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
        }
    }
}
