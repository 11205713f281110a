import ArgumentParser
import Foundation
import VersoClient
import VersoCore

/// `verso`: scriptable commands and the live editor for a Verso server.
@main
struct VersoCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "verso",
        abstract: "Read, write, watch and live-edit records on a Verso server.",
        discussion: """
            JSON goes to standard output, messages to standard error.
            Exit codes: 0 ok, 1 other error, 2 usage, 3 conflict (the current record is printed; import: see its help), 4 not found, 5 cannot connect.
            """,
        subcommands: [
            Get.self, Put.self, Patch.self, Delete.self, List.self, Watch.self, Txn.self, Import.self, Export.self,
            History.self, Restore.self, Stats.self, Edit.self,
        ]
    )

    /// Runs the command, mapping every failure to the documented exit codes.
    static func main() async {
        do {
            var command = try parseAsRoot()
            if var asyncCommand = command as? any AsyncParsableCommand {
                try await asyncCommand.run()
            } else {
                try command.run()
            }
        } catch let failure as CommandFailure {
            FileHandle.standardError.write(Data("verso: \(failure.message)\n".utf8))
            Foundation.exit(failure.exitCode)
        } catch {
            let code = exitCode(for: error)
            if code == .success {
                print(fullMessage(for: error))
                Foundation.exit(0)
            }
            FileHandle.standardError.write(Data("\(fullMessage(for: error))\n".utf8))
            Foundation.exit(code == .validationFailure ? ExitStatus.usage : code.rawValue)
        }
    }
}

/// Exit statuses of `verso`.
enum ExitStatus {
    static let ok: Int32 = 0
    static let failure: Int32 = 1
    static let usage: Int32 = 2
    static let conflict: Int32 = 3
    static let notFound: Int32 = 4
    static let cannotConnect: Int32 = 5
}

/// A failure with the exit status it maps to.
struct CommandFailure: Error {
    let exitCode: Int32
    let message: String
    /// The connection dropped before the reply: a write may be sent again with its idempotency key.
    var droppedBeforeReply = false

    /// Maps a client error to its exit status.
    init(_ error: any Error) {
        switch error {
        case let failure as CommandFailure:
            self = failure
        case let error as VersoClientError:
            switch error.kind {
            case .cannotConnect: self.init(ExitStatus.cannotConnect, error.description)
            case .server(.notFound): self.init(ExitStatus.notFound, error.description)
            case .server(.badRequest), .server(.tooLarge), .invalidArgument:
                self.init(ExitStatus.usage, error.description)
            case .disconnected:
                self.init(ExitStatus.failure, error.description)
                droppedBeforeReply = true
            default: self.init(ExitStatus.failure, error.description)
            }
        default:
            self.init(ExitStatus.failure, "\(error)")
        }
    }

    init(_ exitCode: Int32, _ message: String) {
        self.exitCode = exitCode
        self.message = message
    }
}

/// Options every command shares.
struct ConnectionOptions: ParsableArguments {
    @Option(help: "Server WebSocket URL [VERSO_URL] (default ws://127.0.0.1:7070/v1/ws).")
    var url: String?

    @Flag(help: "Do not offer permessage-deflate.")
    var noCompression = false

    @Option(help: "Seconds to wait for each reply.")
    var timeout: Double = 10

    @Option(
        help:
            "Access token, for a server started with --auth [VERSO_TOKEN]. Prefer the variable: a flag shows in the process list."
    )
    var token: String?

    @Option(
        help:
            "For a wss:// URL: a PEM file of the certificate authorities to trust instead of the system's (a private CA or a self-signed server certificate) [VERSO_CA_FILE]."
    )
    var caFile: String?

    @Option(help: "Your name, shown to others with your presence in the editor [VERSO_NAME] (default: $USER).")
    var name: String?

    var configuration: VersoClientConfiguration {
        let environment = ProcessInfo.processInfo.environment
        var configuration = VersoClientConfiguration(
            url: url ?? ProcessInfo.processInfo.environment["VERSO_URL"] ?? "ws://127.0.0.1:7070/v1/ws",
            compression: !noCompression,
            requestTimeout: .milliseconds(Int(timeout * 1000)),
            clientName: name ?? environment["VERSO_NAME"] ?? environment["USER"] ?? "verso-cli"
        )
        configuration.token =
            token ?? ProcessInfo.processInfo.environment["VERSO_TOKEN"].flatMap { $0.isEmpty ? nil : $0 }
        configuration.caFile =
            caFile ?? ProcessInfo.processInfo.environment["VERSO_CA_FILE"].flatMap { $0.isEmpty ? nil : $0 }
        return configuration
    }

    /// Connects (failing fast when the server cannot be reached) and runs `body`.
    func withClient<T: Sendable>(reconnect: Bool = false, _ body: (VersoClient) async throws -> T) async throws -> T {
        var configuration = configuration
        configuration.reconnect = reconnect
        do {
            return try await VersoClient.with(configuration, body)
        } catch {
            throw CommandFailure(error)
        }
    }
}

/// Writes one JSON value as a line on standard output.
func printJSON(_ value: JSONValue) {
    FileHandle.standardOutput.write(Data((value.encodedString + "\n").utf8))
}

/// Reads a JSON object from an argument: inline JSON, `@file`, or `-` for standard input.
func readObject(_ argument: String, what: String) throws -> JSONObject {
    let text: String
    if argument == "-" {
        text = String(decoding: FileHandle.standardInput.readDataToEndOfFile(), as: UTF8.self)
    } else if argument.hasPrefix("@") {
        let path = String(argument.dropFirst())
        guard let data = FileManager.default.contents(atPath: path) else {
            throw CommandFailure(ExitStatus.usage, "cannot read \(what) from \(path)")
        }
        text = String(decoding: data, as: UTF8.self)
    } else {
        text = argument
    }
    let value: JSONValue
    do {
        value = try JSONParser.parse(text.trimmingCharacters(in: .whitespacesAndNewlines))
    } catch {
        throw CommandFailure(ExitStatus.usage, "\(what) is not valid JSON: \(error)")
    }
    guard case .object(let members) = value else {
        throw CommandFailure(ExitStatus.usage, "\(what) must be a JSON object")
    }
    return members
}

/// The JSON printed for a record.
func recordJSON(_ record: Record) -> JSONValue {
    .object(["key": .string(record.key), "version": .integer(record.version), "data": .object(record.data)])
}

/// The JSON printed for a conflict: with `reason`, `clashes` and `changed` (JSON Pointers) when the
/// write asked for a merge.
func conflictJSON(_ conflict: RecordConflict) -> JSONValue {
    var members: JSONObject = [
        "key": .string(conflict.key), "base": .integer(conflict.base), "version": .integer(conflict.version),
        "data": conflict.data.map { .object($0) } ?? .null, "deleted": .bool(conflict.deleted),
    ]
    if let reason = conflict.reason {
        members["reason"] = .string(reason.rawValue)
        members["clashes"] = .array(conflict.clashes.map { .string($0.pointer) })
        if let changed = conflict.changed { members["changed"] = .array(changed.map { .string($0.pointer) }) }
    }
    members["at"] = conflict.at.map { .integer($0) }
    members["by"] = conflict.by.map { .string($0) }
    return .object(members)
}
