import Foundation
import Testing
import VersoCore
import VersoTesting

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
    let process = Process()
    process.executableURL = URL(fileURLWithPath: path)
    var arguments = start.arguments
    // Never the default port or folder: a start that wrongly succeeds must not take them.
    if !arguments.contains("--port"), start.environment["VERSO_PORT"] == nil { arguments += ["--port", "0"] }
    if !arguments.contains("--data"), start.environment["VERSO_DATA"] == nil { arguments += ["--data", dataDirectory] }
    process.arguments = arguments
    var environment = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("VERSO_") }
    environment.merge(start.environment) { $1 }
    process.environment = environment
    let errors = Pipe()
    process.standardError = errors
    process.standardOutput = FileHandle.nullDevice
    try process.run()
    // Waits for the exit; stops a server that wrongly started after 20 s.
    await withTaskGroup(of: Void.self) { group in
        group.addTask {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                DispatchQueue.global().async {
                    process.waitUntilExit()
                    continuation.resume()
                }
            }
        }
        group.addTask {
            guard (try? await Task.sleep(for: .seconds(20))) != nil else { return }
            process.terminate()
        }
        await group.next()
        group.cancelAll()
    }
    let stderr = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    return (process.terminationStatus, stderr)
}

@Suite("verso-server start-up: every flag is checked before anything starts; the data folder is private")
struct StartupTests {
    static let badStarts: [BadStart] = [
        // 4 GiB used to be accepted and crash the server at the first connection.
        BadStart(arguments: ["--max-message-bytes", "4294967296"], message: "--max-message-bytes 4294967296 is out of range: give 1024...67108864"),
        BadStart(arguments: ["--max-message-bytes", "67108865"], message: "--max-message-bytes 67108865 is out of range"),
        BadStart(arguments: ["--max-message-bytes", "1023"], message: "--max-message-bytes 1023 is out of range"),
        BadStart(arguments: [], environment: ["VERSO_MAX_MESSAGE_BYTES": "8589934592"], message: "--max-message-bytes 8589934592 is out of range"),
        BadStart(arguments: ["--port", "65536"], message: "--port 65536 is not a TCP port"),
        BadStart(arguments: [], environment: ["VERSO_PORT": "seventy"], message: "VERSO_PORT=seventy is not a valid value"),
        BadStart(arguments: ["--host", ""], message: "--host \"\" is not an address"),
        BadStart(arguments: ["--data", ""], message: "--data is empty"),
        BadStart(arguments: ["--history", "0"], message: "--history 0 is too small"),
        BadStart(arguments: ["--durability", "sometimes"], message: "durability \"sometimes\" is not full or normal"),
        BadStart(arguments: ["--log-level", "loud"], message: "log level \"loud\" is not one of"),
        BadStart(arguments: ["--auth", "tokens"], message: "--auth tokens needs --tokens-file FILE"),
        BadStart(arguments: ["--auth", "magic"], message: "--auth \"magic\" is not none or tokens"),
        BadStart(arguments: ["--tokens-file", "/tmp/tokens.json"], message: "--tokens-file is given but --auth is none"),
        BadStart(arguments: ["--auth", "tokens", "--tokens-file", "/nonexistent/verso-tokens.json"], message: "--tokens-file /nonexistent/verso-tokens.json cannot be read"),
    ]

    @Test("a bad flag or variable stops verso-server at once with status 64 and a message naming it", arguments: badStarts)
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
        let (status, stderr) = try await runToExit(BadStart(arguments: ["--data", file], message: ""), dataDirectory: directory)
        #expect(status != 0, "\(stderr)")
        #expect(stderr.contains("\(file) is not a folder"), "\(stderr)")
    }

    @Test("--max-message-bytes at its largest (64 MiB) serves requests")
    func largestMessageLimit() async throws {
        let directory = TestServer.makeDataDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let process = try await ServerProcess.start(dataDirectory: directory, arguments: ["--max-message-bytes", "\(64 << 20)"])
        try await TestClient.with(url: process.url) { client async throws in
            let welcome = try await client.request(#"{"type":"hello"}"#)
            #expect(welcome.type == "welcome")
            let version = try await put(client, "limit/a", base: 0)
            #expect(version == 1)
        }
        process.send(signal: SIGTERM)
        #expect(await process.waitForExit() == 0)
    }

    @Test("the data folder is created 0700 and the database, -wal and -shm files 0600; an existing folder keeps its mode")
    func privateFiles() async throws {
        let root = TestServer.makeDataDirectory()
        defer { try? FileManager.default.removeItem(atPath: root) }
        func mode(_ path: String) throws -> Int {
            let attributes = try FileManager.default.attributesOfItem(atPath: path)
            return (attributes[.posixPermissions] as? NSNumber)?.intValue ?? -1
        }
        let fresh = (root as NSString).appendingPathComponent("new/data")
        let existing = (root as NSString).appendingPathComponent("existing")
        try FileManager.default.createDirectory(atPath: existing, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o750])
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
}
