import Foundation
import Testing
import VersoCore
import VersoServer
import VersoTesting

/// What a run of `verso` came to.
struct Run {
    var status: Int32
    var output: String
    var errors: String

    /// The one JSON line it printed.
    var json: JSONValue? { try? JSONParser.parse(output.trimmingCharacters(in: .whitespacesAndNewlines)) }
}

/// Runs the built `verso` with `arguments` until it exits, with `input` (if any) on its standard input.
func verso(_ arguments: [String], input: String? = nil) async throws -> Run {
    let path = ServerProcess.builtProductPath("verso")
    try #require(FileManager.default.isExecutableFile(atPath: path), "build the verso client first (swift build)")
    let directory = FileManager.default.temporaryDirectory
    let outputURL = directory.appendingPathComponent("verso-cli-\(UUID().uuidString).out")
    let errorsURL = directory.appendingPathComponent("verso-cli-\(UUID().uuidString).err")
    let inputURL = directory.appendingPathComponent("verso-cli-\(UUID().uuidString).in")
    _ = FileManager.default.createFile(atPath: outputURL.path, contents: nil)
    _ = FileManager.default.createFile(atPath: errorsURL.path, contents: nil)
    defer {
        try? FileManager.default.removeItem(at: outputURL)
        try? FileManager.default.removeItem(at: errorsURL)
        try? FileManager.default.removeItem(at: inputURL)
    }
    if let input { try Data(input.utf8).write(to: inputURL) }
    let status = await ChildProcess.run(
        path,
        arguments,
        environment: ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("VERSO_") },
        input: input == nil ? nil : inputURL.path,
        output: outputURL.path,
        errors: errorsURL.path
    )
    return Run(
        status: status,
        output: String(decoding: (try? Data(contentsOf: outputURL)) ?? Data(), as: UTF8.self),
        errors: String(decoding: (try? Data(contentsOf: errorsURL)) ?? Data(), as: UTF8.self)
    )
}

