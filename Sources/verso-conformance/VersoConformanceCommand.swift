import ArgumentParser
import Foundation
import VersoConformance
import VersoCore

/// `verso-conformance URL [--only PATTERN] [--json] [--token T] [--restricted-token T]`: checks a
/// Verso server against Protocol.md.
@main
struct VersoConformanceCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "verso-conformance",
        abstract: "Check a Verso server against Protocol.md, over the wire.",
        discussion: """
            Runs one case per rule and message of Protocol.md against the server at URL and prints \
            one line per case (PASS, FAIL with what differed, or SKIP with why it cannot be checked \
            over the wire), then a last line "N passed, N failed". Exits non-zero when a case fails.

            The suite is safe on a server that holds other people's data: it creates keys only \
            under conformance/<random>/, deletes every one of them at the end (they stay as \
            tombstones), and compares seqs only relatively. It writes about a thousand small \
            records and sends a few messages of 2 MiB + 1 bytes, which a server with the default \
            1 MiB limit refuses.

            Against a server started with --auth, give --token (or VERSO_TOKEN): a token that may \
            read and write every key. The section 2.1 cases (access rules) run when --token is \
            given; those that check refusals also need --restricted-token (or \
            VERSO_RESTRICTED_TOKEN): a token that may read and write under conformance/ only. \
            With it, one case also writes one key under verso-conformance-outside/<random>/ \
            (with --token) and deletes it.
            """
    )

    @Argument(help: "The server's WebSocket URL, for example ws://127.0.0.1:7070/v1/ws.")
    var url: String

    @Option(
        help:
            "Run only the cases whose name contains PATTERN, or matches it as a regular expression (for example \"^3\\.4\" or \"subscribe\")."
    )
    var only: String?

    @Flag(help: "Print one JSON object (url, prefix, passed, failed, skipped, milliseconds, cases) instead of lines.")
    var json = false

    @Option(
        help:
            "An access token that may read and write every key, for a server started with --auth (default: $VERSO_TOKEN). Prefer the variable: a flag shows in the process list."
    )
    var token: String?

    @Option(
        help:
            "An access token that may read and write under conformance/ only, for the access-rule cases (default: $VERSO_RESTRICTED_TOKEN)."
    )
    var restrictedToken: String?

    func run() async throws {
        let environment = ProcessInfo.processInfo.environment
        let tokens = SuiteTokens(
            primary: token ?? environment["VERSO_TOKEN"].flatMap { $0.isEmpty ? nil : $0 },
            restricted: restrictedToken ?? environment["VERSO_RESTRICTED_TOKEN"].flatMap { $0.isEmpty ? nil : $0 }
        )
        let runner = try ConformanceRunner(url: url, only: only, tokens: tokens)
        let json = json
        let report = try await runner.run { result in
            guard !json else { return }
            print(result.line)
            fflush(nil)  // every line as soon as its case ends, even into a pipe
        }
        print(json ? report.json.encodedString : report.summaryLine)
        if report.failed > 0 { throw ExitCode.failure }
    }
}
