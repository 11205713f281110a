import Foundation
import Logging
import Synchronization
import VersoServer

/// A real Verso server on an ephemeral port over a SQLite store in a fresh temporary folder.
public struct TestServer: Sendable {
    /// The server.
    public let server: VersoServer
    /// The port it listens on.
    public let port: Int
    /// The folder holding its database.
    public let dataDirectory: String

    /// `ws://127.0.0.1:PORT/v1/ws`.
    public var url: String { "ws://127.0.0.1:\(port)/v1/ws" }

    /// Makes a new empty temporary folder for a store.
    public static func makeDataDirectory() -> String {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("verso-test-\(UUID().uuidString)").path
        try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    /// Starts a server, runs `body` with it, then shuts it down gracefully and waits for it to stop.
    ///
    /// - Parameters:
    ///   - dataDirectory: the store's folder; a fresh temporary one when nil (removed afterwards).
    ///   - configure: adjusts the configuration (port and folder are set already).
    ///   - logger: the server's logger; by default one at `VERSO_TEST_LOG_LEVEL` (critical).
    public static func with<T: Sendable>(
        dataDirectory: String? = nil,
        configure: (inout ServerConfiguration) -> Void = { _ in },
        logger: Logger? = nil,
        _ body: (TestServer) async throws -> T
    ) async throws -> T {
        let directory = dataDirectory ?? makeDataDirectory()
        defer { if dataDirectory == nil { try? FileManager.default.removeItem(atPath: directory) } }
        var configuration = ServerConfiguration(port: 0, dataDirectory: directory)
        configure(&configuration)
        let logger =
            logger
            ?? {
                var logger = Logger(label: "verso.test")
                logger.logLevel =
                    ProcessInfo.processInfo.environment["VERSO_TEST_LOG_LEVEL"].flatMap(Logger.Level.init(rawValue:))
                    ?? .critical
                return logger
            }()
        let (ports, portContinuation) = AsyncStream<Int>.makeStream()
        let server = try await VersoServer(configuration: configuration, logger: logger, handleSignals: false) { port in
            portContinuation.yield(port)
            portContinuation.finish()
        }
        return try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                defer { portContinuation.finish() }
                try await server.run()
            }
            var iterator = ports.makeAsyncIterator()
            guard let port = await iterator.next() else {
                try await group.waitForAll()
                throw TestFailure("the server stopped before it listened")
            }
            let testServer = TestServer(server: server, port: port, dataDirectory: directory)
            do {
                let result = try await body(testServer)
                await server.triggerShutdown()
                try await group.waitForAll()
                return result
            } catch {
                await server.triggerShutdown()
                try? await group.waitForAll()
                throw error
            }
        }
    }
}

/// A failed expectation inside test support code.
public struct TestFailure: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

extension TestServer {
    /// A TCP port on 127.0.0.1 that is free now, outside the range the kernel hands out for
    /// port 0, so a test can stop a server and start another on the same port without a
    /// server of a concurrent test taking it in between.
    public static func reservablePort() throws -> Int {
        for _ in 0..<100 {
            let port = Int.random(in: 20_000..<30_000)
            let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            guard descriptor >= 0 else { continue }
            defer { close(descriptor) }
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_port = in_port_t(UInt16(port).bigEndian)
            address.sin_addr.s_addr = inet_addr("127.0.0.1")
            let bound = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    bind(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
                }
            }
            if bound == 0 { return port }
        }
        throw TestFailure("no free port found in 20000..<30000")
    }
}
