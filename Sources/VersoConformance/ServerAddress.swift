import Foundation

/// Where the server under test is: its WebSocket URL and the parts a plain HTTP request needs.
public struct ServerAddress: Sendable, Equatable {
    /// The URL as given, for WebSocket connections.
    public let url: String
    /// The host and port, for plain HTTP requests.
    public let host: String
    public let port: Int
    /// The WebSocket path, for example `/v1/ws`.
    public let path: String

    /// Parses a `ws://HOST:PORT/PATH` URL (the port defaults to 80).
    public init(_ url: String) throws(ConformanceError) {
        guard let components = URLComponents(string: url) else { throw .invalidURL(url, "it does not parse as a URL") }
        guard components.scheme?.lowercased() == "ws" else {
            throw .invalidURL(
                url,
                components.scheme?.lowercased() == "wss"
                    ? "wss:// is not supported; run the suite against the server's plain ws:// port"
                    : "the scheme must be ws"
            )
        }
        guard let host = components.host, !host.isEmpty else { throw .invalidURL(url, "it names no host") }
        self.url = url
        self.host = host
        self.port = components.port ?? 80
        self.path = components.path.isEmpty ? "/" : components.path
    }
}
