import Foundation
import Testing
import VersoCore
import VersoTesting
import VersoWire

@Suite("presence: who else has a key open, live and never stored (Protocol.md 5.1)")
struct PresenceTests {
    /// Sets `client`'s presence on `key` and expects the echo.
    @discardableResult
    private func setPresence(_ client: TestClient, _ key: String, _ state: String) async throws -> JSONValue {
        let reply = try await client.request(#"{"type":"presence","rid":"p","key":"\#(key)","state":\#(state)}"#)
        #expect(reply.type == "presence" && reply["rid"]?.str == "p" && reply["sub"] == nil, "\(reply.encodedString)")
        return reply
    }

    @Test(
        "a presence change reaches the other connections subscribed to the key or a prefix of it, not the one that set it; the reply echoes it with the session"
    )
    func fanOut() async throws {
        try await TestServer.with { server in
            try await TestClient.with(url: server.url) { ann in
                try await TestClient.with(url: server.url) { bob in
                    try await TestClient.with(url: server.url) { carol in
                        let key = uniqueKey("doc")
                        let hello = try await ann.request(#"{"type":"hello","client":"ann-laptop"}"#)
                        let session = try #require(hello["session"]?.str)
                        let bySub = try await bob.request(#"{"type":"subscribe","keys":["\#(key)"]}"#)
                        let prefix = String(key.split(separator: "/")[0]) + "/"
                        let byPrefix = try await carol.request(#"{"type":"subscribe","prefix":"\#(prefix)"}"#)
                        _ = try await ann.request(#"{"type":"subscribe","keys":["\#(key)"]}"#)
                        let echo = try await setPresence(ann, key, #"{"field":"title"}"#)
                        #expect(echo["session"]?.str == session && echo["client"]?.str == "ann-laptop")
                        #expect(echo["state"] == .object(["field": .string("title")]))
                        for (client, subscribed) in [(bob, bySub), (carol, byPrefix)] {
                            let seen = try await client.next()
                            #expect(
                                seen.type == "presence" && seen["sub"] == subscribed["sub"],
                                "\(seen.encodedString)"
                            )
                            #expect(seen["key"]?.str == key && seen["session"]?.str == session)
                            #expect(seen["client"]?.str == "ann-laptop" && seen["state"] == echo["state"])
                        }
                        #expect(try await barrier(ann).isEmpty, "a connection is not sent its own presence")
                        // Setting the same state again is answered but sent to no one.
                        _ = try await setPresence(ann, key, #"{"field":"title"}"#)
                        #expect(try await barrier(bob).isEmpty, "an unchanged presence sent again")
                        // Cleared with null.
                        _ = try await setPresence(ann, key, "null")
                        let cleared = try await bob.next()
                        #expect(cleared.type == "presence" && cleared["state"] == .null, "\(cleared.encodedString)")
                        #expect(try await barrier(bob).isEmpty)
                    }
                }
            }
        }
    }

    @Test("a subscribe is followed by the current presence on its keys, after its snapshots")
    func currentAfterSubscribe() async throws {
        try await TestServer.with { server in
            try await TestClient.with(url: server.url) { ann in
                try await TestClient.with(url: server.url) { bob in
                    let key = uniqueKey("doc")
                    try await put(ann, key, base: 0, #"{"title":"x"}"#)
                    try await setPresence(ann, key, #"{"field":"body"}"#)
                    try await setPresence(ann, uniqueKey("elsewhere"), #"{}"#)
                    let subscribed = try await bob.request(#"{"type":"subscribe","keys":["\#(key)"]}"#)
                    #expect(subscribed["snapshots"]?.int == 1)
                    let snapshot = try await bob.next()
                    #expect(snapshot.type == "snapshot", "\(snapshot.encodedString)")
                    let presence = try await bob.next()
                    #expect(presence.type == "presence" && presence["key"]?.str == key, "\(presence.encodedString)")
                    #expect(presence["state"] == .object(["field": .string("body")]))
                    #expect(try await barrier(bob).isEmpty, "presence on other keys is not sent")
                }
            }
        }
    }

    @Test("closing a connection clears all its presence: subscribers see state null")
    func clearedOnClose() async throws {
        try await TestServer.with { server in
            try await TestClient.with(url: server.url) { bob in
                let key = uniqueKey("doc")
                _ = try await bob.request(#"{"type":"subscribe","keys":["\#(key)"]}"#)
                var session: String?
                try await TestClient.with(url: server.url) { ann in
                    session = try await setPresence(ann, key, #"{"n":1}"#)["session"]?.str
                    #expect(try await bob.next()["state"] == .object(["n": .number("1")]))
                }
                let gone = try await bob.next()
                #expect(gone.type == "presence" && gone["state"] == .null && gone["session"]?.str == session)
                // A later subscriber sees no one.
                try await TestClient.with(url: server.url) { carol in
                    let subscribed = try await carol.request(#"{"type":"subscribe","keys":["\#(key)"]}"#)
                    #expect(subscribed.type == "subscribed")
                    #expect(try await barrier(carol).isEmpty)
                }
            }
        }
    }

    @Test(
        "presence limits: a state over 1 KiB is too_large, more than 32 keys per connection too_large, a state not an object bad_request; each changes nothing"
    )
    func limits() async throws {
        try await TestServer.with { server in
            try await TestClient.with(url: server.url) { ann in
                let big = #"{"x":""# + String(repeating: "a", count: 1020) + #""}"#
                let tooBig = try await ann.request(#"{"type":"presence","key":"k","state":\#(big)}"#)
                #expect(tooBig["code"]?.str == "too_large", "\(tooBig.encodedString)")
                for bad in [#""state":[1]"#, #""state":"x""#, ""] {
                    let reply = try await ann.request(
                        #"{"type":"presence","key":"k"\#(bad.isEmpty ? "" : ",")\#(bad)}"#
                    )
                    #expect(reply["code"]?.str == "bad_request", "\(bad): \(reply.encodedString)")
                }
                let prefix = uniqueKey("many")
                for index in 0..<32 { try await setPresence(ann, "\(prefix)/\(index)", "{}") }
                let over = try await ann.request(#"{"type":"presence","key":"\#(prefix)/32","state":{}}"#)
                #expect(over["code"]?.str == "too_large", "\(over.encodedString)")
                // Changing a key it has presence on, or clearing one, is still fine; then a new key fits.
                try await setPresence(ann, "\(prefix)/0", #"{"a":1}"#)
                try await setPresence(ann, "\(prefix)/1", "null")
                try await setPresence(ann, "\(prefix)/32", "{}")
                // Past 10 a second the changes wait (coalesced): a subscriber sees the present
                // state, then the changes still waiting, until all 32 keys but /1 show.
                try await TestClient.with(url: server.url) { bob in
                    _ = try await bob.request(#"{"type":"subscribe","prefix":"\#(prefix)/"}"#)
                    var shown: [String: JSONValue] = [:]
                    while shown.count != 32 || shown["\(prefix)/32"] == nil || shown["\(prefix)/1"] != nil {
                        let message = try await bob.next()
                        let key = try #require(message["key"]?.str)
                        shown[key] = message["state"] == .null ? nil : message["state"]
                    }
                    #expect(shown["\(prefix)/0"] == .object(["a": .number("1")]))
                }
            }
        }
    }

    @Test(
        "past 10 changes a second a connection's presence changes are coalesced: subscribers get fewer, ending with the latest state"
    )
    func coalesced() async throws {
        try await TestServer.with { server in
            try await TestClient.with(url: server.url) { ann in
                try await TestClient.with(url: server.url) { bob in
                    let key = uniqueKey("doc")
                    _ = try await bob.request(#"{"type":"subscribe","keys":["\#(key)"]}"#)
                    let started = ContinuousClock.now
                    for index in 1...100 {
                        try await ann.send(#"{"type":"presence","key":"\#(key)","state":{"n":\#(index)}}"#)
                    }
                    for _ in 1...100 { #expect(try await ann.next().type == "presence") }
                    var received: [Int64] = []
                    while received.last != 100 {
                        let message = try await bob.next(timeout: .seconds(10))
                        received.append(try #require(message["state"]?["n"]?.int, "\(message.encodedString)"))
                    }
                    let seconds = Double((ContinuousClock.now - started).components.seconds) + 1
                    #expect(received.count <= 10 + Int(seconds * 10) + 1, "\(received.count) in \(seconds) s")
                    #expect(received == received.sorted(), "in the order set")
                    #expect(received.count < 100)
                    try await Task.sleep(for: .milliseconds(300))
                    #expect(try await barrier(bob).isEmpty, "nothing after the latest")
                }
            }
        }
    }
}
