import CoreMetrics
import Foundation
import Prometheus
import Synchronization
import VersoCore
import VersoEngine

/// The server's metrics, served at `GET /metrics` in the Prometheus text format (`--metrics`).
///
/// Counted as they happen, through swift-metrics handlers made by a Prometheus factory over this
/// server's own registry (so several servers in one process, as in the tests, keep theirs
/// apart): requests by type, writes by outcome, connections accepted, the size and duration of
/// each group commit. Read when scraped: connections open, bytes queued for clients, slow
/// clients closed, subscriptions and deliveries, the last seq, the database and WAL sizes, and
/// the process's CPU time and resident memory.
final class ServerMetrics: Sendable {
    private let registry = PrometheusCollectorRegistry()
    private let connectionsTotal: CoreMetrics.Counter
    private let requests: [String: CoreMetrics.Counter]
    private let writes: [String: CoreMetrics.Counter]
    private let refusals: [String: CoreMetrics.Counter]
    private let outgoing: [String: CoreMetrics.Counter]
    private let commitSize: CoreMetrics.Recorder
    private let commitDuration: CoreMetrics.Timer
    private let syncDuration: CoreMetrics.Timer
    /// What is read when scraped.
    private let connectionsOpen: Prometheus.Gauge
    private let queuedBytes: Prometheus.Gauge
    private let subscriptions: Prometheus.Gauge
    private let lastSeq: Prometheus.Gauge
    private let oldestSeqKept: Prometheus.Gauge
    private let logChanges: Prometheus.Gauge
    private let largestUnread: Prometheus.Gauge
    private let databaseBytes: Prometheus.Gauge
    private let walBytes: Prometheus.Gauge
    private let residentBytes: Prometheus.Gauge
    private let deliveries: Prometheus.Counter
    private let slowCloses: Prometheus.Counter
    private let cpuSeconds: Prometheus.Counter
    /// The totals at the last scrape, to add only what is new to the counters read then.
    private let scraped = Mutex((deliveries: 0, slowCloses: 0, cpuTicks: Int64(0)))

    /// The request types counted (anything else counts as `invalid`).
    static let requestTypes = [
        "hello", "get", "put", "patch", "delete", "txn", "batch", "subscribe", "unsubscribe", "list", "history",
        "presence", "invalid", "binary",
    ]
    /// The types of the messages the server sends, counted (anything else counts as `other`).
    static let messageTypes = [
        "welcome", "ack", "conflict", "error", "snapshot", "update", "progress", "results", "subscribed",
        "unsubscribed", "records", "history", "presence", "other",
    ]
    /// The outcomes of writes counted: one per write request, and one per op of a batch.
    static let writeOutcomes = ["ack", "merged", "conflict", "not_found", "replayed", "refused"]

