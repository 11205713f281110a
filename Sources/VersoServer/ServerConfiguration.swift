import Foundation
import VersoPostgres
import VersoSQLite

/// Everything `verso-server` can be told, each with the default a newcomer gets.
public struct ServerConfiguration: Sendable {
    /// Address to listen on. Default 127.0.0.1 (this machine only).
    public var host: String
    /// TCP port; 0 picks a free one (tests). Default 7070.
    public var port: Int
    /// Folder for the SQLite database. Default ./verso-data.
    public var dataDirectory: String
    /// Accept `"force": true` writes. Default false: they get `forbidden`.
    public var allowForce: Bool
    /// Largest message accepted, counted after decompression. Default 1 MiB.
    public var maxMessageBytes: Int
    /// Commit durability. Default `.full` (fsync at every group commit).
    public var durability: SQLiteStoreConfiguration.Durability
    /// Whether `durability` was given (`--durability`): the PostgreSQL store refuses it.
    public var durabilityGiven = false
    /// The PostgreSQL database several servers share (`--store postgres://…`). Default nil:
    /// the SQLite database in `dataDirectory`.
    public var storeURL: String?
    /// Changes kept for resuming subscriptions with `since`. Default 100,000.
    public var historyLimit: Int64
    /// Versions of each key kept for `history` once the change log has pruned them
    /// (`--keep-versions`). Default 10.
    public var keepVersions: Int64 = 10
    /// Hours an idempotency key is kept at least (`--idempotency-hours`). Default 24.
    public var idempotencyHours: Int = 24
    /// Bytes queued for one slow client before it is disconnected (close code 1008). Default 64 MiB.
    public var maxQueuedBytesPerConnection: Int
    /// Bytes queued for all clients together before those holding the most are disconnected
    /// (close code 1008). Default a quarter of the machine's memory (`defaultMaxQueuedBytes`).
    public var maxQueuedBytes: Int
    /// How long shutdown waits for clients to acknowledge the close. Default 5 s.
    public var shutdownGracePeriod: Duration
    /// How long a connection the server closes (a slow client, a protocol error, a refused
    /// handshake) has to take what was sent before its close, and answer it, before the socket
    /// is dropped. Default 2 s.
    public var closeGracePeriod: Duration
    /// Connections open at once; one more is answered HTTP 503 and closed. Default 10,000.
    public var maxConnections: Int
    /// Time from accepting a connection to its upgrade to WebSocket; then it is closed (with
    /// HTTP 408 if part of a request was read). Default 10 s.
    public var handshakeTimeout: Duration
    /// Largest request line plus headers; a larger one is answered HTTP 431. Default 16 KiB.
    public var maxRequestHeadBytes: Int
    /// Time between the server's pings; a ping not answered within it closes the connection
    /// with 4001. Default 30 s.
    public var pingInterval: Duration
    /// How clients prove who they are. Default `.none`: every connection may do everything.
    public var authentication: Authentication = .none
    /// The certificate and key to serve `wss://` and `https://` with (`--tls-cert-file`,
    /// `--tls-key-file`). Default nil: plain `ws://` and `http://`.
    public var tls: ServerTLS.Files?
    /// Origins (`scheme://host[:port]`) besides the server's own whose web pages may open a
    /// WebSocket (`--allow-origin`); `*` only with `allowAnyOrigin`. Default none. See
    /// `OriginPolicy`.
    public var allowedOrigins: [String]
    /// Accept a WebSocket from a web page of any origin (`--allow-any-origin`). Default false.
    public var allowAnyOrigin: Bool
    /// Serve `GET /metrics` in the Prometheus text format (`--metrics`). Default false.
    public var metrics = false
    /// Serve a `host` that is not loopback although the server has no authentication or TLS
    /// (`--insecure`). Default false: such a host is refused (protected mode).
    public var insecure: Bool

