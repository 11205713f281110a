import ArgumentParser
import Foundation
import VersoClient
import VersoCore

/// `--base N` or `--force`, shared by the write commands.
struct BaseOptions: ParsableArguments {
    @Option(help: "The version your change starts from (0 creates).")
    var base: Int64?

    @Flag(help: "Write whatever the current version (only if the server runs with --allow-force).")
    var force = false

    func validate() throws {
        switch (base, force) {
        case (nil, false): throw ValidationError("give --base N (the version you started from; 0 creates) or --force")
        case (.some, true): throw ValidationError("give either --base or --force, not both")
        case (.some(let base), false) where base < 0: throw ValidationError("--base must not be negative")
        default: break
        }
    }
}

/// Prints an ack, or the current record and exits 3 on conflict.
func report(_ key: String, _ outcome: WriteOutcome) throws {
    switch outcome {
    case .ack(let version, let seq):
        printJSON(.object(["key": .string(key), "version": .integer(version), "seq": .integer(seq)]))
    case .conflict(let conflict):
        printJSON(conflictJSON(conflict))
        throw CommandFailure(
            ExitStatus.conflict,
            "conflict: \(key) is at version \(conflict.version), not \(conflict.base)"
        )
    }
}

struct Get: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Print a record: {\"key\",\"version\",\"data\"}.")
    @OptionGroup var connection: ConnectionOptions
    @Argument(help: "The key.") var key: String

    func run() async throws {
        let lookup = try await connection.withClient { try await $0.get(key) }
        switch lookup {
        case .found(let record): printJSON(recordJSON(record))
        case .missing: throw CommandFailure(ExitStatus.notFound, "no record at \(key)")
        case .deleted(let version):
            throw CommandFailure(ExitStatus.notFound, "\(key) was deleted (tombstone at version \(version))")
        }
    }
}

struct Put: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Replace a record's data if its version is --base.")
    @OptionGroup var connection: ConnectionOptions
    @OptionGroup var base: BaseOptions
    @Argument(help: "The key.") var key: String
    @Argument(help: "A JSON object, @file, or - for standard input.") var data: String

    func run() async throws {
        let object = try readObject(data, what: "data")
        let outcome = try await connection.withClient { try await $0.put(key, base: base.base, data: object) }
        try report(key, outcome)
    }
}

struct Patch: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Apply an RFC 7396 merge patch if the version is --base.")
    @OptionGroup var connection: ConnectionOptions
    @OptionGroup var base: BaseOptions
    @Argument(help: "The key.") var key: String
    @Argument(help: "A JSON object, @file, or - for standard input.") var patch: String

    func run() async throws {
        let object = try readObject(patch, what: "patch")
        let outcome = try await connection.withClient { try await $0.patch(key, base: base.base, patch: object) }
        try report(key, outcome)
    }
}

struct Delete: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Delete a record (leaving a tombstone) if its version is --base."
    )
    @OptionGroup var connection: ConnectionOptions
    @OptionGroup var base: BaseOptions
    @Argument(help: "The key.") var key: String

    func run() async throws {
        let outcome = try await connection.withClient { try await $0.delete(key, base: base.base) }
        try report(key, outcome)
    }
}

struct List: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print the live records under a prefix, one JSON line each, in key order."
    )
    @OptionGroup var connection: ConnectionOptions
    @Argument(help: "The key prefix (\"\" for all).") var prefix: String = ""

    func run() async throws {
        let records = try await connection.withClient { try await $0.listAll(prefix: prefix) }
        for record in records { printJSON(recordJSON(record)) }
    }
}

