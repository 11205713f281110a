import VersoCore

/// A conformance case's expectation that the server did not meet: what was expected and what
/// arrived instead. Thrown by the checks inside a case; the runner reports its description.
public struct ConformanceFailure: Error, Sendable, CustomStringConvertible {
    /// What the rule expected and what the server did.
    public let description: String

    /// A failure described in the words of the rule that was broken.
    public init(_ description: String) {
        self.description = description
    }

    /// `what` should have been `expected` but was `actual`.
    public static func mismatch(_ what: String, expected: String, actual: String) -> ConformanceFailure {
        ConformanceFailure("\(what): expected \(expected), got \(actual)")
    }
}

/// Thrown by a case that cannot be checked against this server (for example forced writes on
/// a server that refuses them); the runner reports the case as skipped with `reason`.
public struct ConformanceSkip: Error, Sendable, CustomStringConvertible {
    public let reason: String

    /// A skip because of `reason`.
    public init(_ reason: String) {
        self.reason = reason
    }

    public var description: String { reason }
}

/// Why a run could not start.
public struct ConformanceError: Error, Sendable, CustomStringConvertible {
    private enum Kind: Sendable {
        case invalidURL(String, String)
        case unreachable(String, String)
        case refused(String, String)
        case noCaseMatches(String)
    }

    private let kind: Kind

    /// `url` is not a `ws://HOST:PORT/PATH` URL.
    public static func invalidURL(_ url: String, _ reason: String) -> ConformanceError {
        ConformanceError(kind: .invalidURL(url, reason))
    }

    /// No WebSocket connection to `url` could be made, or it did not answer `hello`.
    public static func unreachable(_ url: String, _ underlying: any Error) -> ConformanceError {
        ConformanceError(kind: .unreachable(url, "\(underlying)"))
    }

    /// The server answered, but refuses the suite's requests (`unauthorized`: it runs with
    /// `--auth` and the suite has no valid token, or `forbidden`: the token may not write
    /// under `conformance/`).
    public static func refused(_ url: String, _ reply: String) -> ConformanceError {
        ConformanceError(kind: .refused(url, reply))
    }

    /// The `--only` pattern selects no case.
    public static func noCaseMatches(_ pattern: String) -> ConformanceError {
        ConformanceError(kind: .noCaseMatches(pattern))
    }

    public var description: String {
        switch kind {
        case .invalidURL(let url, let reason):
            "\(url) is not a Verso URL (\(reason)); give one like ws://127.0.0.1:7070/v1/ws"
        case .unreachable(let url, let reason):
            "cannot talk to a Verso server at \(url): \(reason); is the server running, and is the URL its WebSocket path?"
        case .refused(let url, let reply):
            "the Verso server at \(url) refuses the suite's requests (\(reply)); a server started with --auth needs --token (or VERSO_TOKEN) with a token that may read and write every key"
        case .noCaseMatches(let pattern):
            "no case name contains or matches \"\(pattern)\"; run without --only to see every case name"
        }
    }
}

// The checks below, and the others that throw ConformanceFailure (expectType, expectError,
// Peer.ack, Update.init, expectConflict), are `throws`, not `throws(ConformanceFailure)`, on
// purpose: with typed throws, each check inlined into an async case turns the two-word error
// into `any Error` there, and Swift 6.3.1's LLVM sinks the store into that error's box and the
// store that clears the swifterror slot into one store through a phi (SimplifyCFG; the kind of
// bug in https://github.com/llvm/llvm-project/issues/59284). Coroutine splitting then crashes
// with signal 11, so `swift build -c release` failed (issue 11). .ci/run builds release to
// catch a return of it.

/// Fails with `message` unless `condition` holds.
func expect(_ condition: Bool, _ message: @autoclosure () -> String) throws {
    if !condition { throw ConformanceFailure(message()) }
}

/// Fails unless `actual` equals `expected`, naming `what`.
func expectEqual<T: Equatable>(_ actual: T, _ expected: T, _ what: @autoclosure () -> String) throws {
    if actual != expected {
        throw ConformanceFailure.mismatch(what(), expected: describe(expected), actual: describe(actual))
    }
}

/// Unwraps `value` or fails with `message`.
func require<T>(_ value: T?, _ message: @autoclosure () -> String) throws -> T {
    guard let value else { throw ConformanceFailure(message()) }
    return value
}

/// A short readable form of a value for failure messages: JSON as its compact text, cut at
/// 300 characters.
func describe(_ value: some Any) -> String {
    let text: String
    switch value {
    case let json as JSONValue: text = json.encodedString
    case let json as JSONValue?: text = json.map(\.encodedString) ?? "nothing"
    case let string as String: text = "\"\(string)\""
    default: text = "\(value)"
    }
    return text.count > 300 ? text.prefix(300) + "… (\(text.utf8.count) bytes)" : text
}
