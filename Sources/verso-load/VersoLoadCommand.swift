import ArgumentParser
import Foundation
import VersoLoad

@main
struct VersoLoadCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "verso-load",
        abstract: "Drive a running Verso server with many real WebSocket connections and report throughput and latency.",
        discussion: """
        Scenarios:
          cas          C connections doing closed-loop compare-and-set puts
                       (base = last acked version) on keys of their own, or
                       with --hot N on N keys shared by all, taking the version
                       from each conflict's reply for the retry.
          counter      C clients x K increments (--ops K, default 100) on
                       --hot H keys (default 1): get, put with base, again on
                       conflict. Checks that the final count is exactly C x K
                       and every acknowledged (key, version) is unique.
          fanout       --writers W connections doing closed-loop puts on a key
                       each, --subscribers S connections subscribed to each
                       key: deliveries per second and the write-to-delivery
                       latency seen by every subscriber.
          connections  C idle connections subscribed to one shared key: server
                       RSS per connection (with --server-pid), then the time
                       one change takes to reach all C.

        Progress goes to stderr once a second, the report to stdout as a
        table (and as JSON with --json FILE). Latencies come from an
        HdrHistogram: put round trips (cas, counter: get + put) or
        write-to-delivery (fanout, connections). With --server-pid, server
        CPU time per operation and RSS from /proc. The exit status is 1 when
        any error or failed check occurred.
        """,
        subcommands: [CAS.self, Counter.self, Fanout.self, Connections.self]
    )
}

struct CommonOptions: ParsableArguments {
    @Option(help: "The server's WebSocket URL.")
    var url = "ws://127.0.0.1:7070/v1/ws"
    @Option(help: "Number of connections.")
    var connections = 64
    @Option(help: "Distinct keys spread over the connections (cas without --hot).")
    var keys = 10_000
    @Option(help: "Hot keys shared by all connections (0: none; counter uses at least 1).")
    var hot = 0
    @Option(help: "Approximate bytes of each written record's data.")
    var valueSize = 100
    @Option(help: "Measured seconds of a timed run.")
    var duration: Double = 10
    @Option(help: "Total operations instead of a duration (cas); increments per client (counter).")
    var ops: Int?
    @Option(help: "Seconds to run before measuring.")
    var warmup: Double = 0
    @Flag(help: "Do not offer permessage-deflate.")
    var noCompression = false
    @Option(help: "The server's process id: report its CPU time per operation and its RSS (Linux /proc).")
    var serverPid: Int32?
    @Option(help: "Also write the report as JSON to this file.")
    var json: String?
    @Flag(help: "No progress line on stderr.")
    var quiet = false

    var loadOptions: LoadOptions {
        var options = LoadOptions()
        options.url = url
        options.connections = connections
        options.keys = keys
        options.hot = hot
        options.valueSize = valueSize
        options.duration = duration
        options.ops = ops
        options.warmup = warmup
        options.compression = !noCompression
        options.serverPID = serverPid
        options.progress = !quiet
        return options
    }

    func validate() throws {
        guard connections > 0 else { throw ValidationError("--connections must be at least 1") }
        guard duration > 0, warmup >= 0, duration + warmup <= 3600 else { throw ValidationError("--duration must be in (0, 3600] seconds, --warmup non-negative") }
        guard (ops ?? 1) > 0 else { throw ValidationError("--ops must be at least 1") }
        guard url.hasPrefix("ws://127.0.0.1:") || url.hasPrefix("ws://localhost:") else {
            throw ValidationError("--url must point at 127.0.0.1 or localhost")
        }
    }

    func finish(_ report: LoadReport) throws {
        print(report.table)
        if let json { try report.json().write(to: URL(fileURLWithPath: json)) }
        if !report.succeeded { throw ExitCode(1) }
    }
}

struct CAS: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cas",
        abstract: "Closed-loop compare-and-set puts, on own keys or on --hot shared keys."
    )
    @OptionGroup var common: CommonOptions

    func run() async throws {
        try common.finish(await Scenarios.cas(common.loadOptions))
    }
}

struct Counter: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "counter",
        abstract: "Retried increments on hot keys, then a check that the count is exact."
    )
    @OptionGroup var common: CommonOptions

    func run() async throws {
        try common.finish(await Scenarios.counter(common.loadOptions))
    }
}

struct Fanout: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fanout",
        abstract: "Writers on a key each, subscribers per key; write-to-delivery latency and deliveries/s."
    )
    @OptionGroup var common: CommonOptions
    @Option(help: "Writer connections, one key each.")
    var writers = 1
    @Option(help: "Subscriber connections per key.")
    var subscribers = 100

    func validate() throws {
        guard writers > 0, subscribers > 0, writers * subscribers <= 20_000 else {
            throw ValidationError("--writers and --subscribers must be at least 1, with at most 20000 subscriptions in all")
        }
    }

    func run() async throws {
        try common.finish(await Scenarios.fanout(common.loadOptions, writers: writers, subscribers: subscribers))
    }
}

struct Connections: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "connections",
        abstract: "Idle subscribed connections: server RSS per connection, time to deliver one change to all."
    )
    @OptionGroup var common: CommonOptions

    func run() async throws {
        try common.finish(await Scenarios.connections(common.loadOptions))
    }
}
