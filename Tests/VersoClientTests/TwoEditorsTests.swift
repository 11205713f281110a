import Foundation
import Testing
import VersoClient
import VersoCore
import VersoTesting
import VersoWire

/// A private tmux server for one test: panes running real `verso edit` processes.
private struct Tmux {
    let socket = "verso-test-\(UUID().uuidString.prefix(8))"

    /// Runs a tmux command and returns its output (standard output and error together).
    @discardableResult
    func run(_ arguments: [String]) async throws -> String {
        let outputPath = FileManager.default.temporaryDirectory.appendingPathComponent(
            "\(socket)-\(UUID().uuidString).out"
        ).path
        defer { try? FileManager.default.removeItem(atPath: outputPath) }
        let status = await ChildProcess.run("tmux", ["-L", socket] + arguments, output: outputPath)
        let text = String(decoding: FileManager.default.contents(atPath: outputPath) ?? Data(), as: UTF8.self)
        guard status == 0 else {
            throw TestFailure("tmux \(arguments.joined(separator: " ")) failed (\(status)): \(text)")
        }
        return text
    }

    func start(_ name: String, command: String) async throws {
        try await run(["new-session", "-d", "-s", name, "-x", "80", "-y", "24", command])
    }

    func keys(_ name: String, _ keys: String...) async throws {
        try await run(["send-keys", "-t", name] + keys)
    }

    func screen(_ name: String) async throws -> String {
        try await run(["capture-pane", "-p", "-t", name])
    }

    /// Waits until the pane shows `text`; returns how long that took.
    @discardableResult
    func waitFor(_ name: String, _ text: String, within limit: Duration = .seconds(10)) async throws -> Duration {
        let start = ContinuousClock.now
        while ContinuousClock.now - start < limit {
            if try await screen(name).contains(text) { return ContinuousClock.now - start }
            try await Task.sleep(for: .milliseconds(20))
        }
        throw TestFailure("pane \(name) did not show \"\(text)\" within \(limit); it shows:\n\(try await screen(name))")
    }

    func kill() async {
        _ = try? await run(["kill-server"])
        let directory = ProcessInfo.processInfo.environment["TMUX_TMPDIR"] ?? "/tmp"
        try? FileManager.default.removeItem(atPath: "\(directory)/tmux-\(getuid())/\(socket)")
    }
}

