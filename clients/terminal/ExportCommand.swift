import ArgumentParser
import Foundation
import VersoClient
import VersoCore

struct Export: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write every live record under a prefix as JSON lines, which verso import reads back.",
        discussion: """
            Each line is {"data":{...},"key":K,"version":V}, in key order (the lines verso list prints). The records \
            are read with list, 1000 a page, each page as it is when read: a record written during the export \
            appears as its page found it. verso import reads these lines as creates (a line without "base" is sent \
            with base 0; "version" is ignored), so importing an export into a server that lacks those keys \
            recreates them, each at version 1, and a key that exists there is a conflict.
            """
    )
    @OptionGroup var connection: ConnectionOptions
    @Option(help: "Write to this file (created or replaced) instead of standard output.") var output: String?
    @Argument(help: "The key prefix (\"\" for all).") var prefix: String = ""

    func validate() throws {
        if let problem = RecordKey.prefixProblem(with: prefix) { throw ValidationError(problem) }
    }

    func run() async throws {
        let destination: FileHandle
        if let output {
            guard FileManager.default.createFile(atPath: output, contents: nil),
                let handle = FileHandle(forWritingAtPath: output)
            else {
                throw CommandFailure(ExitStatus.usage, "cannot write \(output)")
            }
            destination = handle
        } else {
            destination = FileHandle.standardOutput
        }
        defer { if output != nil { try? destination.close() } }
        let count: Int
        do {
            count = try await connection.withClient { try await writeRecords(under: prefix, from: $0, to: destination) }
        } catch let failure as CommandFailure where output != nil {
            throw CommandFailure(failure.exitCode, "\(failure.message); \(output!) is incomplete")
        }
        if let output {
            FileHandle.standardError.write(Data("verso: wrote \(count) records to \(output)\n".utf8))
        }
    }
}

/// Writes every live record under `prefix` to `destination`, one JSON line each in key order, a
/// page of `list` at a time (so no more than one page is held); returns how many.
func writeRecords(under prefix: String, from client: VersoClient, to destination: FileHandle) async throws -> Int {
    var count = 0
    var after: String?
    repeat {
        let page = try await client.list(prefix: prefix, after: after, limit: 1000)
        var bytes: [UInt8] = []
        for record in page.records {
            bytes += recordJSON(record).encodedBytes
            bytes.append(UInt8(ascii: "\n"))
        }
        destination.write(Data(bytes))
        count += page.records.count
        after = page.records.isEmpty ? nil : page.next
    } while after != nil
    return count
}
