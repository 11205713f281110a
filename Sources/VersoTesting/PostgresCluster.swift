import Foundation

/// A real PostgreSQL 15 server in a temporary folder, for tests of servers over `--store`:
/// `initdb` and `pg_ctl` from Debian's postgresql-15 (run as the `postgres` user when the tests
/// run as root), on a free port, with a database `verso`.
public final class PostgresCluster: Sendable {
    /// Where Debian installs PostgreSQL 15's programs.
    public static let binDirectory = "/usr/lib/postgresql/15/bin"

    /// Whether PostgreSQL 15 is installed here.
    public static var isAvailable: Bool {
        FileManager.default.isExecutableFile(atPath: "\(binDirectory)/initdb")
    }

    /// The temporary folder (data, socket and log).
    public let directory: String
    public let port: Int

    /// The URL servers are given with `--store`.
    public var url: String { "postgres://postgres@127.0.0.1:\(port)/verso" }

    private init(directory: String, port: Int) {
        self.directory = directory
        self.port = port
    }

    private static var asPostgres: [String] { getuid() == 0 ? ["runuser", "-u", "postgres", "--"] : [] }

    private static func run(_ arguments: [String], in directory: String) async throws {
        let output = "\(directory)/command.log"
        let command = asPostgres + arguments
        let status = await ChildProcess.run(command[0], Array(command.dropFirst()), output: output)
        guard status == 0 else {
            let log = (try? String(contentsOfFile: output, encoding: .utf8)) ?? ""
            throw TestFailure("\(arguments.joined(separator: " ")) failed (\(status)): \(log)")
        }
    }

    /// Creates and starts a new cluster with an empty `verso` database.
    public static func start() async throws -> PostgresCluster {
        let directory = NSTemporaryDirectory() + "verso-pg-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        if getuid() == 0 { _ = await ChildProcess.run("chown", ["postgres", directory], output: "/dev/null") }
        try await run(
            [
                "\(binDirectory)/initdb", "-D", "\(directory)/data", "--auth=trust", "-U", "postgres", "-E", "UTF8",
                "--no-locale",
            ],
            in: directory
        )
        var lastError: (any Error)?
        for _ in 0..<5 {
            let cluster = PostgresCluster(directory: directory, port: Int.random(in: 20_000...60_000))
            do {
                try await cluster.start()
                try await cluster.psql("CREATE DATABASE verso", database: "postgres")
                return cluster
            } catch {
                lastError = error
            }
        }
        throw lastError ?? TestFailure("PostgreSQL did not start")
    }

    /// Starts the (stopped) cluster again on its port.
    public func start() async throws {
        try await Self.run(
            [
                "\(Self.binDirectory)/pg_ctl", "-D", "\(directory)/data", "-l", "\(directory)/postgres.log", "-w",
                "-o", "-p \(port) -k \(directory) -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=100",
                "start",
            ],
            in: directory
        )
    }

    /// Stops the cluster: with `immediate`, as a crash would (recovery runs at the next start).
    public func stop(immediate: Bool = false) async throws {
        try await Self.run(
            [
                "\(Self.binDirectory)/pg_ctl", "-D", "\(directory)/data", "-m", immediate ? "immediate" : "fast", "-w",
                "stop",
            ],
            in: directory
        )
    }

    /// Runs `sql` with psql and returns its rows, one per line, columns separated by `|`.
    @discardableResult
    public func psql(_ sql: String, database: String = "verso") async throws -> String {
        let output = "\(directory)/psql-\(UUID().uuidString.prefix(8)).out"
        defer { try? FileManager.default.removeItem(atPath: output) }
        let status = await ChildProcess.run(
            "\(Self.binDirectory)/psql",
            [
                "-h", "127.0.0.1", "-p", "\(port)", "-U", "postgres", "-d", database, "-At", "-v", "ON_ERROR_STOP=1",
                "-c", sql,
            ],
            output: output
        )
        let text = (try? String(contentsOfFile: output, encoding: .utf8)) ?? ""
        guard status == 0 else { throw TestFailure("psql \(sql) failed (\(status)): \(text)") }
        return text.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// Stops the cluster and deletes its folder.
    public func remove() async {
        try? await stop(immediate: true)
        try? FileManager.default.removeItem(atPath: directory)
    }
}