    public init(
        host: String = "127.0.0.1",
        port: Int = 7070,
        dataDirectory: String = "./verso-data",
        allowForce: Bool = false,
        maxMessageBytes: Int = 1 << 20,
        durability: SQLiteStoreConfiguration.Durability = .full,
        historyLimit: Int64 = 100_000,
        maxQueuedBytesPerConnection: Int = 64 << 20,
        maxQueuedBytes: Int = ServerConfiguration.defaultMaxQueuedBytes,
        shutdownGracePeriod: Duration = .seconds(5),
        closeGracePeriod: Duration = .seconds(2),
        maxConnections: Int = 10_000,
        handshakeTimeout: Duration = .seconds(10),
        maxRequestHeadBytes: Int = 16 << 10,
        pingInterval: Duration = .seconds(30),
        allowedOrigins: [String] = [],
        allowAnyOrigin: Bool = false,
        insecure: Bool = false
    ) {
        self.host = host
        self.port = port
        self.dataDirectory = dataDirectory
        self.allowForce = allowForce
        self.maxMessageBytes = maxMessageBytes
        self.durability = durability
        self.historyLimit = historyLimit
        self.maxQueuedBytesPerConnection = maxQueuedBytesPerConnection
        self.maxQueuedBytes = maxQueuedBytes
        self.shutdownGracePeriod = shutdownGracePeriod
        self.closeGracePeriod = closeGracePeriod
        self.maxConnections = maxConnections
        self.handshakeTimeout = handshakeTimeout
        self.maxRequestHeadBytes = maxRequestHeadBytes
        self.pingInterval = pingInterval
        self.allowedOrigins = allowedOrigins
        self.allowAnyOrigin = allowAnyOrigin
        self.insecure = insecure
    }
}

extension ServerConfiguration {
    /// A quarter of the memory this process may use: the machine's physical memory, or the
    /// cgroup's memory limit when that is lower (a container); 1 GiB if neither can be read.
    public static let defaultMaxQueuedBytes: Int = {
        let pages = sysconf(Int32(_SC_PHYS_PAGES))
        let pageSize = sysconf(Int32(_SC_PAGESIZE))
        var memory = pages > 0 && pageSize > 0 ? pages * pageSize : 4 << 30
        if let text = try? String(contentsOfFile: "/sys/fs/cgroup/memory.max", encoding: .utf8),
            let limit = Int(text.trimmingCharacters(in: .whitespacesAndNewlines)), limit > 0
        {
            memory = min(memory, limit)
        }
        return memory / 4
    }()
}

/// Why a `ServerConfiguration` cannot be served; says which setting and what to give instead.
public struct ConfigurationError: Error, Sendable, CustomStringConvertible {
    public let description: String

    init(_ description: String) { self.description = description }
}

extension ServerConfiguration {
    /// The message sizes `maxMessageBytes` may take: at least 1 KiB (a `hello` with a long
    /// client name must fit), at most 64 MiB, the default queue limit of one slow client: one
    /// message of several GiB would take that much memory for one request.
    public static let messageBytesRange = 1024...(64 << 20)

