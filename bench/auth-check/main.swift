// Measures what the server does per request to check access (Protocol.md 2.1), on the same
// public functions the connection calls, in a loop: look the token up (--auth tokens) or
// compare the signed token's exp with the clock (--auth jwt), then find a rule that allows the
// right on the key. Without --auth the connection acts under `AccessRules.everything`.
//
//   swift build -c release --product verso-auth-bench && .build/release/verso-auth-bench
//
// Prints nanoseconds of process CPU per check for each case, the median of 7 rounds of
// 2,000,000 checks (BENCHMARKS.md, "The cost of access checks").
import CoreFoundation
import Foundation
import Logging
import VersoCore
import VersoServer

/// CPU time this process has used, in nanoseconds.
func processCPUNanoseconds() -> UInt64 {
    var spec = timespec()
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &spec)
    return UInt64(spec.tv_sec) * 1_000_000_000 + UInt64(spec.tv_nsec)
}

/// Median CPU nanoseconds per call of `check` over `rounds` rounds of `iterations` calls.
@MainActor
func measure(_ name: String, iterations: Int = 2_000_000, rounds: Int = 7, _ check: () -> Bool) {
    var perCheck: [Double] = []
    var allowed = 0
    for _ in 0..<rounds {
        let start = processCPUNanoseconds()
        for _ in 0..<iterations where check() { allowed += 1 }
        perCheck.append(Double(processCPUNanoseconds() - start) / Double(iterations))
    }
    precondition(allowed == iterations * rounds, "\(name): a check that should allow refused")
    let sorted = perCheck.sorted()
    let rounded = sorted.map { String(format: "%.1f", $0) }.joined(separator: ", ")
    print(
        "\(name.padding(toLength: 48, withPad: " ", startingAt: 0)) median \(String(format: "%6.1f", sorted[rounds / 2])) ns  (rounds: \(rounded))"
    )
}

// Five rules, the one that matches last, as in the end-to-end measurement; 1,000 tokens listed.
let rules = AccessRules([
    AccessRule(prefix: "archive/", rights: [.read]),
    AccessRule(prefix: "inbox/", rights: [.write]),
    AccessRule(prefix: "notes/shared/", rights: [.read]),
    AccessRule(prefix: "teams/blue/", rights: [.read, .write]),
    AccessRule(prefix: "bench/", rights: [.read, .write]),
])
let ruleJSON = rules.rules.map { rule in
    #"{"prefix":"\#(rule.prefix)","allow":[\#(rule.rights.sorted().map { "\"\($0.rawValue)\"" }.joined(separator: ","))]}"#
}.joined(separator: ",")
let entries = (0..<1_000).map {
    #"{"token":"token-\#($0)-0123456789abcdef","user":"user\#($0)","rules":[\#(ruleJSON)]}"#
}
let file = FileManager.default.temporaryDirectory.appendingPathComponent("verso-auth-bench-\(UUID().uuidString).json")
try Data(#"{"tokens":[\#(entries.joined(separator: ","))]}"#.utf8).write(to: file)
defer { try? FileManager.default.removeItem(at: file) }
var logger = Logger(label: "verso.auth-bench")
logger.logLevel = .critical
let tokens = try AccessTokens(path: file.path, logger: logger)
let token = "token-500-0123456789abcdef"
let identity = tokens.identity(for: token)!
let expires = Date().addingTimeInterval(3600)
let keys = (0..<64).map { "bench/key-\($0)" }
var next = 0
@MainActor
func key() -> String {
    next = (next + 1) & 63
    return keys[next]
}

measure("no --auth (AccessRules.everything)") { AccessRules.everything.allows(.write, on: key()) }
measure("--auth tokens (lookup, 5 rules, last matches)") {
    guard let identity = tokens.identity(for: token) else { return false }
    return identity.rules.allows(.write, on: key())
}
measure("--auth jwt (exp against the clock, 5 rules)") {
    guard Date() < expires else { return false }
    return identity.rules.allows(.write, on: key())
}