@Suite("Two live editors in tmux against one server")
struct TwoEditorsTests {
    @Test(
        "each sees the other's edit within a second; edits of different fields from one version both save, the second merged, with no conflict view; a clash on one field shows only that field, rebases, and the record holds every change; the terminal is restored"
    )
    func twoEditors() async throws {
        let tmuxPresent =
            FileManager.default.isExecutableFile(atPath: "/usr/bin/tmux")
            || FileManager.default.isExecutableFile(atPath: "/usr/local/bin/tmux")
        try #require(tmuxPresent, "tmux is needed for this test (apt-get install tmux)")
        let verso = ServerProcess.builtProductPath("verso")
        try #require(FileManager.default.isExecutableFile(atPath: verso), "build the verso client first (swift build)")
        let directory = TestServer.makeDataDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let server = try await ServerProcess.start(dataDirectory: directory)
        defer { server.send(signal: SIGTERM) }
        try await TestClient.with(url: server.url) { client in
            let reply = try await client.request(
                #"{"type":"put","key":"notes/1","base":0,"data":{"body":"draft","title":"Plan"}}"#
            )
            #expect(reply["type"] == .string("ack"))
        }
        let tmux = Tmux()
        // Each pane runs the editor, then reports whether the terminal got its echo mode back.
        func command(_ name: String) -> String {
            "VERSO_NAME=\(name) VERSO_URL=\(server.url) \(verso) edit notes/; stty -a | grep -oE '(^| )-?echo( |$)' | head -1 | sed 's/^/ECHO:/'; echo EXITED; sleep 30"
        }
        try await tmux.start("alice", command: command("alice"))
        try await tmux.start("bob", command: command("bob"))
        try await tmux.waitFor("alice", "Plan")
        try await tmux.waitFor("bob", "Plan")

        // Each sees the other on the record, on the field under their cursor, and live as it moves.
        try await tmux.waitFor("alice", "bob (body)")
        try await tmux.waitFor("bob", "alice (body)")
        try await tmux.keys("bob", "Right")
        try await tmux.waitFor("alice", "bob (title)", within: .seconds(5))
        try await tmux.keys("bob", "Left")
        try await tmux.waitFor("alice", "bob (body)", within: .seconds(5))

        // Both start editing version 1: Alice the body, Bob the title.
        try await tmux.keys("alice", "Enter")
        try await tmux.keys("bob", "Right", "Enter")
        try await tmux.waitFor("alice", "editing notes/1.body")
        try await tmux.waitFor("bob", "editing notes/1.title")
        try await tmux.waitFor("alice", "bob (editing title)", within: .seconds(5))
        try await tmux.keys("alice", "BSpace", "BSpace", "BSpace", "BSpace", "BSpace", "alice-body", "Enter")
        try await tmux.waitFor("alice", "saved notes/1")
        let bobSaw = try await tmux.waitFor("bob", "alice-body", within: .seconds(1))
        #expect(bobSaw < .seconds(1))
        try await tmux.waitFor("bob", "your save of title will be merged")

        // Bob's save is on a stale version, but of another field: it is merged, with no conflict view.
        try await tmux.keys("bob", " by bob", "Enter")
        try await tmux.waitFor("bob", "saved notes/1 (version 3), merged with someone else's change")
        #expect(!(try await tmux.screen("bob")).contains("Conflict"))
        let aliceSaw = try await tmux.waitFor("alice", "Plan by bob", within: .seconds(1))
        #expect(aliceSaw < .seconds(1))
        try await TestClient.with(url: server.url) { client in
            let record = try await client.request(#"{"type":"get","key":"notes/1"}"#)
            #expect(record["version"] == .integer(3))
            #expect(record["data"] == .object(["body": .string("alice-body"), "title": .string("Plan by bob")]))
        }

        // Now both edit the title of version 3: Alice saves first, and Bob's save clashes. His
        // conflict view shows the title alone, his value beside hers; he rebases.
        try await tmux.keys("alice", "Right", "Enter")
        try await tmux.keys("bob", "Enter")
        try await tmux.waitFor("alice", "editing notes/1.title")
        try await tmux.waitFor("bob", "editing notes/1.title")
        try await tmux.keys("alice", " (alice)", "Enter")
        try await tmux.waitFor("alice", "saved notes/1 (version 4)")
        try await tmux.waitFor("bob", "someone else changed title too")
        try await tmux.keys("bob", " v2", "Enter")
        try await tmux.waitFor("bob", "Conflict on notes/1")
        let conflictScreen = try await tmux.screen("bob")
        #expect(conflictScreen.contains("Not merged: someone else changed title too"))
        #expect(conflictScreen.contains("Plan by bob v2") && conflictScreen.contains("Plan by bob (alice)"))
        #expect(!conflictScreen.contains("alice-body"), "only the clashing field is shown:\n\(conflictScreen)")
        try await tmux.keys("bob", "r")
        try await tmux.waitFor("bob", "saved notes/1 (version 5)")
        try await tmux.waitFor("alice", "Plan by bob v2", within: .seconds(1))

        try await TestClient.with(url: server.url) { client in
            let record = try await client.request(#"{"type":"get","key":"notes/1"}"#)
            #expect(record["version"] == .integer(5))
            #expect(record["data"] == .object(["body": .string("alice-body"), "title": .string("Plan by bob v2")]))
        }

        // Alice opens the history (h), picks version 3 and restores it as version 6; Bob sees it.
        try await tmux.keys("alice", "h")
        try await tmux.waitFor("alice", "History of notes/1")
        try await tmux.waitFor("alice", "v1")
        try await tmux.keys("alice", "Down", "Down", "Enter")
        try await tmux.waitFor("alice", "saved notes/1 (version 6)")
        try await tmux.waitFor("bob", "now version 6", within: .seconds(2))
        try await TestClient.with(url: server.url) { client in
            let record = try await client.request(#"{"type":"get","key":"notes/1"}"#)
            #expect(record["version"] == .integer(6))
            #expect(record["data"] == .object(["body": .string("alice-body"), "title": .string("Plan by bob")]))
        }

        // Quitting (q) and Ctrl-C both give the terminal back as it was.
        try await tmux.keys("alice", "q")
        try await tmux.keys("bob", "C-c")
        for name in ["alice", "bob"] {
            try await tmux.waitFor(name, "EXITED")
            let screen = try await tmux.screen(name)
            #expect(
                screen.contains("ECHO: echo") || screen.contains("ECHO:echo"),
                "echo restored in \(name): \(screen)"
            )
            #expect(!screen.contains("verso edit notes/"), "the alternate screen was left in \(name)")
        }
        await tmux.kill()
    }
}
