import Foundation
import Testing
import VersoClient
import VersoCore
import VersoTesting
import VersoWire

/// A start of the real verso-server that must fail: its flags, extra environment, and what
/// standard error must say.
struct BadStart: Sendable, CustomTestStringConvertible {
    var arguments: [String]
    var environment: [String: String] = [:]
    var message: String
    /// 64 (EX_USAGE) for a flag refused before anything starts.
    var status: Int32 = 64

    var testDescription: String { (environment.map { "\($0)=\($1)" } + arguments).joined(separator: " ") }
}

/// Runs the real verso-server with `arguments` (and `--port 0 --data DIRECTORY` unless the
/// arguments set them) until it exits, at most 20 s; returns its status and standard error.
private func runToExit(_ start: BadStart, dataDirectory: String) async throws -> (status: Int32, stderr: String) {
    let path = ServerProcess.binaryPath
    guard FileManager.default.isExecutableFile(atPath: path) else {
        throw TestFailure("no verso-server at \(path): build it first (swift build), or set VERSO_SERVER_BINARY")
    }
    var arguments = start.arguments
    // Never the default port or folder: a start that wrongly succeeds must not take them.
    if !arguments.contains("--port"), start.environment["VERSO_PORT"] == nil { arguments += ["--port", "0"] }
    if !arguments.contains("--data"), start.environment["VERSO_DATA"] == nil { arguments += ["--data", dataDirectory] }
    var environment = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("VERSO_") }
    environment.merge(start.environment) { $1 }
    let errors = Locked<[UInt8]>([])
    let (read, onRead) = AsyncStream<Never>.makeStream()
    let child = try ChildProcess.start(path, arguments, environment: environment) { data in
        if data.isEmpty { onRead.finish() } else { errors.withLock { $0 += data } }
    }
    // Waits for the exit; stops a server that wrongly started after 20 s.
    let ending = await withTaskGroup(of: ChildProcess.Ending?.self) { group in
        group.addTask {
            guard (try? await Task.sleep(for: .seconds(20))) != nil else { return nil }
            kill(child.pid, SIGTERM)
            return nil
        }
        let ending = await child.wait()
        group.cancelAll()
        return ending
    }
    for await _ in read {}
    let status: Int32 =
        switch ending {
        case .exited(let status), .signaled(let status): status
        }
    return (status, String(decoding: errors.withLock { $0 }, as: UTF8.self))
}

/// Starts the real verso-server with `arguments` (plus `--port 0` and a fresh data folder) and
/// `environment`, runs `body` with it, then stops it with SIGTERM and expects exit status 0.
private func withServerProcess(
    arguments: [String],
    environment: [String: String] = [:],
    _ body: (ServerProcess) async throws -> Void
) async throws {
    let directory = TestServer.makeDataDirectory()
    defer { try? FileManager.default.removeItem(atPath: directory) }
    let process = try await ServerProcess.start(
        dataDirectory: directory,
        arguments: arguments,
        environment: environment
    )
    do {
        try await body(process)
    } catch {
        process.send(signal: SIGKILL)
        _ = await process.waitForExit()
        throw error
    }
    process.send(signal: SIGTERM)
    #expect(await process.waitForExit() == 0)
}

