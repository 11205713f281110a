import Foundation
import Synchronization
import Testing
import VersoClient
import VersoCore
@testable import VersoEngine
import VersoTesting
import VersoWire

/// NFC "é" (U+00E9) and NFD "e" + U+0301: canonically equivalent (Swift's `String ==` calls them
/// equal), different bytes, so different keys and member names (Protocol.md section 2).
private let nfc = "\u{E9}"
private let nfd = "e\u{301}"

private func bytes(_ text: String?) -> [UInt8]? { text.map { Array($0.utf8) } }

/// Collects what the hub sends.
private final class HubSink: MessageSink {
    let messages = Mutex<[JSONValue]>([])
    func send(_ message: [UInt8]) {
        messages.withLock { $0.append(try! message.withUnsafeBufferPointer { try JSONParser.parse($0) }) }
    }
    var keys: [[UInt8]] { messages.withLock { $0 }.compactMap { bytes($0["key"]?.stringValue) } }
}

@Suite("Protocol.md section 2: keys that differ only by Unicode normalization are distinct")
struct UnicodeKeyTests {
    // MARK: The hub, without I/O

    @Test("hub: a key subscription gets only changes to its own bytes")
    func hubKeys() {
        let hub = SubscriptionHub()
        let composed = HubSink(), decomposed = HubSink()
        hub.activate(hub.register(.keys([BytewiseString(nfc)]), sink: composed), after: 0)
        hub.activate(hub.register(.keys([BytewiseString(nfd)]), sink: decomposed), after: 0)
        hub.publish([Change(seq: 1, key: nfd, version: 1, data: Array("{}".utf8))])
        hub.publish([Change(seq: 2, key: nfc, version: 1, data: Array("{}".utf8))])
        #expect(composed.keys == [Array(nfc.utf8)])
        #expect(decomposed.keys == [Array(nfd.utf8)])
    }

    @Test("hub: a prefix subscription registered after the other spelling's still gets its own changes, and only those")
    func hubPrefixes() {
        let hub = SubscriptionHub()
        let first = HubSink(), second = HubSink()
        let firstID = hub.register(.prefix("p/\(nfc)"), sink: first)
        hub.activate(firstID, after: 0)
        hub.activate(hub.register(.prefix("p/\(nfd)"), sink: second), after: 0)
        hub.publish([Change(seq: 1, key: "p/\(nfd)1", version: 1, data: Array("{}".utf8))])
        hub.publish([Change(seq: 2, key: "p/\(nfc)2", version: 1, data: Array("{}".utf8))])
        #expect(first.keys == [Array("p/\(nfc)2".utf8)])
        #expect(second.keys == [Array("p/\(nfd)1".utf8)])
        // Removing one leaves the other in place.
        #expect(hub.remove(firstID, ownedBy: first))
        hub.publish([Change(seq: 3, key: "p/\(nfd)3", version: 1, data: Array("{}".utf8))])
        #expect(second.keys.count == 2)
    }

    // MARK: Over the wire

