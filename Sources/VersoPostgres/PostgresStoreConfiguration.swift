import Foundation
import NIOSSL
import PostgresNIO

/// Why the PostgreSQL store failed or could not be configured.
public struct PostgresStoreError: Error, Sendable, CustomStringConvertible {
    public let description: String

    public init(_ description: String) {
        self.description = description
    }
}

/// Settings of the PostgreSQL store (`--store postgres://…`).
public struct PostgresStoreConfiguration: Sendable {
    /// Where the database is, from the URL.
    public var host: String
    public var port: Int
    public var username: String
    public var password: String?
    public var database: String
    /// `?sslmode=require` in the URL: connect with TLS and verify the server's certificate.
    public var requireTLS: Bool
    /// How many changes the log keeps for `subscribe` with `since`; older ones are pruned.
    public var historyLimit: Int64
    /// How many versions of each key are kept once the log has pruned them, for `history`.
    public var keepVersions: Int64
    /// How long idempotency keys are kept at least.
    public var idempotencyRetention: Duration
    /// Most pooled connections for reads (the writer and the listener have one each).
    public var poolSize: Int
    /// How often the log is read for other servers' changes when no notification came.
    public var pollInterval: Duration
    /// How long a read waits for the database before it is answered `unavailable`.
    public var readTimeout: Duration

    /// Reads `postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE[?sslmode=disable|require]`.
    public init(
        url: String,
        historyLimit: Int64 = 100_000,
        keepVersions: Int64 = 0,
        idempotencyRetention: Duration = .seconds(24 * 3600),
        poolSize: Int = 8,
        pollInterval: Duration = .milliseconds(250),
        readTimeout: Duration = .seconds(5)
    ) throws(PostgresStoreError) {
        let example = "postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE"
        guard let components = URLComponents(string: url),
            components.scheme == "postgres" || components.scheme == "postgresql"
        else {
            throw PostgresStoreError("--store \(Self.redacted(url)) is not a PostgreSQL URL: give \(example)")
        }
        guard let host = components.host, !host.isEmpty else {
            throw PostgresStoreError("--store \(Self.redacted(url)) names no host: give \(example)")
        }
        guard let user = components.user, !user.isEmpty else {
            throw PostgresStoreError("--store \(Self.redacted(url)) names no user: give \(example)")
        }
        let database = String(components.path.drop { $0 == "/" })
        guard !database.isEmpty else {
            throw PostgresStoreError("--store \(Self.redacted(url)) names no database: give \(example)")
        }
        var requireTLS = false
        for item in components.queryItems ?? [] {
            switch (item.name, item.value) {
            case ("sslmode", "disable"): requireTLS = false
            case ("sslmode", "require"), ("sslmode", "verify-full"): requireTLS = true
            default:
                throw PostgresStoreError(
                    "--store: unknown URL parameter \(item.name)=\(item.value ?? ""); only sslmode=disable or sslmode=require is understood"
                )
            }
        }
        self.host = host
        self.port = components.port ?? 5432
        self.username = components.percentEncodedUser.flatMap { $0.removingPercentEncoding } ?? user
        self.password = components.percentEncodedPassword.flatMap { $0.removingPercentEncoding }
        self.database = database
        self.requireTLS = requireTLS
        self.historyLimit = historyLimit
        self.keepVersions = keepVersions
        self.idempotencyRetention = idempotencyRetention
        self.poolSize = max(1, poolSize)
        self.pollInterval = pollInterval
        self.readTimeout = readTimeout
    }

    /// The URL with its password left out, for messages and logs.
    public static func redacted(_ url: String) -> String {
        guard var components = URLComponents(string: url), components.password != nil else { return url }
        components.password = "***"
        return components.string ?? url
    }

    /// Where the server logs say the store is (no password).
    public var description: String { "postgres://\(username)@\(host):\(port)/\(database)" }

    private func tls() throws -> PostgresConnection.Configuration.TLS {
        requireTLS ? .require(try NIOSSLContext(configuration: .makeClientConfiguration())) : .disable
    }

    /// A single connection's settings: `synchronous_commit=on` (a commit another server can see
    /// is durable), and a transaction left idle is ended by the database after 5 s (so a frozen
    /// server cannot hold the commit lock).
    func connection(name: String) throws -> PostgresConnection.Configuration {
        var configuration = PostgresConnection.Configuration(
            host: host,
            port: port,
            username: username,
            password: password,
            database: database,
            tls: try tls()
        )
        configuration.options.additionalStartupParameters = [
            ("application_name", name),
            ("synchronous_commit", "on"),
            ("idle_in_transaction_session_timeout", "5000"),
        ]
        return configuration
    }

    /// The read pool's settings.
    func pool() throws -> PostgresClient.Configuration {
        var configuration = PostgresClient.Configuration(
            host: host,
            port: port,
            username: username,
            password: password,
            database: database,
            tls: requireTLS ? .require(.makeClientConfiguration()) : .disable
        )
        configuration.options.maximumConnections = poolSize
        configuration.options.connectTimeout = .seconds(5)
        configuration.options.additionalStartupParameters = [("application_name", "verso-reader")]
        return configuration
    }
}