    init() {
        var factory = PrometheusMetricsFactory(registry: registry)
        factory.valueHistogramBuckets["verso_commit_batch_size"] = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024]
        let durationBuckets: [Duration] = [
            .microseconds(250), .microseconds(500), .milliseconds(1), .milliseconds(2), .milliseconds(5),
            .milliseconds(10), .milliseconds(25), .milliseconds(50), .milliseconds(100), .milliseconds(250),
            .milliseconds(500), .seconds(1),
        ]
        factory.durationHistogramBuckets["verso_commit_duration_seconds"] = durationBuckets
        factory.durationHistogramBuckets["verso_commit_sync_seconds"] = durationBuckets
        connectionsTotal = CoreMetrics.Counter(label: "verso_connections_total", factory: factory)
        requests = Self.counters("verso_requests_total", by: "type", Self.requestTypes, factory: factory)
        writes = Self.counters("verso_writes_total", by: "outcome", Self.writeOutcomes, factory: factory)
        refusals = Self.counters(
            "verso_write_refusals_total",
            by: "code",
            ErrorCode.allCases.map(\.rawValue),
            factory: factory
        )
        outgoing = Self.counters("verso_messages_out_total", by: "type", Self.messageTypes, factory: factory)
        commitSize = CoreMetrics.Recorder(label: "verso_commit_batch_size", aggregate: true, factory: factory)
        commitDuration = CoreMetrics.Timer(label: "verso_commit_duration_seconds", factory: factory)
        syncDuration = CoreMetrics.Timer(label: "verso_commit_sync_seconds", factory: factory)
        connectionsOpen = Self.gauge(registry, name: "verso_connections_open", help: "WebSocket connections open")
        queuedBytes = Self.gauge(
            registry,
            name: "verso_queued_bytes",
            help: "Bytes queued for all clients together (section 1.1 of Protocol.md)"
        )
        subscriptions = Self.gauge(registry, name: "verso_subscriptions", help: "Subscriptions held")
        lastSeq = Self.gauge(registry, name: "verso_last_seq", help: "The seq of the last committed change")
        oldestSeqKept = Self.gauge(
            registry,
            name: "verso_log_oldest_seq",
            help: "The oldest seq the change log still holds: a resume with since before it is reset"
        )
        logChanges = Self.gauge(
            registry,
            name: "verso_log_seqs",
            help: "Seqs the change log holds (--history bounds it)"
        )
        largestUnread = Self.gauge(
            registry,
            name: "verso_queued_bytes_max_connection",
            help: "The most bytes waiting unread for any one client"
        )
        databaseBytes = Self.gauge(registry, name: "verso_database_bytes", help: "Size of verso.sqlite")
        walBytes = Self.gauge(registry, name: "verso_wal_bytes", help: "Size of verso.sqlite-wal")
        residentBytes = Self.gauge(registry, name: "process_resident_memory_bytes", help: "Resident memory")
        deliveries = Self.counter(
            registry,
            name: "verso_deliveries_total",
            help: "Updates and presence messages sent to subscriptions"
        )
        slowCloses = Self.counter(
            registry,
            name: "verso_slow_client_closes_total",
            help: "Connections closed with 1008 for letting too much pile up unread"
        )
        cpuSeconds = Self.counter(registry, name: "process_cpu_seconds_total", help: "User and system CPU time")
    }

    /// The registry's gauge `name` (written as given: no namespace or unit is added to it).
    private static func gauge(
        _ registry: PrometheusCollectorRegistry,
        name: String,
        help: String
    ) -> Prometheus.Gauge {
        registry.makeGauge(descriptor: MetricNameDescriptor(metricName: name, unitName: "", helpText: help))
    }

    /// The registry's counter `name`, as `gauge(_:name:help:)`.
    private static func counter(
        _ registry: PrometheusCollectorRegistry,
        name: String,
        help: String
    ) -> Prometheus.Counter {
        registry.makeCounter(descriptor: MetricNameDescriptor(metricName: name, unitName: "", helpText: help))
    }

    /// One counter `label` for each of `values` of its one `dimension`, by value.
    private static func counters(
        _ label: String,
        by dimension: String,
        _ values: [String],
        factory: PrometheusMetricsFactory
    ) -> [String: CoreMetrics.Counter] {
        Dictionary(
            uniqueKeysWithValues: values.map {
                ($0, CoreMetrics.Counter(label: label, dimensions: [(dimension, $0)], factory: factory))
            }
        )
    }

    func connectionOpened() { connectionsTotal.increment() }

    /// Counts one request by its type.
    func count(_ request: Request) {
        requests[request.typeName]?.increment()
    }

    /// Counts a message that is not a valid request (`invalid`) or a binary one (`binary`).
    func countRequest(type: String) {
        requests[type]?.increment()
    }

    /// Counts one message queued for a client, by its `type`.
    func countOutgoing(_ message: OutgoingMessage) {
        switch message {
        case .update(let update, _):
            outgoing[update.isPresence ? "presence" : "update"]?.increment()
        case .bytes(let bytes):
            (outgoing[Self.type(of: bytes)] ?? outgoing["other"])?.increment()
        }
    }

    /// The `type` of a message the server encoded: every one starts `{"type":"NAME"`.
    private static func type(of message: [UInt8]) -> String {
        let prefix = Array(#"{"type":""#.utf8)
        guard message.count > prefix.count, message.starts(with: prefix) else { return "other" }
        let name = message[prefix.count...].prefix { $0 != UInt8(ascii: "\"") }
        return String(decoding: name.prefix(16), as: UTF8.self)
    }

    /// Counts one write's result.
    func count(_ result: WriteResult) {
        switch result {
        case .refused(let error):
            writes["refused"]?.increment()
            refusals[error.code.rawValue]?.increment()
        case .outcome(.batch(let outcomes)):
            for outcome in outcomes { writes[Self.outcomeName(outcome)]?.increment() }
        case .outcome(let outcome): writes[Self.outcomeName(outcome)]?.increment()
        }
    }

    /// A commit of `commands` that took `duration`, `sync` of it to make it durable.
    func commit(commands: Int, duration: Duration, sync: Duration?) {
        commitSize.record(commands)
        commitDuration.recordNanoseconds(Self.nanoseconds(duration))
        if let sync { syncDuration.recordNanoseconds(Self.nanoseconds(sync)) }
    }

    private static func nanoseconds(_ duration: Duration) -> Int64 {
        duration.components.seconds * 1_000_000_000 + duration.components.attoseconds / 1_000_000_000
    }

    private static func outcomeName(_ outcome: CommandOutcome) -> String {
        switch outcome {
        case .applied(_, _, let versions): versions.contains(where: \.merged) ? "merged" : "ack"
        case .conflict: "conflict"
        case .notFound: "not_found"
        case .replayed: "replayed"
        case .keyReused: "refused"
        case .batch: "ack"  // counted op by op in `count(_:)`
        }
    }

    /// The metrics in the Prometheus text format, with the figures read now.
    func render(engine: RecordEngine, registry connections: ConnectionRegistry, dataDirectory: String?) async -> [UInt8]
    {
        connectionsOpen.set(Int64(connections.count))
        queuedBytes.set(Int64(connections.queuedBytes))
        largestUnread.set(Int64(connections.largestUnread))
        if let (prunedThrough, last) = try? await engine.logBounds() {
            oldestSeqKept.set(prunedThrough + 1)
            logChanges.set(last - prunedThrough)
        }
        subscriptions.set(Int64(engine.subscriptionCount))
        lastSeq.set(engine.currentSeq)
        if let dataDirectory {
            let database = (dataDirectory as NSString).appendingPathComponent("verso.sqlite")
            databaseBytes.set(Self.fileSize(database))
            walBytes.set(Self.fileSize(database + "-wal"))
        }
        let process = Self.processFigures()
        residentBytes.set(process.residentBytes)
        scraped.withLock { last in
            let delivered = engine.deliveryCount
            deliveries.increment(by: Int64(max(0, delivered - last.deliveries)))
            last.deliveries = delivered
            let slow = connections.slowConnectionsClosed
            slowCloses.increment(by: Int64(max(0, slow - last.slowCloses)))
            last.slowCloses = slow
            cpuSeconds.increment(by: Double(max(0, process.cpuTicks - last.cpuTicks)) / Double(Self.ticksPerSecond))
            last.cpuTicks = process.cpuTicks
        }
        return registry.emitToBuffer()
    }

    private static func fileSize(_ path: String) -> Int64 {
        ((try? FileManager.default.attributesOfItem(atPath: path))?[.size] as? NSNumber)?.int64Value ?? 0
    }

    private static let ticksPerSecond = max(1, sysconf(Int32(_SC_CLK_TCK)))

    /// utime + stime (clock ticks) and RSS (bytes) from /proc/self/stat; zeros where it cannot be read.
    private static func processFigures() -> (cpuTicks: Int64, residentBytes: Int64) {
        guard let text = try? String(contentsOfFile: "/proc/self/stat", encoding: .utf8),
            let close = text.lastIndex(of: ")")
        else { return (0, 0) }
        // The fields after the command name, which may hold spaces: state is field 3.
        let fields = text[text.index(after: close)...].split(separator: " ")
        guard fields.count > 22, let user = Int64(fields[11]), let system = Int64(fields[12]),
            let pages = Int64(fields[21])
        else { return (0, 0) }
        return (user + system, pages * Int64(sysconf(Int32(_SC_PAGESIZE))))
    }
}

extension Request {
    /// The request's `type` as sent (a single write's own: put, patch or delete).
    var typeName: String {
        switch self {
        case .hello: "hello"
        case .get: "get"
        case .write(let operation): operation.action.name
        case .txn: "txn"
        case .batch: "batch"
        case .subscribe: "subscribe"
        case .unsubscribe: "unsubscribe"
        case .list: "list"
        case .history: "history"
        case .presence: "presence"
        }
    }
}
