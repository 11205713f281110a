import Foundation
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
    /// Bytes queued for all clients together before those holding the most are disconnected
    /// (close code 1008). Default a quarter of the machine's memory (`defaultMaxQueuedBytes`).
    public var maxQueuedBytes: Int
    /// How long shutdown waits for clients to acknowledge the close. Default 5 s.
    public var shutdownGracePeriod: Duration
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
        maxConnections: Int = 10_000,
        handshakeTimeout: Duration = .seconds(10),
        maxRequestHeadBytes: Int = 16 << 10,
        pingInterval: Duration = .seconds(30)
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
        self.maxConnections = maxConnections
        self.handshakeTimeout = handshakeTimeout
        self.maxRequestHeadBytes = maxRequestHeadBytes
        self.pingInterval = pingInterval
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
           let limit = Int(text.trimmingCharacters(in: .whitespacesAndNewlines)), limit > 0 {
            memory = min(memory, limit)
        }
        return memory / 4
    }()
}
