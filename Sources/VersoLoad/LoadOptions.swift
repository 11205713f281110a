/// How a load run is shaped. Every member has a default; the command line sets them.
public struct LoadOptions: Sendable {
    /// The servers' WebSocket URLs: one server, or several over one shared store, among which
    /// connections are spread (see `url(for:)`).
    public var urls = ["ws://127.0.0.1:7070/v1/ws"]

    /// The first server's URL: where a run sets up and checks what the servers hold.
    public var url: String {
        get { urls[0] }
        set { urls = [newValue] }
    }

    /// Where connection `index` of a scenario's workers connects: the URLs in turn.
    public func url(for index: Int) -> String { urls[index % urls.count] }

    /// Where subscriber `index` of a fan-out connects. Writers connect to the first URL; with
    /// several URLs, subscribers take the others in turn, so every delivery crosses servers.
    public func subscriberURL(_ index: Int) -> String {
        urls.count == 1 ? urls[0] : urls[1 + index % (urls.count - 1)]
    }
    /// Connections (workers, or clients in `counter`).
    public var connections = 64
    /// Distinct keys spread over the connections (`cas` without `--hot`).
    public var keys = 10_000
    /// Hot keys shared by all connections (`cas --hot`, `counter`); 0 means none.
    public var hot = 0
    /// Approximate size of each written record's data, in bytes.
    public var valueSize = 100
    /// Measured seconds of a timed run.
    public var duration: Double = 10
    /// Total operations instead of a duration (`cas`); increments per client (`counter`).
    public var ops: Int?
    /// Open-loop rate: intended operations per second over all connections (`cas`, `mixed`,
    /// `fanout` writers); nil runs closed loop.
    public var rate: Double?
    /// Seconds run before measuring starts.
    public var warmup: Double = 0
    /// Give every `cas` put an `idempotency_key` of its own (Protocol.md 3.7), to measure what
    /// keeping keys costs.
    public var idempotencyKeys = false
    /// Offer permessage-deflate.
    public var compression = true
    /// Access token for a server started with `--auth tokens`, sent in every upgrade.
    public var token: String?
    /// The server's process id, to report its CPU time and memory.
    public var serverPID: Int32?
    /// Print a progress line on stderr once a second.
    public var progress = true
    /// A short id that keeps this run's keys apart from earlier runs' on the same server.
    public var runID = String(UInt64.random(in: 0..<UInt64.max), radix: 36)

    public init() {}
}
