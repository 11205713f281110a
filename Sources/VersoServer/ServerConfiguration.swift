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
    /// Changes kept for resuming subscriptions with `since`. Default 100,000.
    public var historyLimit: Int64
    /// Bytes queued for one slow client before it is disconnected (close code 1008). Default 64 MiB.
    public var maxQueuedBytesPerConnection: Int
    /// How long shutdown waits for clients to acknowledge the close. Default 5 s.
    public var shutdownGracePeriod: Duration

    public init(
        host: String = "127.0.0.1",
        port: Int = 7070,
        dataDirectory: String = "./verso-data",
        allowForce: Bool = false,
        maxMessageBytes: Int = 1 << 20,
        durability: SQLiteStoreConfiguration.Durability = .full,
        historyLimit: Int64 = 100_000,
        maxQueuedBytesPerConnection: Int = 64 << 20,
        shutdownGracePeriod: Duration = .seconds(5)
    ) {
        self.host = host
        self.port = port
        self.dataDirectory = dataDirectory
        self.allowForce = allowForce
        self.maxMessageBytes = maxMessageBytes
        self.durability = durability
        self.historyLimit = historyLimit
        self.maxQueuedBytesPerConnection = maxQueuedBytesPerConnection
        self.shutdownGracePeriod = shutdownGracePeriod
    }
}

/// Why a `ServerConfiguration` cannot be served; says which setting and what to give instead.
public struct ConfigurationError: Error, Sendable, CustomStringConvertible {
    public let description: String

    init(_ description: String) { self.description = description }
}

extension ServerConfiguration {
    /// The message sizes `maxMessageBytes` may take: at least 1 KiB (a `hello` with a long
    /// client name must fit), at most 64 MiB, the default queue limit of one slow client. NIO's
    /// WebSocket frame decoder traps on a limit of 4 GiB or more at the first connection, and
    /// one message of several GiB would take that much memory for one request anyway.
    public static let messageBytesRange = 1024...(64 << 20)

    /// Checks every setting; `VersoServer.init` and `verso-server` refuse a configuration that
    /// fails, before opening the store or listening.
    public func validate() throws(ConfigurationError) {
        if host.isEmpty || host.contains(where: { $0.isWhitespace || $0.asciiValue.map { $0 < 0x20 || $0 == 0x7F } == true }) {
            throw ConfigurationError("--host \"\(host)\" is not an address: give a host name or IP address such as 127.0.0.1 or ::1")
        }
        guard (0...65535).contains(port) else {
            throw ConfigurationError("--port \(port) is not a TCP port: give 0...65535 (0 picks a free one)")
        }
        guard !dataDirectory.isEmpty else {
            throw ConfigurationError("--data is empty: give the folder for the database (it is created when missing)")
        }
        guard Self.messageBytesRange.contains(maxMessageBytes) else {
            throw ConfigurationError("--max-message-bytes \(maxMessageBytes) is out of range: give \(Self.messageBytesRange.lowerBound)...\(Self.messageBytesRange.upperBound) (1 KiB to 64 MiB)")
        }
        guard historyLimit >= 1 else {
            throw ConfigurationError("--history \(historyLimit) is too small: give at least 1 (changes kept for resuming subscriptions)")
        }
    }
}
