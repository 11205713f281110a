import ArgumentParser
import Dispatch
import Foundation
import Logging
import VersoServer
import VersoSQLite

/// `verso-server`: serves (the default subcommand), or mints a development token.
@main
struct VersoServerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "verso-server",
        abstract: "Serve versioned JSON records over WebSocket, persisted in SQLite.",
        discussion: "With no subcommand, serve (see verso-server serve --help).",
        subcommands: [ServeCommand.self, MintTokenCommand.self, BackupCommand.self, RestoreCommand.self],
        defaultSubcommand: ServeCommand.self
    )
}

/// `verso-server [serve]`: reads flags (or VERSO_* environment variables) and runs the server.
struct ServeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Serve versioned JSON records over WebSocket, persisted in SQLite (the default).",
        discussion: """
            Every option can also be set with the environment variable in brackets; a flag wins over the variable.
            Clients connect to ws://HOST:PORT/v1/ws, or wss:// with --tls-cert-file (see Protocol.md). GET /healthz answers 200 while the server takes requests.
            Security: with no --auth every connection may do everything, so the server listens only on loopback unless --insecure; a WebSocket from a web page is accepted only from the page served at / and from --allow-origin origins (403 otherwise). SIGHUP reloads the tokens or key file and the TLS certificate. See SECURITY.md.
            """
    )

    @Option(
        help:
            "Address to listen on [VERSO_HOST] (default 127.0.0.1). Only loopback (127.0.0.0/8, ::1, localhost) unless --auth or --insecure."
    )
    var host: String?

    @Flag(
        help:
            "Listen on a --host that is not loopback although there is no authentication: anyone who can reach the port can read, overwrite and delete every record [VERSO_INSECURE=1]."
    )
    var insecure = false

    @Option(
        help: ArgumentHelp(
            "A web origin (scheme://host[:port]) whose pages may open a WebSocket, besides the page served at /; repeatable [VERSO_ALLOW_ORIGIN, comma separated].",
            valueName: "origin"
        )
    )
    var allowOrigin: [String] = []

    @Flag(
        help:
            "Let a web page of any origin open a WebSocket (any site the user visits could read and write the records) [VERSO_ALLOW_ANY_ORIGIN=1]."
    )
    var allowAnyOrigin = false

    @Option(help: "TCP port; 0 picks a free one [VERSO_PORT] (default 7070).")
    var port: Int?

    @Option(help: "Folder for the SQLite database [VERSO_DATA] (default ./verso-data).")
    var data: String?

    @Option(
        help:
            "Keep the records in PostgreSQL instead, shared with other servers: postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE[?sslmode=require] [VERSO_STORE] (default: the SQLite database in --data)."
    )
    var store: String?

    @Flag(help: "Accept writes with \"force\": true [VERSO_ALLOW_FORCE=1].")
    var allowForce = false

    @Option(help: "Largest message accepted, in bytes after decompression [VERSO_MAX_MESSAGE_BYTES] (default 1048576).")
    var maxMessageBytes: Int?

    @Option(
        help:
            "Commit durability: full (fsync each group commit) or normal (survives a server crash, not power loss) [VERSO_DURABILITY] (default full)."
    )
    var durability: String?

    @Option(help: "Changes kept for resuming subscriptions with since [VERSO_HISTORY] (default 100000).")
    var history: Int64?

    @Option(
        help:
            "Versions of each key kept for history once --history has pruned them [VERSO_KEEP_VERSIONS] (default 10)."
    )
    var keepVersions: Int64?

    @Option(help: "Hours an idempotency key is kept at least [VERSO_IDEMPOTENCY_HOURS] (default 24).")
    var idempotencyHours: Int?

    @Option(help: "Connections open at once; one more is answered HTTP 503 [VERSO_MAX_CONNECTIONS] (default 10000).")
    var maxConnections: Int?

    @Option(
        help:
            "Seconds a new connection has to complete its WebSocket handshake, then it is closed (408 if a request was begun) [VERSO_HANDSHAKE_TIMEOUT] (default 10)."
    )
    var handshakeTimeout: Double?

    @Option(
        help:
            "Largest HTTP request line plus headers, in bytes; a larger one is answered 431 [VERSO_MAX_REQUEST_HEAD_BYTES] (default 16384)."
    )
    var maxRequestHeadBytes: Int?

    @Option(
        help:
            "Seconds between the server's pings; a client that leaves one unanswered that long is closed with 4001 [VERSO_PING_INTERVAL] (default 30)."
    )
    var pingInterval: Double?

    @Option(
        help:
            "Bytes queued for all clients together before those holding the most are disconnected with 1008 [VERSO_MAX_QUEUED_BYTES] (default a quarter of the machine's memory)."
    )
    var maxQueuedBytes: Int?

    @Option(
        help:
            "How clients prove who they are: none (every connection may do everything), tokens (see --tokens-file) or jwt (signed JSON Web Tokens, see --jwt-secret-file) [VERSO_AUTH] (default none)."
    )
    var auth: String?

    @Option(
        help:
            "With --auth tokens: the JSON file of tokens, each with its user and access rules (Protocol.md 2.1); read again on SIGHUP [VERSO_TOKENS_FILE]."
    )
    var tokensFile: String?

    @Option(help: "With --auth jwt: a file holding the HS256 secret (at least 32 bytes) [VERSO_JWT_SECRET_FILE].")
    var jwtSecretFile: String?

    @Option(
        help:
            "With --auth jwt: a PEM public key (RSA for RS256, P-256 for ES256, Ed25519 for EdDSA) [VERSO_JWT_PUBLIC_KEY_FILE]."
    )
    var jwtPublicKeyFile: String?

    @Option(help: "With --auth jwt: a JSON Web Key Set file; each token's kid picks its key [VERSO_JWKS_FILE].")
    var jwksFile: String?

    @Option(
        help:
            "PEM certificate chain: serve wss:// and https:// (with --tls-key-file); read again on SIGHUP [VERSO_TLS_CERT_FILE]."
    )
    var tlsCertFile: String?

    @Option(help: "PEM private key of --tls-cert-file [VERSO_TLS_KEY_FILE].")
    var tlsKeyFile: String?

    @Flag(
        help:
            "Serve GET /metrics in the Prometheus text format; with --auth, only to a bearer token that may read every key [VERSO_METRICS=1]."
    )
    var metrics = false

    @Option(help: "trace, debug, info, notice, warning, error or critical [VERSO_LOG_LEVEL] (default info).")
    var logLevel: String?

    @Option(
        help:
            "Log lines as text, or as json: one JSON object per line with the connection's session and the request's rid as members [VERSO_LOG_FORMAT] (default text)."
    )
    var logFormat: String?

    func run() async throws {
        let environment = ProcessInfo.processInfo.environment
        func setting<T>(_ flag: T?, _ variable: String, _ parse: (String) -> T?, default value: T) throws -> T {
            if let flag { return flag }
            guard let text = environment[variable], !text.isEmpty else { return value }
            guard let parsed = parse(text) else { throw ValidationError("\(variable)=\(text) is not a valid value") }
            return parsed
        }
        func enabled(_ flag: Bool, _ variable: String) -> Bool {
            flag || ["1", "true", "yes"].contains(environment[variable]?.lowercased() ?? "")
        }
        let level = try setting(logLevel, "VERSO_LOG_LEVEL", { $0 }, default: "info")
        guard let logLevel = Logger.Level(rawValue: level) else {
            throw ValidationError(
                "log level \"\(level)\" is not one of trace, debug, info, notice, warning, error, critical"
            )
        }
        let durabilityName = try setting(durability, "VERSO_DURABILITY", { $0 }, default: "full")
        guard let durability = SQLiteStoreConfiguration.Durability(rawValue: durabilityName) else {
            throw ValidationError("durability \"\(durabilityName)\" is not full or normal")
        }
        var configuration = ServerConfiguration(
            host: try setting(host, "VERSO_HOST", { $0 }, default: "127.0.0.1"),
            port: try setting(port, "VERSO_PORT", { Int($0) }, default: 7070),
            dataDirectory: try setting(data, "VERSO_DATA", { $0 }, default: "./verso-data"),
            allowForce: enabled(allowForce, "VERSO_ALLOW_FORCE"),
            maxMessageBytes: try setting(maxMessageBytes, "VERSO_MAX_MESSAGE_BYTES", { Int($0) }, default: 1 << 20),
            durability: durability,
            historyLimit: try setting(history, "VERSO_HISTORY", { Int64($0) }, default: 100_000),
            maxQueuedBytes: try setting(
                maxQueuedBytes,
                "VERSO_MAX_QUEUED_BYTES",
                { Int($0) },
                default: ServerConfiguration.defaultMaxQueuedBytes
            )
        )
        configuration.metrics = enabled(metrics, "VERSO_METRICS")
        configuration.storeURL = store ?? environment["VERSO_STORE"].flatMap { $0.isEmpty ? nil : $0 }
        configuration.durabilityGiven = self.durability != nil || environment["VERSO_DURABILITY"] != nil
        configuration.keepVersions = try setting(keepVersions, "VERSO_KEEP_VERSIONS", { Int64($0) }, default: 10)
        configuration.idempotencyHours = try setting(
            idempotencyHours,
            "VERSO_IDEMPOTENCY_HOURS",
            { Int($0) },
            default: 24
        )
        configuration.insecure = enabled(insecure, "VERSO_INSECURE")
        configuration.allowAnyOrigin = enabled(allowAnyOrigin, "VERSO_ALLOW_ANY_ORIGIN")
        configuration.allowedOrigins =
            allowOrigin.isEmpty
            ? (environment["VERSO_ALLOW_ORIGIN"] ?? "").split(separator: ",").map {
                $0.trimmingCharacters(in: .whitespaces)
            }.filter { !$0.isEmpty }
            : allowOrigin
        configuration.maxConnections = try setting(
            maxConnections,
            "VERSO_MAX_CONNECTIONS",
            { Int($0) },
            default: 10_000
        )
        configuration.maxRequestHeadBytes = try setting(
            maxRequestHeadBytes,
            "VERSO_MAX_REQUEST_HEAD_BYTES",
            { Int($0) },
            default: 16 << 10
        )
        let handshakeSeconds = try setting(handshakeTimeout, "VERSO_HANDSHAKE_TIMEOUT", { Double($0) }, default: 10)
        let pingSeconds = try setting(pingInterval, "VERSO_PING_INTERVAL", { Double($0) }, default: 30)
        guard handshakeSeconds.isFinite, (0.1...3600).contains(handshakeSeconds) else {
            throw ValidationError("--handshake-timeout \(handshakeSeconds) is not between 0.1 and 3600 seconds")
        }
        guard pingSeconds.isFinite, (0.1...3600).contains(pingSeconds) else {
            throw ValidationError("--ping-interval \(pingSeconds) is not between 0.1 and 3600 seconds")
        }
        configuration.authentication = try authentication(setting: { flag, variable in
            try setting(flag, variable, { $0 }, default: "")
        })
        let certificate = try setting(tlsCertFile, "VERSO_TLS_CERT_FILE", { $0 }, default: "")
        let privateKey = try setting(tlsKeyFile, "VERSO_TLS_KEY_FILE", { $0 }, default: "")
        switch (certificate.isEmpty, privateKey.isEmpty) {
        case (true, true): configuration.tls = nil
        case (false, false): configuration.tls = ServerTLS.Files(certificate: certificate, privateKey: privateKey)
        case (false, true): throw ValidationError("--tls-cert-file needs --tls-key-file, the certificate's private key")
        case (true, false): throw ValidationError("--tls-key-file needs --tls-cert-file, the certificate it belongs to")
        }
        configuration.handshakeTimeout = .milliseconds(Int64((handshakeSeconds * 1000).rounded()))
        configuration.pingInterval = .milliseconds(Int64((pingSeconds * 1000).rounded()))
        do {
            try configuration.validate()
        } catch {
            throw ValidationError(error.description)
        }

        let format = try setting(logFormat, "VERSO_LOG_FORMAT", { $0 }, default: "text")
        switch format {
        case "text":
            LoggingSystem.bootstrap { label in
                var handler = StreamLogHandler.standardError(label: label)
                handler.logLevel = logLevel
                return handler
            }
        case "json":
            LoggingSystem.bootstrap { label in
                var handler = JSONLogHandler(label: label)
                handler.logLevel = logLevel
                return handler
            }
        default:
            throw ValidationError("--log-format \(format) is not text or json")
        }
        let logger = Logger(label: "verso")
        let fileLimit = FileLimit.raise(logger: logger)
        if fileLimit < configuration.maxConnections + 64 {
            logger.warning(
                "the open-file limit is below --max-connections plus 64 (the server's own files): connections past it wait to be accepted instead of getting 503",
                metadata: ["verso.limit": "\(fileLimit)", "verso.max_connections": "\(configuration.maxConnections)"]
            )
        }
        let server: VersoServer
        do {
            server = try await VersoServer(configuration: configuration, logger: logger)
        } catch let error as ConfigurationError {
            // A tokens, key or certificate file that cannot be used is a bad flag like any
            // other (exit code 64).
            throw ValidationError(error.description)
        }
        let watchdog = ShutdownWatchdog(server: server, logger: logger)
        try await server.run()
        watchdog.cancel()
    }

    /// `--auth` and the one file it needs; `setting` reads a flag or its variable ("" if unset).
    private func authentication(setting: (String?, String) throws -> String) throws -> Authentication {
        let name = try setting(auth, "VERSO_AUTH")
        let files: [(flag: String, path: String, source: (String) -> JWTKeySource?)] = [
            ("--tokens-file", try setting(tokensFile, "VERSO_TOKENS_FILE"), { _ in nil }),
            ("--jwt-secret-file", try setting(jwtSecretFile, "VERSO_JWT_SECRET_FILE"), { .secretFile($0) }),
            (
                "--jwt-public-key-file", try setting(jwtPublicKeyFile, "VERSO_JWT_PUBLIC_KEY_FILE"),
                { .publicKeyFile($0) }
            ),
            ("--jwks-file", try setting(jwksFile, "VERSO_JWKS_FILE"), { .jwksFile($0) }),
        ].filter { !$0.path.isEmpty }
        switch name {
        case "", "none":
            if let given = files.first {
                throw ValidationError(
                    "\(given.flag) is given but --auth is none: add --auth \(given.flag == "--tokens-file" ? "tokens" : "jwt")"
                )
            }
            return .none
        case "tokens":
            guard files.count == 1, files[0].flag == "--tokens-file" else {
                throw ValidationError(
                    "--auth tokens needs --tokens-file FILE (the tokens, their users and rules; Protocol.md 2.1), and no --jwt-* or --jwks-file"
                )
            }
            return .tokens(file: files[0].path)
        case "jwt":
            guard files.count == 1, let source = files[0].source(files[0].path) else {
                throw ValidationError(
                    "--auth jwt needs exactly one of --jwt-secret-file (HS256), --jwt-public-key-file (RS256, ES256, EdDSA) or --jwks-file, and no --tokens-file"
                )
            }
            return .jwt(keys: source)
        default:
            throw ValidationError("--auth \"\(name)\" is not none, tokens or jwt")
        }
    }
}

/// Makes sure the process exits within a few seconds of SIGINT or SIGTERM: the server drains
/// and closes its connections at once, but a client that keeps reconnecting or never completes
/// a close handshake must not hold the process. Exits 0 only if every queued write committed.
final class ShutdownWatchdog {
    /// Time allowed from the signal to the end of `run()`.
    static let limit = 10

    private let sources: [any DispatchSourceSignal]

    init(server: VersoServer, logger: Logger) {
        sources = [SIGINT, SIGTERM].map { signalNumber in
            let source = DispatchSource.makeSignalSource(signal: signalNumber, queue: .global())
            source.setEventHandler {
                DispatchQueue.global().asyncAfter(deadline: .now() + .seconds(Self.limit)) {
                    let drained = server.hasDrained
                    logger.warning(
                        "shutdown took longer than \(Self.limit) s; exiting",
                        metadata: ["verso.drained": "\(drained)"]
                    )
                    exit(drained ? 0 : 1)
                }
            }
            source.resume()
            return source
        }
    }

    func cancel() {
        for source in sources { source.cancel() }
    }
}
