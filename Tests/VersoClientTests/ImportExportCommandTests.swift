import Foundation
import Testing
import VersoClient
import VersoCore
import VersoTesting

/// A temporary file holding `lines`, removed after `body`.
private func withLines<T>(_ lines: [String], _ body: (String) async throws -> T) async throws -> T {
    let path = FileManager.default.temporaryDirectory.appendingPathComponent("verso-import-\(UUID().uuidString)").path
    defer { try? FileManager.default.removeItem(atPath: path) }
    try Data(lines.map { $0 + "\n" }.joined().utf8).write(to: URL(fileURLWithPath: path))
    return try await body(path)
}

/// A path for a file `verso` writes, removed after `body`.
private func withOutputPath<T>(_ body: (String) async throws -> T) async throws -> T {
    let path = FileManager.default.temporaryDirectory.appendingPathComponent("verso-out-\(UUID().uuidString)").path
    defer { try? FileManager.default.removeItem(atPath: path) }
    return try await body(path)
}

/// The JSON lines of `text`.
private func jsonLines(_ text: String) throws -> [JSONValue] {
    try text.split(separator: "\n").map { try JSONParser.parse(String($0)) }
}

/// The progress lines `verso import` wrote to standard error (not a terminal: one per batch).
private func progress(_ run: Run) -> [String] {
    run.errors.split(separator: "\n").map(String.init).filter { $0.hasPrefix("verso import: ") }
}

/// The summary `verso import` prints.
private func summary(written: Int, merged: Int = 0, conflicts: Int = 0, errors: Int = 0) -> JSONValue {
    .object([
        "written": .integer(Int64(written)), "merged": .integer(Int64(merged)),
        "conflicts": .integer(Int64(conflicts)), "errors": .integer(Int64(errors)),
    ])
}

