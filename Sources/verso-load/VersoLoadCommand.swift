import ArgumentParser
import Foundation
import VersoLoad

@main
struct VersoLoadCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "verso-load",
        abstract:
            "Drive a running Verso server with many real WebSocket connections and report throughput and latency.",
        discussion: """
            Scenarios (each has its own --help):
              cas          C connections doing compare-and-set puts (base = last
                           acked version) on keys of their own, or with --hot N on
                           N keys shared by all, taking the version from each
                           conflict's reply for the retry. Latency: put round trip.
              mixed        C connections, each subscribed to --subscribe N random
                           keys, making random gets (--read-percent, default 80)
                           and puts (base = last version seen; a conflict's reply
                           gives the next one) on --keys shared keys. Latency per
                           kind: get, put, and update delivery (write to receipt).
              counter      C clients x K increments (--ops K, default 100) on
                           --hot H keys (default 1): get, put with base, again on
                           conflict. Checks that the final count is exactly C x K
                           and every acknowledged (key, version) is unique.
              merge        C connections editing --records R shared records with
                           "merge":"fields" patches of a field each (--share S
                           connections per field), on the base each last saw:
                           with S 1 every edit must land, merged, with more only
                           the shared field may clash; then every field must
                           hold its last acknowledged value. Latency: patch.
              fanout       --writers W connections doing puts on a key each,
                           --subscribers S connections subscribed to each key:
                           deliveries per second and the write-to-delivery
                           latency seen by every subscriber.
              presence     --presenters P connections changing their presence on
                           one record 10 times a second each, --subscribers S
                           connections subscribed to it: presence deliveries per
                           second and change-to-delivery latency.
              connections  C idle connections subscribed to one shared key: server
                           RSS per connection (with --server-pid), then the time
                           one change takes to reach all C.
              subflood     C idle connections each holding --subscriptions S
                           prefix subscriptions that no write matches, while
                           --writers W connections do compare-and-set puts on
                           keys of their own: put latency and writes/s (run with
                           --subscriptions 0 for the baseline).
              hog          One attacking connection keeps --pipeline requests in
                           flight against one --record-size record (tiny patches,
                           stale puts, or both: --attack) while C victims do cas
                           puts on small keys of their own. Latency: the victims'
                           put round trip.

            Closed or open loop: by default each connection sends its next request
            when the last reply is in (closed loop). --rate R (cas, mixed, fanout,
            subflood, hog) runs open loop instead: each connection sends on a fixed
            timetable, R requests per second over all connections, and latency is
            timed from each request's intended send time, so a server stall shows
            in the percentiles (no coordinated omission, as in wrk2). The report
            gives the target and the rate achieved.

            Timed runs (cas, mixed, fanout, subflood, hog) last --warmup plus
            --duration seconds; nothing done in the warm-up counts in the figures,
            and server CPU is sampled over the measured window only.

            Progress goes to stderr once a second, the report to stdout as a
            table; --json FILE also writes it as JSON, --html FILE as a page with
            the latency percentile curves (inline SVG, no external files).
            Latencies come from HdrHistogram. With --server-pid, server CPU time
            per operation and RSS from /proc. The open-file limit is raised to the
            hard limit at start (one descriptor per connection). The exit status
            is 1 when any error or failed check occurred.
            """,
        subcommands: [
            CAS.self, Mixed.self, Counter.self, Merge.self, Fanout.self, PresenceFanout.self, Connections.self,
            Subflood.self, Hog.self,
        ]
    )
}

struct CommonOptions: ParsableArguments {
    @Option(
        help: """
            The server's WebSocket URL; repeat it for several servers over one store: connections \
            are spread over them in turn (fanout and presence: writers on the first, subscribers on \
            the others).
            """
    )
    var url: [String] = []
    @Option(help: "Number of connections (fanout: --writers and --subscribers instead).")
    var connections = 64
    @Option(help: "Distinct keys: spread over the connections (cas without --hot), or shared by all (mixed).")
    var keys = 10_000
    @Option(help: "Hot keys shared by all connections (0: none; counter uses at least 1).")
    var hot = 0
    @Option(help: "Approximate bytes of each written record's data.")
    var valueSize = 100
    @Option(help: "Measured seconds of a timed run.")
    var duration: Double = 10
    @Option(
        help: "Total operations instead of a duration (cas, mixed; fanout: writes); increments per client (counter)."
    )
    var ops: Int?
    @Option(help: "Seconds to run before measuring (cas, mixed, fanout): not counted in any figure.")
    var warmup: Double = 0
    @Flag(help: "Do not offer permessage-deflate.")
    var noCompression = false
    @Option(help: "Access token for a server started with --auth tokens, sent in every upgrade [VERSO_TOKEN].")
    var token: String?
    @Option(help: "The server's process id: report its CPU time per operation and its RSS (Linux /proc).")
    var serverPid: Int32?
    @Option(help: "Also write the report as JSON to this file.")
    var json: String?
    @Option(help: "Also write the report as a self-contained HTML page, with latency percentile curves, to this file.")
    var html: String?
    @Flag(help: "No progress line on stderr.")
    var quiet = false

