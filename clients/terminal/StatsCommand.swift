import ArgumentParser
import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import NIOSSL
import VersoClient

/// A Prometheus text exposition, read into samples by name and labels.
struct MetricSamples {
    /// `name` or `name{labels}` as written, to its value.
    private(set) var values: [String: Double] = [:]

    init(_ text: String) {
        for line in text.split(separator: "\n") where !line.hasPrefix("#") {
            guard let space = line.lastIndex(of: " "), let value = Double(line[line.index(after: space)...]) else {
                continue
            }
            values[String(line[..<space])] = value
        }
    }

    subscript(_ name: String) -> Double? { values[name] }

    /// Every sample of `name` with one label, by that label's value (`verso_writes_total{outcome="ack"}` → "ack").
    func labelled(_ name: String) -> [(label: String, value: Double)] {
        values.compactMap { key, value in
            guard key.hasPrefix(name + "{"), let open = key.firstIndex(of: "\""), let close = key.lastIndex(of: "\""),
                open < close
            else { return nil }
            return (String(key[key.index(after: open)..<close]), value)
        }.sorted { $0.label < $1.label }
    }
}

struct Stats: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print the server's main figures from its /metrics, as a table.",
        discussion: """
            Reads GET /metrics from the server of --url (http:// for ws://, https:// for wss://), which must run with \
            --metrics; on a server with --auth, with the token (VERSO_TOKEN), which must give read on every key. \
            With --watch it refreshes every --interval seconds and shows rates since the last refresh, until Ctrl-C.
            """
    )
    @OptionGroup var connection: ConnectionOptions
    @Flag(help: "Refresh until interrupted, with rates per second.") var watch = false
    @Option(help: "Seconds between refreshes with --watch.") var interval: Double = 2

    func validate() throws {
        if interval < 0.2 { throw ValidationError("--interval must be at least 0.2 seconds") }
    }

    func run() async throws {
        let configuration = connection.configuration
        let address = try Self.metricsURL(configuration.url)
        var tls: TLSConfiguration?
        do {
            tls = try ClientTLS.configuration(url: configuration.url, caFile: configuration.caFile)
        } catch {
            throw CommandFailure(error)
        }
        var clientConfiguration = HTTPClient.Configuration()
        if let tls { clientConfiguration.tlsConfiguration = tls }
        clientConfiguration.timeout = .init(connect: .seconds(5), read: .seconds(10))
        let client = HTTPClient(eventLoopGroupProvider: .singleton, configuration: clientConfiguration)
        do {
            try await show(address, token: configuration.token, with: client)
            try await client.shutdown()
        } catch {
            try? await client.shutdown()
            throw error
        }
    }

    /// Reads and prints the figures, once or, with `watch`, until interrupted.
    private func show(_ address: String, token: String?, with client: HTTPClient) async throws {
        var previous: (samples: MetricSamples, at: ContinuousClock.Instant)?
        repeat {
            var request = HTTPClientRequest(url: address)
            if let token { request.headers.add(name: "Authorization", value: "Bearer \(token)") }
            let samples: MetricSamples
            do {
                let response = try await client.execute(request, timeout: .seconds(10))
                let body = try await response.body.collect(upTo: 16 << 20)
                switch response.status.code {
                case 200: samples = MetricSamples(String(buffer: body))
                case 404:
                    throw CommandFailure(
                        ExitStatus.notFound,
                        "\(address) is not served: start the server with --metrics"
                    )
                case 401, 403:
                    throw CommandFailure(
                        ExitStatus.failure,
                        "\(address) answered \(response.status.code): give a token (VERSO_TOKEN) that may read every key"
                    )
                default:
                    throw CommandFailure(ExitStatus.failure, "\(address) answered \(response.status.code)")
                }
            } catch let failure as CommandFailure {
                throw failure
            } catch {
                throw CommandFailure(ExitStatus.cannotConnect, "cannot read \(address): \(error)")
            }
            let now = ContinuousClock.now
            let seconds = previous.map { (now - $0.at) / .seconds(1) }
            if watch { print("\u{1B}[H\u{1B}[2J", terminator: "") }
            print(Self.table(samples, previous: previous?.samples, seconds: seconds, address: address))
            previous = (samples, now)
            if watch { try await Task.sleep(for: .milliseconds(Int(interval * 1000))) }
        } while watch
    }

    /// The /metrics address of the server whose WebSocket is at `url`.
    static func metricsURL(_ url: String) throws -> String {
        guard var components = URLComponents(string: url), let scheme = components.scheme?.lowercased(),
            scheme == "ws" || scheme == "wss"
        else { throw CommandFailure(ExitStatus.usage, "--url \(url) is not a ws:// or wss:// URL") }
        components.scheme = scheme == "wss" ? "https" : "http"
        components.path = "/metrics"
        components.query = nil
        guard let address = components.string else {
            throw CommandFailure(ExitStatus.usage, "--url \(url) cannot be turned into a /metrics address")
        }
        return address
    }

    /// The figures as aligned lines; with `previous` and `seconds`, counters also as rates.
    static func table(_ samples: MetricSamples, previous: MetricSamples?, seconds: Double?, address: String) -> String {
        var rows: [(String, String)] = []
        func number(_ value: Double?) -> String {
            guard let value else { return "-" }
            return value == value.rounded() && abs(value) < 1e15 ? String(Int64(value)) : String(format: "%.2f", value)
        }
        func counter(_ name: String, _ label: String, key: String? = nil) {
            let sample = key ?? name
            var text = number(samples[sample])
            if let previous, let seconds, seconds > 0, let now = samples[sample], let before = previous[sample] {
                text += String(format: "  (%.1f/s)", (now - before) / seconds)
            }
            rows.append((label, text))
        }
        func bytes(_ value: Double?) -> String {
            guard let value else { return "-" }
            let units = ["B", "KiB", "MiB", "GiB", "TiB"]
            var scaled = value
            var unit = 0
            while scaled >= 1024, unit < units.count - 1 {
                scaled /= 1024
                unit += 1
            }
            return unit == 0 ? "\(Int64(value)) B" : String(format: "%.1f %@", scaled, units[unit])
        }
        rows.append(("connections open", number(samples["verso_connections_open"])))
        counter("verso_connections_total", "connections accepted")
        rows.append(("subscriptions", number(samples["verso_subscriptions"])))
        counter("verso_deliveries_total", "deliveries")
        for (outcome, _) in samples.labelled("verso_writes_total") {
            counter("verso_writes_total", "writes \(outcome)", key: "verso_writes_total{outcome=\"\(outcome)\"}")
        }
        for (type, value) in samples.labelled("verso_requests_total") where value > 0 {
            counter("verso_requests_total", "requests \(type)", key: "verso_requests_total{type=\"\(type)\"}")
        }
        if let count = samples["verso_commit_duration_seconds_count"], count > 0 {
            counter("verso_commit_duration_seconds_count", "commits")
            let duration = (samples["verso_commit_duration_seconds_sum"] ?? 0) / count * 1000
            rows.append(("commit duration (mean)", String(format: "%.2f ms", duration)))
            let size =
                (samples["verso_commit_batch_size_sum"] ?? 0) / max(1, samples["verso_commit_batch_size_count"] ?? 1)
            rows.append(("writes per commit (mean)", String(format: "%.1f", size)))
        }
        rows.append(("last seq", number(samples["verso_last_seq"])))
        rows.append(("queued for clients", bytes(samples["verso_queued_bytes"])))
        counter("verso_slow_client_closes_total", "slow clients closed")
        rows.append(("database", bytes(samples["verso_database_bytes"])))
        rows.append(("write-ahead log", bytes(samples["verso_wal_bytes"])))
        counter("process_cpu_seconds_total", "server CPU seconds")
        rows.append(("server memory", bytes(samples["process_resident_memory_bytes"])))
        let width = rows.map(\.0.count).max() ?? 0
        let lines = rows.map { $0.0.padding(toLength: width, withPad: " ", startingAt: 0) + "  " + $0.1 }
        return (["verso stats  \(address)"] + lines).joined(separator: "\n")
    }
}
