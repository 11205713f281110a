import Foundation
import Testing
import VersoCore
import VersoTesting
import VersoWire

@Suite("Logs: --log-format json writes one JSON object per line")
struct LogFormatTests {
    @Test(
        "with --log-format json every line of the log is a JSON object with time, level, label and message; a refused request's line carries the session and rid, and no record data"
    )
    func jsonLines() async throws {
        let directory = TestServer.makeDataDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let server = try await ServerProcess.start(
            dataDirectory: directory,
            arguments: ["--log-format", "json", "--log-level", "debug"]
        )
        defer { server.send(signal: SIGKILL) }
        let session = try await TestClient.with(url: server.url) { client in
            let welcome = try await client.request(#"{"type":"hello"}"#)
            let put = try await client.request(#"{"type":"put","key":"l/1","base":0,"data":{"secret":"s3cr3t"}}"#)
            #expect(put.type == "ack")
            let refused = try await client.request(#"{"type":"get","rid":"r-42","key":""}"#)
            #expect(refused["code"]?.str == "bad_request")
            return try #require(welcome["session"]?.str)
        }
        var lines: [JSONValue] = []
        try await waitUntil("the refusal is logged") {
            lines = server.log.split(separator: "\n").compactMap { try? JSONParser.parse(String($0)) }
            return lines.contains { $0["verso.rid"]?.str == "r-42" }
        }
        let text = server.log.split(separator: "\n")
        #expect(lines.count == text.count, "every line is JSON:\n\(server.log)")
        for line in lines {
            #expect(line["time"]?.str?.hasSuffix("Z") == true && line["level"]?.str != nil, "\(line.encodedString)")
            #expect(line["label"]?.str != nil && line["message"]?.str != nil, "\(line.encodedString)")
        }
        let refusal = try #require(lines.first { $0["verso.rid"] != nil })
        #expect(refusal["message"]?.str == "request refused" && refusal["level"]?.str == "debug")
        #expect(refusal["verso.session"]?.str == session && refusal["verso.code"]?.str == "bad_request")
        #expect(!server.log.contains("s3cr3t"), "record data in the log")
    }

    @Test("--log-format must be text or json")
    func badFormat() async throws {
        let directory = TestServer.makeDataDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let output = directory + ".out"
        defer { try? FileManager.default.removeItem(atPath: output) }
        let status = await ChildProcess.run(
            ServerProcess.binaryPath,
            ["--port", "0", "--data", directory, "--log-format", "xml"],
            output: output
        )
        #expect(status == 64)
        #expect((try? String(contentsOfFile: output, encoding: .utf8))?.contains("xml is not text or json") == true)
    }
}