@Suite("verso: the write commands' idempotency keys and merge flag")
struct CommandLineTests {
    @Test(
        "verso put whose ack is lost connects again, sends the put once more with the same idempotency key, and prints the first ack marked replayed"
    )
    func putResentOnce() async throws {
        try await TestServer.with { server in
            try await CuttingProxy.with(to: server.port) { proxy, port in
                proxy.arm(.reply(containing: #""type":"ack""#))
                let run = try await verso([
                    "put", "--url", "ws://127.0.0.1:\(port)/v1/ws", "--no-compression", "cli/1", "--base", "0",
                    #"{"n":1}"#,
                ])
                #expect(run.status == 0, "\(run.errors)")
                #expect(
                    run.json
                        == .object([
                            "key": .string("cli/1"), "version": .integer(1), "seq": .integer(1),
                            "replayed": .bool(true),
                        ])
                )
                #expect(run.errors.contains("sending again with the same idempotency key"))
                #expect(proxy.cuts == 1 && proxy.connections == 2)
            }
        }
    }

    @Test(
        "verso patch --merge on a stale base prints the ack with merged; a clash exits 3 and prints reason and clashes; --merge with --force is a usage error"
    )
    func merge() async throws {
        try await TestServer.with { server in
            let url = ["--url", server.url]
            #expect(try await verso(["put"] + url + ["cli/2", "--base", "0", #"{"a":1,"b":1}"#]).status == 0)
            #expect(try await verso(["patch"] + url + ["cli/2", "--base", "1", #"{"a":2}"#]).status == 0)
            let merged = try await verso(["patch"] + url + ["cli/2", "--base", "1", "--merge", #"{"b":2}"#])
            #expect(merged.status == 0, "\(merged.errors)")
            #expect(merged.json?["merged"] == .bool(true))
            #expect(merged.json?["version"] == .integer(3))
            let clash = try await verso(["put"] + url + ["cli/2", "--base", "1", "--merge", #"{"a":5,"b":1}"#])
            #expect(clash.status == 3)
            #expect(clash.json?["reason"] == .string("clash"))
            #expect(clash.json?["clashes"] == .array([.string("/a")]))
            #expect(clash.errors.contains("not merged: clash on /a"))
            let forced = try await verso(["put"] + url + ["cli/2", "--force", "--merge", "{}"])
            #expect(forced.status == 2)
            #expect(forced.errors.contains("--merge needs --base"))
        }
    }

    @Test("verso put with the same --idempotency-key again prints its first ack, replayed, not a conflict")
    func ownKey() async throws {
        try await TestServer.with { server in
            let put = ["put", "--url", server.url, "--idempotency-key", "script-1", "cli/3", "--base", "0", "{}"]
            let first = try await verso(put)
            #expect(first.status == 0)
            #expect(first.json?["replayed"] == nil)
            let again = try await verso(put)
            #expect(again.status == 0, "\(again.errors)")
            #expect(again.json?["replayed"] == .bool(true))
            #expect(again.json?["version"] == .integer(1))
        }
    }

    @Test(
        "verso history prints a record's versions newest first, one JSON line each, then {\"gone\":N} when older ones are no longer kept; verso restore writes a version back as a new one, and exits 4 for one not kept"
    )
    func historyAndRestore() async throws {
        try await TestServer.with(configure: {
            $0.historyLimit = 16
            $0.keepVersions = 2
        }) { server in
            let url = ["--url", server.url]
            for base in 0..<5 {
                #expect(
                    try await verso(["put"] + url + ["cli/h", "--base", "\(base)", #"{"n":\#(base + 1)}"#]).status == 0
                )
            }
            let all = try await verso(["history"] + url + ["cli/h"])
            #expect(all.status == 0, "\(all.errors)")
            let lines = all.output.split(separator: "\n").compactMap { try? JSONParser.parse(String($0)) }
            #expect(lines.compactMap { $0["version"]?.integerValue } == [5, 4, 3, 2, 1])
            #expect(lines.first?["data"] == .object(["n": .integer(5)]) && lines.first?["at"]?.integerValue != nil)
            let page = try await verso(["history"] + url + ["--before", "3", "--limit", "1", "cli/h"])
            #expect(page.output.split(separator: "\n").count == 1 && page.output.contains(#""version":2"#))

            let restored = try await verso(["restore"] + url + ["cli/h", "2"])
            #expect(restored.status == 0, "\(restored.errors)")
            #expect(restored.json?["version"] == .integer(6))
            #expect(try await verso(["get"] + url + ["cli/h"]).json?["data"] == .object(["n": .integer(2)]))

            // Push cli/h out of the 16-seq log: 2 versions beyond the log are kept.
            for index in 0..<20 { _ = try await verso(["put"] + url + ["cli/other\(index)", "--base", "0", "{}"]) }
            let kept = try await verso(["history"] + url + ["cli/h"])
            let keptLines = kept.output.split(separator: "\n").compactMap { try? JSONParser.parse(String($0)) }
            #expect(keptLines.compactMap { $0["version"]?.integerValue } == [6, 5])
            #expect(keptLines.last == .object(["gone": .integer(4)]), "\(kept.output)")
            let gone = try await verso(["restore"] + url + ["cli/h", "3"])
            #expect(gone.status == 4, "\(gone.errors)")
            #expect(gone.errors.contains("not kept"))
        }
    }

    @Test(
        "verso stats prints the server's figures from /metrics as a table; against a server without --metrics it exits 4 saying to start it with --metrics"
    )
    func stats() async throws {
        try await TestServer.with(configure: { $0.metrics = true }) { server in
            let url = ["--url", server.url]
            for base in 0..<3 {
                #expect(try await verso(["put"] + url + ["s/1", "--base", "\(base)", "{}"]).status == 0)
            }
            #expect(try await verso(["put"] + url + ["s/1", "--base", "0", "{}"]).status == 3)
            let run = try await verso(["stats"] + url)
            #expect(run.status == 0, "\(run.errors)")
            let lines = run.output.split(separator: "\n").map {
                $0.split(separator: " ", omittingEmptySubsequences: true)
            }
            func value(_ label: String) -> String? {
                let words = label.split(separator: " ")
                return lines.first { Array($0.prefix(words.count)) == words }.flatMap {
                    $0.dropFirst(words.count).first
                }
                .map(String.init)
            }
            #expect(value("writes ack") == "3", "\(run.output)")
            #expect(value("writes conflict") == "1")
            #expect(value("requests put") == "4")
            #expect(value("last seq") == "3")
        }
        let plain = try await TestServer.with { server in try await verso(["stats", "--url", server.url]) }
        #expect(plain.status == 4 && plain.errors.contains("--metrics"), "\(plain.errors)")
    }
}
