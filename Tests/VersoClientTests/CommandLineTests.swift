import Foundation
import Testing
import VersoCore
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
}
