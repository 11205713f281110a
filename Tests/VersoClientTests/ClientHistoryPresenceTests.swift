import Foundation
import Testing
import VersoClient
import VersoCore
import VersoServer
import VersoTesting
import VersoWire

/// A client of the test server at `url`, quick to reconnect.
private func configuration(_ url: String, name: String? = nil) -> VersoClientConfiguration {
    var configuration = VersoClientConfiguration(
        url: url,
        compression: false,
        requestTimeout: .seconds(30),
        initialBackoff: .milliseconds(50),
        maxBackoff: .milliseconds(200),
        clientName: name
    )
    configuration.connectTimeout = .seconds(8)
    return configuration
}

/// The next presence event of `stream`, skipping the start of the subscription.
private func nextPresence(
    _ iterator: inout AsyncThrowingStream<SubscriptionEvent, any Error>.Iterator
) async throws -> Presence? {
    while let event = try await iterator.next() {
        if case .presence(let presence) = event { return presence }
    }
    return nil
}

@Suite("Swift client: history, restore and presence (Protocol.md 3.9, 5.1)")
struct ClientHistoryPresenceTests {
    @Test(
        "history pages through a key's versions newest first with at; restore writes an old version back as a new version on the current one (a deleted key too); a version not kept is not_found, a deletion is refused"
    )
    func historyAndRestore() async throws {
        try await TestServer.with { server in
            try await VersoClient.with(configuration(server.url)) { client in
                for (base, title) in ["one", "two", "three"].enumerated() {
                    _ = try await client.put("h/1", base: Int64(base), data: ["title": .string(title)])
                }
                let first = try await client.history("h/1", limit: 2)
                #expect(first.versions.map(\.version) == [3, 2] && first.next == 2 && first.gone == nil)
                #expect(first.versions.allSatisfy { $0.at != nil && $0.by == nil })
                let rest = try await client.history("h/1", before: first.next, limit: 2)
                #expect(rest.versions.map(\.version) == [1] && rest.next == nil)
                #expect(rest.versions.first?.data == ["title": .string("one")])

                #expect(try await client.restore("h/1", version: 1) == .ack(version: 4, seq: 4))
                #expect(
                    try await client.get("h/1")
                        == .found(Record(key: "h/1", version: 4, data: ["title": .string("one")]))
                )
                do {
                    _ = try await client.restore("h/1", version: 9)
                    Issue.record("restored a version that never existed")
                } catch let error as VersoClientError {
                    #expect(error.code == .notFound)
                }
                do {
                    _ = try await client.history("h/none")
                    Issue.record("history of a key that never existed")
                } catch let error as VersoClientError {
                    #expect(error.code == .notFound)
                }
                _ = try await client.delete("h/1", base: 4)
                #expect(
                    try await client.restore("h/1", version: 2) == .ack(version: 6, seq: 6),
                    "restores a deleted key"
                )
                do {
                    _ = try await client.restore("h/1", version: 5)
                    Issue.record("restored a deletion")
                } catch let error as VersoClientError {
                    #expect(error.kind == .invalidArgument)
                }
            }
        }
    }

    @Test(
        "presence set by one client reaches another's subscription with its name and state, is set again after a reconnect, and ends when the client closes"
    )
    func presence() async throws {
        try await TestServer.with { server in
            try await VersoClient.with(configuration(server.url, name: "watcher")) { watcher in
                let stream = try await watcher.subscribe(.keys(["p/1"]))
                var events = stream.makeAsyncIterator()
                try await CuttingProxy.with(to: server.port) { proxy, port in
                    try await VersoClient.with(configuration("ws://127.0.0.1:\(port)/v1/ws", name: "ann")) { ann in
                        let echo = try await ann.setPresence("p/1", state: ["field": .string("title")])
                        #expect(echo.client == "ann" && echo.sub == nil)
                        let seen = try #require(try await nextPresence(&events))
                        #expect(seen.client == "ann" && seen.state == ["field": .string("title")])
                        #expect(seen.session == ann.session)
                        // The connection drops: the server clears the presence; the client sets it again.
                        let firstSession = ann.session
                        proxy.arm(.request(containing: #""type":"get""#))
                        _ = try? await ann.get("p/1")
                        let left = try #require(try await nextPresence(&events))
                        #expect(left.session == firstSession && left.state == nil)
                        let back = try #require(try await nextPresence(&events))
                        #expect(back.client == "ann" && back.state == ["field": .string("title")])
                        #expect(back.session != firstSession)
                    }
                }
                let closed = try #require(try await nextPresence(&events))
                #expect(closed.client == "ann" && closed.state == nil)
            }
        }
    }
}
