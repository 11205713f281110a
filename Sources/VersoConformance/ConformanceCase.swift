import VersoClient

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

/// What a case may use: the server's address and a key prefix of its own.
public struct CaseContext: Sendable {
    /// The server under test.
    public let address: ServerAddress
    /// The only keys this case may create start with this; it ends with "/". The runner
    /// deletes every live key under it at the end of the run.
    public let prefix: String

    /// `prefix + name`.
    public func key(_ name: String) -> String { prefix + name }

    /// A key under the prefix that no other call returns, for barriers and throwaway records.
    public func freshKey(_ name: String = "fresh") -> String {
        prefix + name + "-" + String(UInt64.random(in: 0 ... .max), radix: 36)
    }

    /// Opens a WebSocket connection, offering permessage-deflate when `compression` is true,
    /// runs `body` with it, then closes it.
    public func connect<T: Sendable>(compression: Bool = true, _ body: (Peer) async throws -> T) async throws -> T {
        try await WireConnection.with(url: address.url, compression: compression) { wire in
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
