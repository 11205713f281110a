import Foundation
import Synchronization

/// A real `verso-server` process, for tests that kill or signal it.
public final class ServerProcess: Sendable {
    /// The port it listens on.
    public let port: Int
    private let child: ChildProcess.Running
    private let stderrLog: Locked<String>

    /// `ws://127.0.0.1:PORT/v1/ws`.
    public var url: String { "ws://127.0.0.1:\(port)/v1/ws" }

    private init(port: Int, child: ChildProcess.Running, log: Locked<String>) {
        self.port = port
        self.child = child
        self.stderrLog = log
    }

    /// The built `verso-server`: `VERSO_SERVER_BINARY`, or the one beside the test bundle.
    public static var binaryPath: String {
        ProcessInfo.processInfo.environment["VERSO_SERVER_BINARY"] ?? builtProductPath("verso-server")
    }

    /// The path of an executable this package builds, beside the test bundle.
    public static func builtProductPath(_ name: String) -> String {
        let testBinary = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
        var directory = testBinary.deletingLastPathComponent()
        // On macOS the test bundle is a directory: Foo.xctest/Contents/MacOS/Foo.
        while directory.pathExtension == "xctest" || directory.lastPathComponent == "MacOS"
            || directory.lastPathComponent == "Contents"
        {
            directory = directory.deletingLastPathComponent()
        }
        return directory.appendingPathComponent(name).path
    }

    /// Starts `verso-server --port 0 --data DIRECTORY` and waits until it logs where it listens.
    ///
    /// - Parameter fileLimit: when given, the process runs with this open-file limit, soft and
    ///   hard (so the server cannot raise it).
    /// - Parameter environment: variables added to the test's environment (whose `VERSO_*`
    ///   variables are left out when this is not empty, so they cannot change the start).
    public static func start(
        dataDirectory: String,
        arguments: [String] = [],
        environment: [String: String] = [:],
        fileLimit: Int? = nil
    ) async throws -> ServerProcess {
        let path = binaryPath
        guard FileManager.default.isExecutableFile(atPath: path) else {
            throw TestFailure("no verso-server at \(path): build it first (swift build), or set VERSO_SERVER_BINARY")
        }
        let serverArguments = ["--port", "0", "--data", dataDirectory, "--log-level", "info"] + arguments
        let (executable, allArguments) =
            if let fileLimit {
                ("/bin/sh", ["-c", "ulimit -n \(fileLimit) && exec \"$0\" \"$@\"", path] + serverArguments)
            } else {
                (path, serverArguments)
            }
        let childEnvironment: [String: String]? =
            environment.isEmpty
            ? nil
            : ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("VERSO_") }.merging(environment) { $1 }
        let log = Locked("")
        let (ports, continuation) = AsyncStream<Int>.makeStream()
        let child = try ChildProcess.start(executable, allArguments, environment: childEnvironment) { data in
            if data.isEmpty {
                continuation.finish()
                return
            }
            let text = log.withLock { log -> String in
                log += String(decoding: data, as: UTF8.self)
                return log
            }
            // The address it listens on, as logged: 127.0.0.1 unless the arguments gave another host.
            if let range = text.range(
                of: #"ws://(\[[0-9a-fA-F:.]+\]|[^\s/:\[]+):(\d+)/v1/ws"#,
                options: .regularExpression
            ) {
                let port = text[range].split(separator: ":").last!.split(separator: "/").first!
                if let port = Int(port) {
                    continuation.yield(port)
                    continuation.finish()
                }
            }
        }
        var iterator = ports.makeAsyncIterator()
        guard let port = await iterator.next() else {
            _ = await child.wait()
            throw TestFailure("verso-server exited before listening: \(log.withLock { $0 })")
        }
        return ServerProcess(port: port, child: child, log: log)
    }

    /// The process id.
    public var pid: Int32 { child.pid }

    /// What the server wrote to standard error so far.
    public var log: String { stderrLog.withLock { $0 } }

    /// Sends `signal` (SIGKILL, SIGTERM, SIGINT) to the process.
    public func send(signal: Int32) {
        kill(child.pid, signal)
    }

    /// Waits for the process to end; returns its exit status, or the signal that ended it.
    public func waitForExit() async -> Int32 {
        switch await child.wait() {
        case .exited(let status), .signaled(let status): status
        }
    }

    /// Whether the process ended by a signal rather than by exiting.
    public var wasKilledBySignal: Bool {
        if case .signaled? = child.ending { true } else { false }
    }
}