    @Test("a subscriber of one spelling gets no update for a write to the other", arguments: compressionModes)
    func keySubscription(compression: Bool) async throws {
        try await TestServer.with { server in
            try await TestClient.with(url: server.url, compression: compression) { watcher in
                let subscribed = try await watcher.request(#"{"type":"subscribe","keys":["u/\#(nfc)"]}"#)
                #expect(subscribed.type == "subscribed")
                try await TestClient.with(url: server.url, compression: compression) { writer in
                    try await put(writer, "u/\(nfd)", base: 0, #"{"form":"nfd"}"#)
                    try await put(writer, "u/\(nfc)", base: 0, #"{"form":"nfc"}"#)
                }
                let update = try await watcher.next()
                #expect(update.type == "update")
                #expect(bytes(update["key"]?.str) == Array("u/\(nfc)".utf8))
                #expect(update["data"] == .object(["form": .string("nfc")]))
                let extra = try await barrier(watcher)
                #expect(extra.isEmpty, "updates for the other spelling: \(extra.map(\.encodedString))")
            }
        }
    }

    @Test(
        "a prefix subscriber registered second gets its own prefix's updates and not the other's",
        arguments: compressionModes
    )
    func prefixSubscriptions(compression: Bool) async throws {
        try await TestServer.with { server in
            try await TestClient.with(url: server.url, compression: compression) { composed in
                try await TestClient.with(url: server.url, compression: compression) { decomposed in
                    #expect(
                        try await composed.request(#"{"type":"subscribe","prefix":"p/\#(nfc)"}"#).type == "subscribed"
                    )
                    #expect(
                        try await decomposed.request(#"{"type":"subscribe","prefix":"p/\#(nfd)"}"#).type == "subscribed"
                    )
                    try await put(decomposed, "p/\(nfd)/1", base: 0)
                    try await put(composed, "p/\(nfc)/2", base: 0)
                    let toDecomposed = try await barrier(decomposed).filter { $0.type == "update" }
                    let toComposed = try await barrier(composed).filter { $0.type == "update" }
                    #expect(toDecomposed.map { bytes($0["key"]?.str) } == [Array("p/\(nfd)/1".utf8)])
                    #expect(toComposed.map { bytes($0["key"]?.str) } == [Array("p/\(nfc)/2".utf8)])
                }
            }
        }
    }

    @Test("a txn may name both spellings of a key: two records, two versions in the ack", arguments: compressionModes)
    func txnBothKeys(compression: Bool) async throws {
        try await TestServer.with { server in
            try await TestClient.with(url: server.url, compression: compression) { client in
                let reply = try await client.request(
                    #"""
                    {"type":"txn","ops":[{"op":"put","key":"t/\#(nfc)","base":0,"data":{"n":1}},{"op":"put","key":"t/\#(nfd)","base":0,"data":{"n":2}}]}
                    """#
                )
                #expect(reply.type == "ack", "\(reply.encodedString)")
                #expect(reply["versions"]?.objectValue?.count == 2)
                let composed = try await client.request(#"{"type":"get","key":"t/\#(nfc)"}"#)
                let decomposed = try await client.request(#"{"type":"get","key":"t/\#(nfd)"}"#)
                #expect(composed["data"] == .object(["n": .number("1")]))
                #expect(decomposed["data"] == .object(["n": .number("2")]))
                let duplicate = try await client.request(
                    #"""
                    {"type":"txn","ops":[{"op":"check","key":"t/\#(nfc)","base":1},{"op":"check","key":"t/\u00e9","base":1}]}
                    """#
                )
                #expect(duplicate["code"]?.str == "bad_request")
            }
        }
    }

    @Test("subscribe naming both spellings sends a snapshot of each", arguments: compressionModes)
    func subscribeBothKeys(compression: Bool) async throws {
        try await TestServer.with { server in
            try await TestClient.with(url: server.url, compression: compression) { client in
                try await put(client, "s/\(nfc)", base: 0, #"{"form":"nfc"}"#)
                try await put(client, "s/\(nfd)", base: 0, #"{"form":"nfd"}"#)
                let subscribed = try await client.request(#"{"type":"subscribe","keys":["s/\#(nfc)","s/\#(nfd)"]}"#)
                #expect(subscribed["snapshots"]?.int == 2)
                let first = try await client.next(), second = try await client.next()
                // In key order: NFD (65 CC 81) sorts before NFC (C3 A9).
                #expect(bytes(first["key"]?.str) == Array("s/\(nfd)".utf8))
                #expect(bytes(second["key"]?.str) == Array("s/\(nfc)".utf8))
                #expect(first["data"]?["form"] == .string("nfd"))
                #expect(second["data"]?["form"] == .string("nfc"))
            }
        }
    }

    @Test(
        "an object may hold both spellings of a member name, and a merge patch removes only the one it names",
        arguments: compressionModes
    )
    func memberNames(compression: Bool) async throws {
        try await TestServer.with { server in
            try await TestClient.with(url: server.url, compression: compression) { client in
                let key = uniqueKey("m")
                try await put(client, key, base: 0, #"{"\#(nfc)":"composed","\#(nfd)":"decomposed"}"#)
                try await client.send(#"{"type":"get","key":"\#(key)"}"#)
                let raw = try await client.nextText()
                #expect(
                    raw.utf8.elementsEqual(
                        #"{"type":"snapshot","key":"\#(key)","version":1,"data":{"\#(nfd)":"decomposed","\#(nfc)":"composed"}}"#
                            .utf8
                    ),
                    "\(raw)"
                )
                let patched = try await client.request(
                    #"{"type":"patch","key":"\#(key)","base":1,"patch":{"\#(nfc)":null}}"#
                )
                #expect(patched.type == "ack")
                let after = try await client.request(#"{"type":"get","key":"\#(key)"}"#)
                #expect(after["data"] == .object([BytewiseString(nfd): .string("decomposed")]))
            }
        }
    }

    @Test("the Swift client keeps both spellings apart: txn versions and a keys subscription")
    func swiftClient() async throws {
        try await TestServer.with { server in
            let configuration = VersoClientConfiguration(url: server.url, requestTimeout: .seconds(10))
            try await VersoClient.with(configuration) { client in
                let outcome = try await client.txn([
                    TxnOperation(key: "c/\(nfc)", base: 0, action: .put(["n": .integer(1)])),
                    TxnOperation(key: "c/\(nfd)", base: 0, action: .put(["n": .integer(2)])),
                ])
                guard case .ack(_, let versions) = outcome else {
                    Issue.record("expected an ack, got \(outcome)")
                    return
                }
                #expect(versions == [BytewiseString("c/\(nfc)"): 1, BytewiseString("c/\(nfd)"): 1])
                let stream = try await client.subscribe(
                    .keys([BytewiseString("c/\(nfc)"), BytewiseString("c/\(nfd)")])
                )
                var snapshots: [[UInt8]] = []
                for try await event in stream {
                    if case .snapshot(let record) = event { snapshots.append(Array(record.key.utf8)) }
                    if case .synced = event { break }
                }
                #expect(snapshots == [Array("c/\(nfd)".utf8), Array("c/\(nfc)".utf8)])
            }
        }
    }
}
