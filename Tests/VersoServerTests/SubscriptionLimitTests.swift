import Testing
import VersoClient
import VersoCore
import VersoEngine
import VersoServer
import VersoTesting
import VersoWire

@Suite("Protocol.md 1.1: subscriptions per connection are limited")
struct SubscriptionLimitTests {
    @Test("one subscription past the limit gets too_large and changes nothing; unsubscribing makes room again")
    func limit() async throws {
        let limit = RequestLimits.maxSubscriptionsPerConnection
        try await TestServer.with { server in
            try await TestClient.with(url: server.url, compression: false) { client in
                for index in 0..<limit {
                    try await client.send(#"{"type":"subscribe","rid":\#(index),"prefix":"idle/\#(index)/"}"#)
                }
                var subs: [Int64] = []
                for index in 0..<limit {
                    let reply = try await client.next()
                    #expect(reply.type == "subscribed" && reply["rid"]?.int == Int64(index), "\(reply.encodedString)")
                    if let sub = reply["sub"]?.int { subs.append(sub) }
                }
                #expect(subs.count == limit)
                let refused = try await client.request(#"{"type":"subscribe","rid":"over","keys":["hot/1"]}"#)
                #expect(refused.type == "error")
                #expect(refused["code"]?.str == "too_large")
                #expect(refused["rid"] == .string("over"))
                #expect(server.server.engine.subscriptionCount == limit)
                // Nothing was subscribed: a write to the key it named sends no update.
                let quiet = try await barrier(client)
                #expect(quiet.isEmpty)
                try await put(client, "hot/1", base: 0)
                #expect(try await barrier(client).isEmpty)
                let unsubscribed = try await client.request(#"{"type":"unsubscribe","sub":\#(subs[0])}"#)
                #expect(unsubscribed.type == "unsubscribed")
                let again = try await client.request(#"{"type":"subscribe","keys":["hot/1"]}"#)
                #expect(again.type == "subscribed", "\(again.encodedString)")
            }
            // The limit is per connection: another connection may subscribe.
            try await TestClient.with(url: server.url, compression: false) { other in
                let reply = try await other.request(#"{"type":"subscribe","prefix":""}"#)
                #expect(reply.type == "subscribed")
            }
        }
    }
}