@Suite("verso-server start-up: every flag is checked before anything starts; the data folder is private")
struct StartupTests {
    static let badStarts: [BadStart] = [
        // 4 GiB used to be accepted and crash the server at the first connection.
        BadStart(
            arguments: ["--max-message-bytes", "4294967296"],
            message: "--max-message-bytes 4294967296 is out of range: give 1024...67108864"
        ),
        BadStart(
            arguments: ["--max-message-bytes", "67108865"],
            message: "--max-message-bytes 67108865 is out of range"
        ),
        BadStart(arguments: ["--max-message-bytes", "1023"], message: "--max-message-bytes 1023 is out of range"),
        BadStart(
            arguments: [],
            environment: ["VERSO_MAX_MESSAGE_BYTES": "8589934592"],
            message: "--max-message-bytes 8589934592 is out of range"
        ),
        BadStart(arguments: ["--port", "65536"], message: "--port 65536 is not a TCP port"),
        BadStart(
            arguments: [],
            environment: ["VERSO_PORT": "seventy"],
            message: "VERSO_PORT=seventy is not a valid value"
        ),
        BadStart(arguments: ["--host", ""], message: "--host \"\" is not an address"),
        BadStart(arguments: ["--data", ""], message: "--data is empty"),
        BadStart(arguments: ["--history", "0"], message: "--history 0 is too small"),
        BadStart(arguments: ["--durability", "sometimes"], message: "durability \"sometimes\" is not full or normal"),
        BadStart(arguments: ["--log-level", "loud"], message: "log level \"loud\" is not one of"),
        BadStart(arguments: ["--auth", "tokens"], message: "--auth tokens needs --tokens-file FILE"),
        BadStart(arguments: ["--auth", "magic"], message: "--auth \"magic\" is not none, tokens or jwt"),
        BadStart(arguments: ["--auth", "jwt"], message: "--auth jwt needs exactly one of --jwt-secret-file"),
        BadStart(
            arguments: ["--auth", "jwt", "--jwt-secret-file", "/nonexistent/secret"],
            message: "--jwt-secret-file /nonexistent/secret cannot be read"
        ),
        BadStart(
            arguments: ["--jwks-file", "/tmp/keys.json"],
            message: "--jwks-file is given but --auth is none: add --auth jwt"
        ),
        BadStart(arguments: ["--tls-cert-file", "/tmp/cert.pem"], message: "--tls-cert-file needs --tls-key-file"),
        BadStart(
            arguments: ["--tls-cert-file", "/nonexistent/c.pem", "--tls-key-file", "/nonexistent/k.pem"],
            message: "--tls-cert-file /nonexistent/c.pem cannot be read"
        ),
        BadStart(
            arguments: ["--tokens-file", "/tmp/tokens.json"],
            message: "--tokens-file is given but --auth is none"
        ),
        BadStart(
            arguments: ["--auth", "tokens", "--tokens-file", "/nonexistent/verso-tokens.json"],
            message: "--tokens-file /nonexistent/verso-tokens.json cannot be read"
        ),
        // Protected mode: no authentication and no TLS yet, so only loopback unless --insecure.
        BadStart(arguments: ["--host", "0.0.0.0"], message: "--host 0.0.0.0 is not a loopback address"),
        BadStart(
            arguments: ["--host", "::"],
            message: "or give --insecure (VERSO_INSECURE=1) to serve :: unprotected anyway"
        ),
        BadStart(arguments: ["--host", "192.168.1.5"], message: "--host 192.168.1.5 is not a loopback address"),
        BadStart(
            arguments: ["--host", "verso.example.com"],
            message: "--host verso.example.com is not a loopback address"
        ),
        BadStart(
            arguments: [],
            environment: ["VERSO_HOST": "0.0.0.0"],
            message: "--host 0.0.0.0 is not a loopback address"
        ),
        BadStart(
            arguments: ["--host", "0.0.0.0"],
            environment: ["VERSO_INSECURE": "0"],
            message: "--host 0.0.0.0 is not a loopback address"
        ),
        // Origins: each --allow-origin is scheme://host[:port]; '*' only with --allow-any-origin.
        BadStart(
            arguments: ["--allow-origin", "*"],
            message: "--allow-origin '*' would let every web page the user opens read, overwrite and delete the records"
        ),
        BadStart(
            arguments: [],
            environment: ["VERSO_ALLOW_ORIGIN": "http://localhost:8000,*"],
            message: "give --allow-any-origin (VERSO_ALLOW_ANY_ORIGIN=1)"
        ),
        BadStart(
            arguments: ["--allow-origin", "http://localhost:8000/app"],
            message: "--allow-origin http://localhost:8000/app is not an origin: it has a path"
        ),
        BadStart(
            arguments: ["--allow-origin", "localhost:8000"],
            message: "--allow-origin localhost:8000 is not an origin: it has no scheme"
        ),
        BadStart(
            arguments: [],
            environment: ["VERSO_ALLOW_ORIGIN": "http://a.example, http://b.example:99999"],
            message: "--allow-origin http://b.example:99999 is not an origin: its port"
        ),
    ]

    @Test(
        "a bad flag or variable stops verso-server at once with status 64 and a message naming it",
        arguments: badStarts
    )
    func badFlag(_ start: BadStart) async throws {
        let directory = TestServer.makeDataDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let (status, stderr) = try await runToExit(start, dataDirectory: directory)
        #expect(status == start.status, "\(stderr)")
        #expect(stderr.contains(start.message), "\(stderr)")
    }