    /// The URLs given, or the default server's.
    var urls: [String] { url.isEmpty ? [LoadOptions().url] : url }

    var loadOptions: LoadOptions {
        var options = LoadOptions()
        options.urls = urls
        options.connections = connections
        options.keys = keys
        options.hot = hot
        options.valueSize = valueSize
        options.duration = duration
        options.ops = ops
        options.warmup = warmup
        options.compression = !noCompression
        options.token = token ?? ProcessInfo.processInfo.environment["VERSO_TOKEN"].flatMap { $0.isEmpty ? nil : $0 }
        options.serverPID = serverPid
        options.progress = !quiet
        return options
    }

    func validate() throws {
        guard connections > 0 else { throw ValidationError("--connections must be at least 1") }
        guard duration > 0, warmup >= 0, duration + warmup <= 3600 else {
            throw ValidationError("--duration must be in (0, 3600] seconds, --warmup non-negative")
        }
        guard (ops ?? 1) > 0 else { throw ValidationError("--ops must be at least 1") }
        for url in urls where !(url.hasPrefix("ws://127.0.0.1:") || url.hasPrefix("ws://localhost:")) {
            throw ValidationError("--url \(url) must point at 127.0.0.1 or localhost")
        }
    }

    /// Raises the open-file limit, runs `scenario`, prints the report and writes its files;
    /// exits 1 when the run had errors or failed checks.
    func run(_ scenario: (LoadOptions) async -> LoadReport, rate: Double? = nil) async throws {
        OpenFileLimit.raiseToHardLimit()
        var options = loadOptions
        options.rate = rate
        let report = await scenario(options)
        print(report.table)
        if let json { try report.json().write(to: URL(fileURLWithPath: json)) }
        if let html { try Data(HTMLReport.render(report).utf8).write(to: URL(fileURLWithPath: html)) }
        if !report.succeeded { throw ExitCode(1) }
    }

    /// Refuses --warmup for a scenario that is not timed.
    func requireNoWarmup(_ scenario: String) throws {
        guard warmup == 0 else { throw ValidationError("\(scenario) is not timed: --warmup does not apply") }
    }
}

/// `--rate`, for the scenarios that can run open loop.
struct RateOptions: ParsableArguments {
    @Option(
        help:
            "Open loop: intended requests (fanout: writes) per second over all connections, each timed from its intended send time. Default: closed loop."
    )
    var rate: Double?

    func validate() throws {
        guard (rate ?? 1) > 0 else { throw ValidationError("--rate must be above 0") }
    }
}

struct CAS: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cas",
        abstract: "Compare-and-set puts, on own keys or on --hot shared keys; closed loop or --rate."
    )
    @OptionGroup var common: CommonOptions
    @OptionGroup var pacing: RateOptions
    @Flag(help: "Give every put an idempotency_key of its own (what keeping keys costs).")
    var idempotencyKeys = false

    func run() async throws {
        let idempotencyKeys = idempotencyKeys
        try await common.run(
            { options in
                var options = options
                options.idempotencyKeys = idempotencyKeys
                return await Scenarios.cas(options)
            },
            rate: pacing.rate
        )
    }
}

struct Mixed: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mixed",
        abstract: "Random gets and puts on shared keys, with subscriptions; latency per kind.",
        discussion: """
            Every connection subscribes to --subscribe random keys of the --keys
            shared keys, then sends random requests: a get with probability
            --read-percent, else a put whose base is the last version it saw for
            the key (from a snapshot, an ack or a conflict's reply). Reports get,
            put and update-delivery latency, conflicts and updates delivered;
            fails on any error reply, an ack that is not base + 1, or a key's
            versions delivered out of order.
            """
    )
    @OptionGroup var common: CommonOptions
    @OptionGroup var pacing: RateOptions
    @Option(help: "Percent of requests that are gets (the rest are puts).")
    var readPercent = 80
    @Option(help: "Keys each connection subscribes to (0: none; at most 1000).")
    var subscribe = 1

    func validate() throws {
        guard (0...100).contains(readPercent) else { throw ValidationError("--read-percent must be 0 to 100") }
        guard (0...1000).contains(subscribe) else { throw ValidationError("--subscribe must be 0 to 1000") }
        guard common.keys > 0 else { throw ValidationError("--keys must be at least 1") }
    }

    func run() async throws {
        try await common.run(
            { await Scenarios.mixed($0, readPercent: readPercent, subscriptions: subscribe) },
            rate: pacing.rate
        )
    }
}

struct Merge: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "merge",
        abstract: "Field-level merge: many clients editing fields of shared records from stale bases."
    )
    @OptionGroup var common: CommonOptions
    @OptionGroup var pacing: RateOptions
    @Option(help: "Shared records the clients edit.")
    var records = 100
    @Option(help: "Clients writing each field (1: every client its own field, so nothing may clash).")
    var share = 1

    func validate() throws {
        guard records > 0 else { throw ValidationError("--records must be at least 1") }
        guard share > 0, share <= common.connections else {
            throw ValidationError("--share must be 1 to --connections")
        }
    }

    func run() async throws {
        try await common.run({ await Scenarios.merge($0, records: records, share: share) }, rate: pacing.rate)
    }
}