struct Watch: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print changes live, one JSON line each, until interrupted.",
        discussion: """
            Lines are {"type":"snapshot",...} for the records as they are when watching starts (unless --updates-only), \
            {"type":"update","key","version","seq","data","deleted"} for each change, and {"type":"reset"} when a resume \
            after a reconnect could not replay what was missed (fresh snapshots follow).
            """
    )
    @OptionGroup var connection: ConnectionOptions
    @Option(help: "Watch every key with this prefix.") var prefix: String?
    @Flag(help: "Print only changes, not the records as they are at the start.") var updatesOnly = false
    @Argument(help: "Keys to watch.") var keys: [String] = []

    func validate() throws {
        if prefix == nil, keys.isEmpty { throw ValidationError("give keys to watch, or --prefix P") }
        if prefix != nil, !keys.isEmpty { throw ValidationError("give either keys or --prefix, not both") }
    }

    func run() async throws {
        let filter: SubscriptionFilter = prefix.map { .prefix($0) } ?? .keys(Set(keys.map { BytewiseString($0) }))
        try await connection.withClient(reconnect: true) { client in
            let stream = try await client.subscribe(filter)
            var started = false
            for try await event in stream {
                switch event {
                case .started(_, let reset):
                    if reset, started { printJSON(.object(["type": .string("reset")])) }
                    started = true
                case .snapshot(let record):
                    if !updatesOnly {
                        var line = recordJSON(record).objectValue!
                        line["type"] = .string("snapshot")
                        printJSON(.object(line))
                    }
                case .synced:
                    break
                case .update(let key, let version, let seq, let data):
                    printJSON(
                        .object([
                            "type": .string("update"), "key": .string(key), "version": .integer(version),
                            "seq": .integer(seq),
                            "data": data.map { .object($0) } ?? .null, "deleted": .bool(data == nil),
                        ])
                    )
                }
            }
        }
    }
}

struct Txn: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Apply several operations all or nothing.",
        discussion: """
            FILE holds {"ops":[...]} or just the array, with ops as in Protocol.md: \
            {"op":"put"|"patch"|"delete"|"check","key":K,"base":B,"data":{...}|"patch":{...}}. Use - for standard input.
            """
    )
    @OptionGroup var connection: ConnectionOptions
    @Argument(help: "The txn file, or - for standard input.") var file: String

    func run() async throws {
        let text: String
        if file == "-" {
            text = String(decoding: FileHandle.standardInput.readDataToEndOfFile(), as: UTF8.self)
        } else {
            guard let data = FileManager.default.contents(atPath: file) else {
                throw CommandFailure(ExitStatus.usage, "cannot read \(file)")
            }
            text = String(decoding: data, as: UTF8.self)
        }
        let operations = try Self.operations(from: text)
        let outcome = try await connection.withClient { try await $0.txn(operations) }
        switch outcome {
        case .ack(let seq, let versions):
            printJSON(.object(["seq": .integer(seq), "versions": .object(versions.mapValues { .integer($0) })]))
        case .conflict(let conflicts):
            printJSON(.object(["conflicts": .array(conflicts.map(conflictJSON))]))
            throw CommandFailure(
                ExitStatus.conflict,
                "conflict: \(conflicts.map(\.key).joined(separator: ", ")) changed; nothing was applied"
            )
        }
    }

    static func operations(from text: String) throws -> [TxnOperation] {
        let value: JSONValue
        do { value = try JSONParser.parse(text.trimmingCharacters(in: .whitespacesAndNewlines)) } catch {
            throw CommandFailure(ExitStatus.usage, "the txn is not valid JSON: \(error)")
        }
        let ops: [JSONValue]
        switch value {
        case .array(let items): ops = items
        case .object(let members):
            guard case .array(let items)? = members["ops"] else {
                throw CommandFailure(ExitStatus.usage, "the txn object needs an \"ops\" array")
            }
            ops = items
        default: throw CommandFailure(ExitStatus.usage, "the txn must be an array of ops or {\"ops\":[...]}")
        }
        return try ops.enumerated().map { index, op in
            guard let key = op["key"]?.stringValue, let name = op["op"]?.stringValue else {
                throw CommandFailure(ExitStatus.usage, "ops[\(index)] needs \"op\" and \"key\"")
            }
            let base = op["base"]?.integerValue
            if base == nil, op["force"] != .bool(true) {
                throw CommandFailure(ExitStatus.usage, "ops[\(index)] needs \"base\" (or \"force\": true)")
            }
            let action: TxnOperation.Action
            switch name {
            case "put":
                guard let data = op["data"]?.objectValue else {
                    throw CommandFailure(ExitStatus.usage, "ops[\(index)]: put needs \"data\" (an object)")
                }
                action = .put(data)
            case "patch":
                guard let patch = op["patch"]?.objectValue else {
                    throw CommandFailure(ExitStatus.usage, "ops[\(index)]: patch needs \"patch\" (an object)")
                }
                action = .patch(patch)
            case "delete": action = .delete
            case "check": action = .check
            default: throw CommandFailure(ExitStatus.usage, "ops[\(index)]: unknown op \"\(name)\"")
            }
            return TxnOperation(key: key, base: base, action: action)
        }
    }
}
