/// The machine-readable `code` of an `error` reply. Protocol.md lists when each is sent.
public enum ErrorCode: String, Sendable, Equatable, CaseIterable {
    case badRequest = "bad_request"
    case notFound = "not_found"
    case unauthorized
    case forbidden
    case tooLarge = "too_large"
    case unavailable
    case `internal`
}

/// A request the server refuses: the code and message go back to the client in an `error` reply.
public struct RequestError: Error, Sendable, Equatable, CustomStringConvertible {
    public var code: ErrorCode
    public var message: String

    public init(_ code: ErrorCode, _ message: String) {
        self.code = code
        self.message = message
    }

    public static func badRequest(_ message: String) -> RequestError { .init(.badRequest, message) }

    public var description: String { "\(code.rawValue): \(message)" }
}
