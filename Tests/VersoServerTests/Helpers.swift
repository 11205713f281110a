import Foundation
import Testing
import VersoClient
import VersoCore
import VersoTesting
import VersoWire

extension JSONValue {
    var str: String? { stringValue }
    var int: Int64? { integerValue }
    var type: String? { self["type"]?.stringValue }
}

/// Both transports every live rule is checked over.
let compressionModes = [true, false]

/// A key no other test uses.
func uniqueKey(_ prefix: String = "k") -> String { "\(prefix)/\(UUID().uuidString.prefix(8))" }

/// Polls `condition` until it holds; fails the test, naming `what`, if it does not within `timeout`.
func waitUntil(_ what: String = "a condition", timeout: Duration = .seconds(10), _ condition: () -> Bool) async throws {
    let deadline = ContinuousClock.now + timeout
    while !condition() {
        guard ContinuousClock.now < deadline else { throw TestFailure("\(what) did not happen within \(timeout)") }
        try await Task.sleep(for: .milliseconds(5))
    }
}

/// Writes a throwaway record on `client` and returns every message that arrived before its ack.
///
/// The engine publishes each commit's updates before it decides the next batch, so an update
/// for any write acknowledged earlier reaches this connection before the barrier's ack.
func barrier(_ client: TestClient) async throws -> [JSONValue] {
    let key = uniqueKey("barrier")
    try await client.send(#"{"type":"put","rid":"barrier","key":"\#(key)","base":0,"data":{}}"#)
    var before: [JSONValue] = []
    while true {
        let message = try await client.next()
        if message["rid"] == .string("barrier") {
            #expect(message.type == "ack")
            return before
        }
        before.append(message)
    }
}

/// Puts `data` at `key` on base `base` and expects an ack; returns the new version.
@discardableResult
func put(_ client: TestClient, _ key: String, base: Int64, _ data: String = "{}") async throws -> Int64 {
    let reply = try await client.request(#"{"type":"put","key":"\#(key)","base":\#(base),"data":\#(data)}"#)
    #expect(reply.type == "ack", "put \(key) base \(base): \(reply.encodedString)")
    return reply["version"]?.int ?? -1
}
