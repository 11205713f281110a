import VersoClient
import VersoWire

/// One check of one rule or message of Protocol.md, named after the section it checks.
public struct ConformanceCase: Sendable {
    /// "SECTION topic: the rule", for example "3.3 put: a stale base gets conflict with the current state".
    public let name: String
    let body: @Sendable (CaseContext) async throws -> Void

    /// A case that runs `body`, which throws `ConformanceFailure` (or any error) when the
    /// server does not behave as the rule says, and `ConformanceSkip` when it cannot be checked.
    public init(_ name: String, _ body: @escaping @Sendable (CaseContext) async throws -> Void) {
        self.name = name
        self.body = body
    }

    /// A rule no client can provoke over the wire; always reported as skipped with `reason`.
    public static func notCheckable(_ name: String, because reason: String) -> ConformanceCase {
        ConformanceCase(name) { _ in throw ConformanceSkip(reason) }
    }
}

/// The access tokens the suite presents to a server started with `--auth` (Protocol.md 2.1).
public struct SuiteTokens: Sendable, Equatable {
    /// Sent on every connection: a token that may read and write everything (nil: none, for a
    /// server without `--auth`).
    public var primary: String?
    /// For the access-rule cases: a token that may read and write under `conformance/` only
    /// (nil: those cases are skipped).
    public var restricted: String?

    public init(primary: String? = nil, restricted: String? = nil) {
        self.primary = primary
        self.restricted = restricted
    }

    /// The prefix the restricted token is expected to be limited to.
    public static let restrictedPrefix = "conformance/"
}

/// Which token a connection presents.
public enum Identity: Sendable {
    /// The suite's primary token, if it has one.
    case primary
    /// The restricted token (a case that uses it skips itself when there is none).
    case restricted
    /// No token at all.
    case anonymous
}

/// What a case may use: the server's address, a key prefix of its own and the suite's tokens.
public struct CaseContext: Sendable {
    /// The server under test.
    public let address: ServerAddress
    /// The only keys this case may create start with this; it ends with "/". The runner
    /// deletes every live key under it at the end of the run.
    public let prefix: String
    /// The tokens the suite was given.
    public let tokens: SuiteTokens

    /// `prefix + name`.
    public func key(_ name: String) -> String { prefix + name }

    /// A key under the prefix that no other call returns, for barriers and throwaway records.
    public func freshKey(_ name: String = "fresh") -> String {
        prefix + name + "-" + String(UInt64.random(in: 0 ... .max), radix: 36)
    }

    /// Opens a WebSocket connection, offering permessage-deflate when `compression` is true and
    /// presenting the token of `identity` in the upgrade, runs `body` with it, then closes it.
    /// Throws `ConformanceSkip` for `.restricted` when the suite has no restricted token.
    public func connect<T: Sendable>(
        compression: Bool = true,
        as identity: Identity = .primary,
        _ body: (Peer) async throws -> T
    ) async throws -> T {
        let token: String?
        switch identity {
        case .primary: token = tokens.primary
        case .anonymous: token = nil
        case .restricted:
            guard let restricted = tokens.restricted else {
                throw ConformanceSkip(
                    "needs --restricted-token: a token that may read and write under \(SuiteTokens.restrictedPrefix) only"
                )
            }
            token = restricted
        }
        return try await WireConnection.with(url: address.url, compression: compression, token: token) { wire in
            try await body(Peer(wire))
        }
    }

    /// Sends a complete plain HTTP request to the server and reads the response.
    public func http(_ request: String) async throws -> RawHTTP.Response {
        try await RawHTTP.exchange(host: address.host, port: address.port, request: request)
    }

    /// A `GET path` request that closes the connection after the response.
    public func httpGet(_ path: String) -> String {
        "GET \(path) HTTP/1.1\r\nHost: \(address.host):\(address.port)\r\nConnection: close\r\n\r\n"
    }
}