    @Test("a --data that is a file, not a folder, stops verso-server with a message saying so")
    func dataIsAFile() async throws {
        let directory = TestServer.makeDataDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let file = (directory as NSString).appendingPathComponent("not-a-folder")
        #expect(FileManager.default.createFile(atPath: file, contents: Data("x".utf8)))
        let (status, stderr) = try await runToExit(
            BadStart(arguments: ["--data", file], message: ""),
            dataDirectory: directory
        )
        #expect(status != 0, "\(stderr)")
        #expect(stderr.contains("\(file) is not a folder"), "\(stderr)")
    }

    @Test("--max-message-bytes at its largest (64 MiB) serves requests")
    func largestMessageLimit() async throws {
        try await withServerProcess(arguments: ["--max-message-bytes", "\(64 << 20)"]) { process in
            try await TestClient.with(url: process.url) { client async throws in
                let welcome = try await client.request(#"{"type":"hello"}"#)
                #expect(welcome.type == "welcome")
                let version = try await put(client, "limit/a", base: 0)
                #expect(version == 1)
            }
        }
    }

    @Test(
        "the data folder is created 0700 and the database, -wal and -shm files 0600; an existing folder keeps its mode"
    )
    func privateFiles() async throws {
        let root = TestServer.makeDataDirectory()
        defer { try? FileManager.default.removeItem(atPath: root) }
        func mode(_ path: String) throws -> Int {
            let attributes = try FileManager.default.attributesOfItem(atPath: path)
            return (attributes[.posixPermissions] as? NSNumber)?.intValue ?? -1
        }
        let fresh = (root as NSString).appendingPathComponent("new/data")
        let existing = (root as NSString).appendingPathComponent("existing")
        try FileManager.default.createDirectory(
            atPath: existing,
            withIntermediateDirectories: true,
            attributes: [.posixPermissions: 0o750]
        )
        for directory in [fresh, existing] {
            try await TestServer.with(dataDirectory: directory) { server in
                _ = try await TestClient.with(url: server.url) { client in
                    try await put(client, "mode/a", base: 0)
                }
                for file in ["verso.sqlite", "verso.sqlite-wal", "verso.sqlite-shm"] {
                    let path = (directory as NSString).appendingPathComponent(file)
                    let fileMode = try mode(path)
                    #expect(fileMode == 0o600, "\(path): \(String(fileMode, radix: 8))")
                }
            }
        }
        #expect(try mode(fresh) == 0o700)
        #expect(try mode(existing) == 0o750)
    }

    @Test(
        "--insecure (or VERSO_INSECURE=1) serves a non-loopback --host, with a warning at start",
        arguments: [
            (["--host", "0.0.0.0", "--insecure"], [String: String]()),
            (["--host", "0.0.0.0"], ["VERSO_INSECURE": "1"]),
        ]
    )
    func insecureHost(arguments: [String], environment: [String: String]) async throws {
        try await withServerProcess(arguments: arguments, environment: environment) { process in
            // Logged before "listening", which start() waits for.
            let warning = process.log.split(separator: "\n").first {
                $0.contains("--insecure: listening on a non-loopback address with no authentication and no TLS")
            }
            #expect(warning?.contains(" warning ") == true, "\(process.log)")
            #expect(warning?.contains("verso.host=0.0.0.0") == true, "\(process.log)")
            // 0.0.0.0 includes loopback.
            let version = try await TestClient.with(url: process.url) { client async throws in
                try await put(client, uniqueKey("insecure"), base: 0)
            }
            #expect(version == 1)
        }
    }

    @Test("--insecure on a loopback host changes nothing: no warning")
    func loopbackHasNoWarning() async throws {
        try await withServerProcess(arguments: ["--insecure"]) { process in
            #expect(!process.log.contains("--insecure:"), "\(process.log)")
        }
    }

    @Test(
        "--allow-origin (repeated) and VERSO_ALLOW_ORIGIN (comma separated) let those origins' pages connect, and only them",
        arguments: [
            (["--allow-origin", "http://a.example", "--allow-origin", "http://b.example:8080"], [String: String]()),
            ([], ["VERSO_ALLOW_ORIGIN": "http://a.example, http://b.example:8080"]),
        ]
    )
    func allowOriginFlags(arguments: [String], environment: [String: String]) async throws {
        try await withServerProcess(arguments: arguments, environment: environment) { process in
            for (origin, status) in [
                ("http://a.example", 101), ("http://b.example:8080", 101), ("http://b.example", 403),
                ("http://c.example", 403),
            ] {
                let response = try await RawHTTP.exchange(
                    port: process.port,
                    request: browserHandshake(port: process.port, origin: origin)
                )
                #expect(response.status == status, "\(origin): \(response.status) \(response.body)")
            }
        }
    }
}
