import ArgumentParser
import Foundation
import VersoClient
import VersoCore

/// The JSON printed for one version of a key's history.
func versionJSON(_ version: RecordVersion) -> JSONValue {
    var members: JSONObject = [
        "version": .integer(version.version), "seq": .integer(version.seq),
        "data": version.data.map { .object($0) } ?? .null, "deleted": .bool(version.deleted),
    ]
    members["at"] = version.at.map { .integer($0) }
    members["by"] = version.by.map { .string($0) }
    return .object(members)
}

struct History: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print a record's versions, newest first, one JSON line each.",
        discussion: """
            Each line is {"version","seq","at","by","data","deleted"}: at is when the version was committed \
            (milliseconds since the Unix epoch), by who wrote it (on a server that authenticates). The server keeps \
            the versions still in its change log and the last --keep-versions of each key beyond it; when the listing \
            reaches versions no longer kept, a last line {"gone":N} says that version N and every older one are gone.
            """
    )
    @OptionGroup var connection: ConnectionOptions
    @Option(help: "Print versions below this one only.") var before: Int64?
    @Option(help: "Print at most this many versions (default: every version kept).") var limit: Int?
    @Argument(help: "The key.") var key: String

    func validate() throws {
        if let before, before < 1 { throw ValidationError("--before must be at least 1") }
        if let limit, limit < 1 { throw ValidationError("--limit must be at least 1") }
    }

    func run() async throws {
        try await connection.withClient { client in
            var before = before
            var remaining = limit ?? .max
            while remaining > 0 {
                let page = try await client.history(
                    key,
                    before: before,
                    limit: min(remaining, RequestLimits.maxHistoryLimit)
                )
                for version in page.versions { printJSON(versionJSON(version)) }
                remaining -= page.versions.count
                if let gone = page.gone, remaining > 0 { printJSON(.object(["gone": .integer(gone)])) }
                guard let next = page.next else { break }
                before = next
            }
        }
    }
}

struct Restore: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write an old version of a record back as its newest version.",
        discussion: """
            Reads VERSION from the record's history and writes its data back as a normal put on the current version, \
            so it makes a new version (printed as an ack), and exits 3 with the current record if someone wrote the \
            record in between. A version the server no longer keeps exits 4; a version that was a deletion cannot \
            be restored (delete the record instead).
            """
    )
    @OptionGroup var connection: ConnectionOptions
    @OptionGroup var retry: RetryOptions
    @Argument(help: "The key.") var key: String
    @Argument(help: "The version to restore.") var version: Int64

    func validate() throws {
        if version < 1 { throw ValidationError("versions start at 1") }
    }

    func run() async throws {
        let outcome = try await retry.send(connection) { client, idempotencyKey in
            try await client.restore(key, version: version, idempotencyKey: idempotencyKey)
        }
        try report(key, outcome)
    }
}
