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

/// `--merge`, for put and patch.
struct MergeOption: ParsableArguments {
    @Flag(
        help: """
            Send with "merge": "fields": on a stale --base, merge into the current record unless a value this \
            write changes was changed since (Protocol.md 3.3). Needs --base.
            """
    )
    var merge = false
}

/// `--idempotency-key`, and the one retry it makes safe, shared by the write commands.
struct RetryOptions: ParsableArguments {
    @Option(
        help: """
            The write's idempotency key (default: a new UUID). The same write sent again with the same key, from \
            this run or a later one, is applied at most once: the retry of a write that landed gets its first ack, \
            marked "replayed":true.
            """
    )
    var idempotencyKey: String?

    func validate() throws {
        if let idempotencyKey, !(1...RequestLimits.maxIdempotencyKeyBytes).contains(idempotencyKey.utf8.count) {
            throw ValidationError("--idempotency-key must be 1–\(RequestLimits.maxIdempotencyKeyBytes) bytes")
        }
    }

    /// Connects and sends a write with its idempotency key; when the connection drops before the
    /// reply, connects again and sends it once more with the same key, so a write that had landed
    /// is answered with its first ack rather than a conflict against itself.
    func send<T: Sendable>(
        _ connection: ConnectionOptions,
        _ write: (VersoClient, String) async throws -> T
    ) async throws -> T {
        let key = idempotencyKey ?? UUID().uuidString.lowercased()
        do {
            return try await connection.withClient { try await write($0, key) }
        } catch let failure as CommandFailure where failure.droppedBeforeReply {
            FileHandle.standardError.write(
                Data("verso: \(failure.message); sending again with the same idempotency key\n".utf8)
            )
            return try await connection.withClient { try await write($0, key) }
        }
    }
}

/// Prints an ack (with `"merged":true` and `"replayed":true` when so), or the current record and
/// exits 3 on conflict.
func report(_ key: String, _ outcome: WriteOutcome) throws {
    switch outcome {
    case .ack(let version, let seq, let merged, let replayed):
        var ack: JSONObject = ["key": .string(key), "version": .integer(version), "seq": .integer(seq)]
        if merged { ack["merged"] = .bool(true) }
        if replayed { ack["replayed"] = .bool(true) }
        printJSON(.object(ack))
    case .conflict(let conflict):
        printJSON(conflictJSON(conflict))
        let notMerged =
            conflict.reason.map { reason in
                "; not merged: \(reason.rawValue)"
                    + (conflict.clashes.isEmpty ? "" : " on \(conflict.clashes.map(\.pointer).joined(separator: ", "))")
            } ?? ""
        throw CommandFailure(
            ExitStatus.conflict,
            "conflict: \(key) is at version \(conflict.version), not \(conflict.base)\(notMerged)"
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
    @OptionGroup var merge: MergeOption
    @OptionGroup var retry: RetryOptions
    @Argument(help: "The key.") var key: String
    @Argument(help: "A JSON object, @file, or - for standard input.") var data: String

    func validate() throws {
        if merge.merge, base.force { throw ValidationError("--merge needs --base, not --force") }
    }

    func run() async throws {
        let object = try readObject(data, what: "data")
        let outcome = try await retry.send(connection) { client, idempotencyKey in
            try await client.put(key, base: base.base, data: object, merge: merge.merge, idempotencyKey: idempotencyKey)
        }
        try report(key, outcome)
    }
}

struct Patch: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Apply an RFC 7396 merge patch if the version is --base.")
    @OptionGroup var connection: ConnectionOptions
    @OptionGroup var base: BaseOptions
    @OptionGroup var merge: MergeOption
    @OptionGroup var retry: RetryOptions
    @Argument(help: "The key.") var key: String
    @Argument(help: "A JSON object, @file, or - for standard input.") var patch: String

    func validate() throws {
        if merge.merge, base.force { throw ValidationError("--merge needs --base, not --force") }
    }

    func run() async throws {
        let object = try readObject(patch, what: "patch")
        let outcome = try await retry.send(connection) { client, idempotencyKey in
            try await client.patch(
                key,
                base: base.base,
                patch: object,
                merge: merge.merge,
                idempotencyKey: idempotencyKey
            )
        }
        try report(key, outcome)
    }
}

struct Delete: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Delete a record (leaving a tombstone) if its version is --base."
    )
    @OptionGroup var connection: ConnectionOptions
    @OptionGroup var base: BaseOptions
    @OptionGroup var retry: RetryOptions
    @Argument(help: "The key.") var key: String

    func run() async throws {
        let outcome = try await retry.send(connection) { client, idempotencyKey in
            try await client.delete(key, base: base.base, idempotencyKey: idempotencyKey)
        }
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
        _ = try await connection.withClient { try await writeRecords(under: prefix, from: $0, to: .standardOutput) }
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
                case .synced, .progress:
                    break
                case .update(let key, let version, let seq, let data, let at, let by):
                    var line: JSONObject = [
                        "type": .string("update"), "key": .string(key), "version": .integer(version),
                        "seq": .integer(seq), "data": data.map { .object($0) } ?? .null, "deleted": .bool(data == nil),
                    ]
                    line["at"] = at.map { .integer($0) }
                    line["by"] = by.map { .string($0) }
                    printJSON(.object(line))
                case .presence(let presence):
                    var line: JSONObject = [
                        "type": .string("presence"), "key": .string(presence.key), "session": .string(presence.session),
                        "state": presence.state.map { .object($0) } ?? .null,
                    ]
                    line["client"] = presence.client.map { .string($0) }
                    line["user"] = presence.user.map { .string($0) }
                    printJSON(.object(line))
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
            {"op":"put"|"patch"|"delete"|"check","key":K,"base":B,"data":{...}|"patch":{...}}, a put or patch with \
            "merge":"fields" to merge on a stale base. Use - for standard input. The ack prints "merged" (the keys \
            merged) when there are any.
            """
    )
    @OptionGroup var connection: ConnectionOptions
    @OptionGroup var retry: RetryOptions
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
        let outcome = try await retry.send(connection) { client, idempotencyKey in
            try await client.txn(operations, idempotencyKey: idempotencyKey)
        }
        switch outcome {
        case .ack(let ack, let versions):
            var printed: JSONObject = [
                "seq": .integer(ack.seq), "versions": .object(versions.mapValues { .integer($0) }),
            ]
            if !ack.merged.isEmpty { printed["merged"] = .array(ack.merged.sorted().map { .string($0.string) }) }
            if ack.replayed { printed["replayed"] = .bool(true) }
            printJSON(.object(printed))
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
            let merge: Bool
            switch op["merge"] {
            case nil, .null?: merge = false
            case .string("fields")?: merge = true
            default: throw CommandFailure(ExitStatus.usage, "ops[\(index)]: \"merge\" can only be \"fields\"")
            }
            return TxnOperation(key: key, base: base, action: action, merge: merge)
        }
    }
}
