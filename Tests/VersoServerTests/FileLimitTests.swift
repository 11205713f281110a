import Foundation
import Testing
import VersoClient
import VersoTesting
import VersoWire

@Suite("File limit: a server out of file descriptors says so and backs off")
struct FileLimitTests {
    /// CPU seconds (user + system) the process has used, from /proc/PID/stat.
    static func cpuSeconds(pid: Int32) throws -> Double {
        let stat = try String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8)
        // The fields after the command name, which is in parentheses and may hold spaces.
        let fields = stat[stat.index(after: try #require(stat.lastIndex(of: ")")))...].split(separator: " ")
        let ticks = try #require(Double(fields[11])) + #require(Double(fields[12]))
        return ticks / Double(sysconf(Int32(_SC_CLK_TCK)))
    }

    @Test(
        "when accept fails for want of file descriptors the server logs it, does not spin, and serves again once sockets close"
    )
    func outOfFileDescriptors() async throws {
        guard FileManager.default.fileExists(atPath: "/proc/self/stat") else { return }
        let directory = TestServer.makeDataDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        // The server itself holds ~20 descriptors (SQLite, epoll, pipes): 48 leaves room for a few dozen sockets.
        let process = try await ServerProcess.start(
            dataDirectory: directory,
            arguments: ["--handshake-timeout", "60"],
            fileLimit: 48
        )
        defer { process.send(signal: SIGKILL) }
        var sockets: [RawSocket] = []
        // Open silent connections until the server stops accepting them; it holds each one
        // (the handshake timeout is long), so its descriptors run out.
        let deadline = ContinuousClock.now + .seconds(20)
        while !process.log.contains("open-file limit is reached"), sockets.count < 200, ContinuousClock.now < deadline {
            sockets.append(try await RawSocket.connect(port: process.port))
            try await Task.sleep(for: .milliseconds(10))
        }
        #expect(
            process.log.contains("open-file limit is reached"),
            "no log line after \(sockets.count) connections: \(process.log)"
        )
        // With the backlog holding connections it cannot accept, the server must wait, not spin.
        let before = try Self.cpuSeconds(pid: process.pid)
        try await Task.sleep(for: .seconds(2))
        let used = try Self.cpuSeconds(pid: process.pid) - before
        #expect(used < 0.5, "the server used \(used) s of CPU in 2 s while out of descriptors")
        #expect(
            process.log.components(separatedBy: "open-file limit is reached").count - 1 <= 2,
            "the log line is rate-limited"
        )
        // Freed descriptors let new clients in again.
        for socket in sockets { await socket.close() }
        let response = try await RawHTTP.exchange(
            port: process.port,
            request: RawHTTP.handshake(port: process.port, extensions: nil)
        )
        #expect(response.status == 101)
    }
}