    /// Checks every setting; `VersoServer.init` and `verso-server` refuse a configuration that
    /// fails, before opening the store or listening.
    public func validate() throws(ConfigurationError) {
        if host.isEmpty
            || host.contains(where: { $0.isWhitespace || $0.asciiValue.map { $0 < 0x20 || $0 == 0x7F } == true })
        {
            throw ConfigurationError(
                "--host \"\(host)\" is not an address: give a host name or IP address such as 127.0.0.1 or ::1"
            )
        }
        guard insecure || authentication != .none || HostAddress.isLoopback(host) else {
            throw ConfigurationError(Self.unprotectedHostMessage(host: host))
        }
        guard (0...65535).contains(port) else {
            throw ConfigurationError("--port \(port) is not a TCP port: give 0...65535 (0 picks a free one)")
        }
        if let storeURL {
            do {
                _ = try PostgresStoreConfiguration(url: storeURL)
            } catch {
                throw ConfigurationError(error.description)
            }
            guard !durabilityGiven || durability == .full else {
                throw ConfigurationError(
                    "--durability \(durability.rawValue) does not apply to --store: every PostgreSQL commit is durable before it is acknowledged or seen by other servers (synchronous_commit=on)"
                )
            }
        }
        guard !dataDirectory.isEmpty else {
            throw ConfigurationError("--data is empty: give the folder for the database (it is created when missing)")
        }
        guard Self.messageBytesRange.contains(maxMessageBytes) else {
            throw ConfigurationError(
                "--max-message-bytes \(maxMessageBytes) is out of range: give \(Self.messageBytesRange.lowerBound)...\(Self.messageBytesRange.upperBound) (1 KiB to 64 MiB)"
            )
        }
        guard historyLimit >= 1 else {
            throw ConfigurationError(
                "--history \(historyLimit) is too small: give at least 1 (changes kept for resuming subscriptions)"
            )
        }
        guard (0...1_000_000).contains(keepVersions) else {
            throw ConfigurationError(
                "--keep-versions \(keepVersions) is out of range: give 0...1000000 (versions of each key kept beyond --history)"
            )
        }
        guard (1...8760).contains(idempotencyHours) else {
            throw ConfigurationError(
                "--idempotency-hours \(idempotencyHours) is out of range: give 1...8760 (how long retries stay safe)"
            )
        }
        guard maxQueuedBytes >= 1 << 20 else {
            throw ConfigurationError("--max-queued-bytes \(maxQueuedBytes) is too small: give at least 1048576 (1 MiB)")
        }
        guard (1...1_000_000).contains(maxConnections) else {
            throw ConfigurationError("--max-connections \(maxConnections) is out of range: give 1...1000000")
        }
        guard (1024...(1 << 20)).contains(maxRequestHeadBytes) else {
            throw ConfigurationError(
                "--max-request-head-bytes \(maxRequestHeadBytes) is out of range: give 1024...1048576"
            )
        }
        guard handshakeTimeout >= .milliseconds(100), handshakeTimeout <= .seconds(3600) else {
            throw ConfigurationError(
                "--handshake-timeout \(handshakeTimeout) is out of range: give 0.1 to 3600 seconds"
            )
        }
        guard pingInterval >= .milliseconds(100), pingInterval <= .seconds(3600) else {
            throw ConfigurationError("--ping-interval \(pingInterval) is out of range: give 0.1 to 3600 seconds")
        }
        _ = try originPolicy()
    }

    /// The origin rule of `allowedOrigins` and `allowAnyOrigin`; throws for a value that is not
    /// an origin, and for `*` without `allowAnyOrigin`.
    public func originPolicy() throws(ConfigurationError) -> OriginPolicy {
        try OriginPolicy(allowing: allowedOrigins, allowAnyOrigin: allowAnyOrigin, servesTLS: tls != nil)
    }

    /// Whether `host` is loopback (127.0.0.0/8, ::1, localhost): only this machine can connect.
    public var listensOnLoopbackOnly: Bool { HostAddress.isLoopback(host) }

    /// Protected mode, like Redis's: with no authentication the server listens only where nobody
    /// but this machine can reach it, unless told `--insecure`. TLS alone does not lift it: it
    /// hides the traffic but lets anyone who connects do everything.
    static func unprotectedHostMessage(host: String) -> String {
        "--host \(host) is not a loopback address, and this server has no authentication: "
            + "anyone who can reach it could list, read, overwrite and delete every record, and see all traffic in clear text. "
            + "Give --auth tokens --tokens-file FILE or --auth jwt (Protocol.md 2.1) with --tls-cert-file and --tls-key-file (or a TLS proxy in front), "
            + "or listen on loopback (127.0.0.1, the default, ::1 or localhost) behind a TLS proxy that authenticates users, "
            + "or give --insecure (VERSO_INSECURE=1) to serve \(host) unprotected anyway"
    }
}