@Suite("verso import and export: records as JSON lines, written in batches (Protocol.md 3.8)")
struct ImportExportCommandTests {
    @Test(
        "verso import creates new records, merges a merge line, writes a stale base's conflict to --conflicts, reports a malformed line with its number, and exits 1 with a summary of each"
    )
    func mixed() async throws {
        try await TestServer.with { server in
            try await VersoClient.with(VersoClientConfiguration(url: server.url)) { client in
                _ = try await client.put("i/old", base: 0, data: ["a": .integer(1), "b": .integer(1)])
                _ = try await client.patch("i/old", base: 1, patch: ["a": .integer(2)])
            }
            let lines = [
                #"{"key":"i/1","data":{"n":1}}"#,
                "",
                #"{"key":"i/2","base":0,"data":{"n":2}}"#,
                #"{"key":"i/old","base":1,"data":{"a":9,"b":1}}"#,
                #"{"key":"i/old","base":1,"merge":true,"data":{"a":1,"b":5}}"#,
                #"{"key":"i/3","data":"not an object"}"#,
                "{not json",
            ]
            try await withLines(lines) { file in
                try await withOutputPath { conflicts in
                    let run = try await verso(["import", "--url", server.url, "--conflicts", conflicts, file])
                    #expect(run.status == 1, "\(run.errors)")
                    #expect(run.json == summary(written: 3, merged: 1, conflicts: 1, errors: 2))
                    #expect(run.errors.contains("line 6: i/3: needs \"data\", an object"))
                    #expect(run.errors.contains("line 7: not valid JSON"))
                    // The conflict says when the current version was written; the test cannot know.
                    let written = try jsonLines(String(contentsOfFile: conflicts, encoding: .utf8)).map { line in
                        guard case .object(var members) = line, members["at"]?.integerValue != nil else { return line }
                        members["at"] = nil
                        return JSONValue.object(members)
                    }
                    #expect(
                        written == [
                            .object([
                                "line": .integer(4), "key": .string("i/old"), "base": .integer(1),
                                "version": .integer(2), "data": .object(["a": .integer(2), "b": .integer(1)]),
                                "deleted": .bool(false),
                            ])
                        ]
                    )
                }
            }
            try await VersoClient.with(VersoClientConfiguration(url: server.url)) { client async throws in
                #expect(
                    try await client.get("i/old")
                        == .found(Record(key: "i/old", version: 3, data: ["a": .integer(2), "b": .integer(5)]))
                )
                #expect(try await client.get("i/1") == .found(Record(key: "i/1", version: 1, data: ["n": .integer(1)])))
                #expect(try await client.get("i/3") == .missing)
            }
        }
    }

    @Test(
        "verso import exits 0 when every record was written and 3 when some conflicted and none failed; without --conflicts each conflict is a message"
    )
    func exitStatus() async throws {
        try await TestServer.with { server in
            try await withLines([#"{"key":"s/1","data":{}}"#, #"{"key":"s/2","data":{}}"#]) { file in
                let first = try await verso(["import", "--url", server.url, file])
                #expect(first.status == 0, "\(first.errors)")
                #expect(first.json == summary(written: 2))
                let again = try await verso(["import", "--url", server.url, file])
                #expect(again.status == 3)
                #expect(again.json == summary(written: 0, conflicts: 2))
                #expect(again.errors.contains("line 2: conflict: s/2 is at version 1, not 0"))
            }
        }
    }

    @Test(
        "verso import --batch-size 2 sends 5 records from standard input as batches of 2, 2 and 1, with a progress line after each"
    )
    func batchBoundary() async throws {
        try await TestServer.with { server in
            let input = (1...5).map { #"{"key":"b/\#($0)","data":{"n":\#($0)}}"# }.joined(separator: "\n")
            let run = try await verso(["import", "--url", server.url, "--batch-size", "2", "-"], input: input)
            #expect(run.status == 0, "\(run.errors)")
            #expect(run.json == summary(written: 5))
            #expect(
                progress(run) == [
                    "verso import: 2 done of 3 read, 0 conflicts, 0 errors",
                    "verso import: 4 done of 5 read, 0 conflicts, 0 errors",
                    "verso import: 5 done of 5 read, 0 conflicts, 0 errors",
                ]
            )
            try await VersoClient.with(VersoClientConfiguration(url: server.url)) { client in
                let records = try await client.listAll(prefix: "b/")
                #expect(records.map(\.key) == ["b/1", "b/2", "b/3", "b/4", "b/5"])
                #expect(records.allSatisfy { $0.version == 1 })
            }
        }
    }

    @Test(
        "verso import sends a batch early rather than let it pass --max-batch-bytes, and a line too large for one message is an error"
    )
    func batchBytes() async throws {
        try await TestServer.with { server in
            let filler = String(repeating: "x", count: 300)
            var lines = (1...4).map { #"{"key":"z/\#($0)","data":{"s":"\#(filler)"}}"# }
            lines.append(#"{"key":"z/big","data":{"s":"\#(String(repeating: "y", count: 2000))"}}"#)
            try await withLines(lines) { file in
                let run = try await verso(["import", "--url", server.url, "--max-batch-bytes", "1024", file])
                #expect(run.status == 1)
                #expect(run.json == summary(written: 4, errors: 1))
                #expect(run.errors.contains("line 5: 2031 bytes, more than --max-batch-bytes (1024)"))
                #expect(progress(run).count == 2, "two records of ~330 bytes a batch: \(run.errors)")
            }
        }
    }

    @Test("verso import --strict stops at the first malformed line: the lines before it are imported, none after")
    func strict() async throws {
        try await TestServer.with { server in
            let lines = [#"{"key":"t/1","data":{}}"#, #"{"key":"t/2"}"#, #"{"key":"t/3","data":{}}"#]
            try await withLines(lines) { file in
                let run = try await verso(["import", "--url", server.url, "--strict", file])
                #expect(run.status == 1)
                #expect(run.json == summary(written: 1, errors: 1))
                #expect(run.errors.contains("stopped at line 2 (--strict)"))
            }
            try await VersoClient.with(VersoClientConfiguration(url: server.url)) { client async throws in
                #expect(try await client.get("t/1").version == 1)
                #expect(try await client.get("t/3") == .missing)
            }
        }
    }

    @Test(
        "verso export of a prefix, imported into a second fresh server, gives the same records there: every live record under the prefix, each created at version 1"
    )
    func roundTrip() async throws {
        try await TestServer.with { source in
            let exported = try await VersoClient.with(VersoClientConfiguration(url: source.url)) { client in
                for index in 1...1005 {
                    _ = try await client.put(
                        "p/\(index)",
                        base: 0,
                        data: ["n": .integer(Int64(index)), "tags": .array([.string("é"), .null])]
                    )
                }
                _ = try await client.patch("p/7", base: 1, patch: ["n": .string("seven")])
                _ = try await client.delete("p/8", base: 1)
                _ = try await client.put("q/1", base: 0, data: [:])
                return try await client.listAll(prefix: "p/")
            }
            #expect(exported.count == 1004)
            try await withOutputPath { file in
                let export = try await verso(["export", "--url", source.url, "--output", file, "p/"])
                #expect(export.status == 0, "\(export.errors)")
                #expect(export.output.isEmpty)
                let lines = try jsonLines(String(contentsOfFile: file, encoding: .utf8))
                #expect(
                    lines.first
                        == .object(["key": .string("p/1"), "version": .integer(1), "data": .object(exported[0].data)])
                )
                try await TestServer.with { target in
                    let run = try await verso(["import", "--url", target.url, file])
                    #expect(run.status == 0, "\(run.errors)")
                    #expect(run.json == summary(written: 1004))
                    let imported = try await VersoClient.with(VersoClientConfiguration(url: target.url)) {
                        try await $0.listAll()
                    }
                    #expect(imported.map(\.key) == exported.map(\.key))
                    #expect(imported.map(\.data) == exported.map(\.data))
                    #expect(imported.allSatisfy { $0.version == 1 })
                }
            }
            let toStandardOutput = try await verso(["export", "--url", source.url, "q/"])
            #expect(
                toStandardOutput.json == .object(["key": .string("q/1"), "version": .integer(1), "data": .object([:])])
            )
        }
    }

    @Test(
        "verso import whose batch reply is lost reconnects, sends the batch again with its idempotency key, and counts its first results once"
    )
    func resentBatch() async throws {
        try await TestServer.with { server in
            try await CuttingProxy.with(to: server.port) { proxy, port in
                proxy.arm(.reply(containing: #""type":"results""#))
                let input = (1...3).map { #"{"key":"r/\#($0)","data":{}}"# }.joined(separator: "\n")
                let run = try await verso(
                    ["import", "--url", "ws://127.0.0.1:\(port)/v1/ws", "--no-compression", "-"],
                    input: input
                )
                #expect(run.status == 0, "\(run.errors)")
                #expect(run.json == summary(written: 3))
                #expect(run.errors.contains("the server had applied this batch already"))
                #expect(proxy.cuts == 1 && proxy.connections == 2)
            }
        }
    }
}