struct Counter: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "counter",
        abstract: "Retried increments on hot keys, then a check that the count is exact."
    )
    @OptionGroup var common: CommonOptions

    func validate() throws { try common.requireNoWarmup("counter") }

    func run() async throws {
        try await common.run(Scenarios.counter)
    }
}

struct Fanout: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fanout",
        abstract: "Writers on a key each, subscribers per key; write-to-delivery latency and deliveries/s."
    )
    @OptionGroup var common: CommonOptions
    @OptionGroup var pacing: RateOptions
    @Option(help: "Writer connections, one key each.")
    var writers = 1
    @Option(help: "Subscriber connections per key.")
    var subscribers = 100

    func validate() throws {
        guard writers > 0, subscribers > 0, writers * subscribers <= 20_000 else {
            throw ValidationError(
                "--writers and --subscribers must be at least 1, with at most 20000 subscriptions in all"
            )
        }
    }

    func run() async throws {
        try await common.run(
            { await Scenarios.fanout($0, writers: writers, subscribers: subscribers) },
            rate: pacing.rate
        )
    }
}

struct PresenceFanout: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "presence",
        abstract:
            "Presenters change their presence on one record at 10 a second each; subscribers of it measure change-to-delivery latency."
    )
    @OptionGroup var common: CommonOptions
    @Option(help: "Connections changing their presence, 10 times a second each (the protocol's limit).")
    var presenters = 4
    @Option(help: "Connections subscribed to the record.")
    var subscribers = 1000

    func validate() throws {
        guard presenters > 0, subscribers > 0, presenters + subscribers <= 20_000 else {
            throw ValidationError("--presenters and --subscribers must be at least 1, with at most 20000 in all")
        }
    }

    func run() async throws {
        try await common.run { await Scenarios.presence($0, presenters: presenters, subscribers: subscribers) }
    }
}

struct Subflood: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "subflood",
        abstract: "Writes on own keys while idle connections hold many prefix subscriptions that match none of them."
    )
    @OptionGroup var common: CommonOptions
    @OptionGroup var pacing: RateOptions
    @Option(help: "Writer connections, one key each.")
    var writers = 4
    @Option(
        help:
            "Prefix subscriptions each idle connection (--connections) holds (0 to 1000, the server's limit per connection)."
    )
    var subscriptions = 1000

    func validate() throws {
        guard writers > 0 else { throw ValidationError("--writers must be at least 1") }
        guard (0...1000).contains(subscriptions) else { throw ValidationError("--subscriptions must be 0 to 1000") }
    }

    func run() async throws {
        try await common.run(
            { await Scenarios.subflood($0, writers: writers, subscriptions: subscriptions) },
            rate: pacing.rate
        )
    }
}

struct Connections: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "connections",
        abstract: "Idle subscribed connections: server RSS per connection, time to deliver one change to all."
    )
    @OptionGroup var common: CommonOptions

    func validate() throws { try common.requireNoWarmup("connections") }

    func run() async throws {
        try await common.run(Scenarios.connections)
    }
}

extension HogAttack: ExpressibleByArgument {}

struct Hog: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "hog",
        abstract: "One connection pipelining costly requests on a large record; the other clients' put latency.",
        discussion: """
            First writes one record of about --record-size bytes with many small
            members. Then one attacking connection sends --pipeline requests at
            once on it, reads their replies, and again, until the victims are
            done: tiny merge patches each on the version the one before makes
            (--attack patch: every one rewrites the whole record), tiny puts on a
            stale base (--attack stale: every reply carries the whole record), or
            both in turn (mixed, the default). Meanwhile --connections victims do
            cas puts on small keys of their own, closed loop or --rate; the
            latency figures are theirs. Fails on any error reply.
            """
    )
    @OptionGroup var common: CommonOptions
    @OptionGroup var pacing: RateOptions
    @Option(help: "Approximate bytes of the attacked record (under the 1 MiB message limit).")
    var recordSize = 900_000
    @Option(help: "Requests the attacker keeps in flight (the server takes at most 128 writes per connection at once).")
    var pipeline = 128
    @Option(help: "What the attacker sends: patch, stale or mixed.")
    var attack = HogAttack.mixed

    func validate() throws {
        guard (1_000...1_000_000).contains(recordSize) else {
            throw ValidationError("--record-size must be 1000 to 1000000 bytes")
        }
        guard (1...1024).contains(pipeline) else { throw ValidationError("--pipeline must be 1 to 1024") }
    }

    func run() async throws {
        try await common.run(
            { await Scenarios.hog($0, recordSize: recordSize, pipeline: pipeline, attack: attack) },
            rate: pacing.rate
        )
    }
}
