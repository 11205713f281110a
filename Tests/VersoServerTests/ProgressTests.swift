import Testing
import VersoCore
import VersoTesting
import VersoWire

@Suite("progress bookmarks (Protocol.md 5, \"Progress bookmarks\")")
struct ProgressTests {
    @Test(
        "an idle subscription asking for progress gets bookmarks carrying the last seq, after the updates it was sent; resuming from one replays nothing"
    )
    func bookmarks() async throws {
        try await TestServer.with { server in
            try await TestClient.with(url: server.url) { writer in
                try await TestClient.with(url: server.url) { watcher in
                    let prefix = uniqueKey("quiet") + "/"
                    let subscribed = try await watcher.request(
                        #"{"type":"subscribe","prefix":"\#(prefix)","progress":1}"#
                    )
                    #expect(subscribed.type == "subscribed", "\(subscribed.encodedString)")
                    let sub = try #require(subscribed["sub"])
                    try await put(writer, prefix + "a", base: 0)
                    var lastSeq: Int64 = 0
                    for index in 0..<3 {
                        let ack = try await writer.request(
                            #"{"type":"put","key":"busy/\#(index)","base":0,"data":{}}"#
                        )
                        lastSeq = try #require(ack["seq"]?.int)
                    }
                    let update = try await watcher.next()
                    #expect(update.type == "update" && update["key"]?.str == prefix + "a")
                    // Bookmarks follow the update, their seqs never going back, until one names
                    // the last write (on a slow machine one may come between the writes).
                    var seen: Int64 = 0
                    while seen < lastSeq {
                        let bookmark = try await watcher.next(timeout: .seconds(10))
                        #expect(bookmark.type == "progress" && bookmark["sub"] == sub, "\(bookmark.encodedString)")
                        let seq = try #require(bookmark["seq"]?.int)
                        #expect(seq >= seen && seq <= lastSeq, "\(bookmark.encodedString)")
                        seen = seq
                    }
                    let again = try await watcher.next(timeout: .seconds(10))
                    #expect(again.type == "progress" && again["seq"]?.int == lastSeq, "\(again.encodedString)")

                    // Resuming from the bookmark: nothing replayed, no reset.
                    try await TestClient.with(url: server.url) { resumed in
                        let reply = try await resumed.request(
                            #"{"type":"subscribe","prefix":"\#(prefix)","since":\#(lastSeq)}"#
                        )
                        #expect(reply.type == "subscribed" && reply["reset"] == nil && reply["seq"]?.int == lastSeq)
                        #expect(try await barrier(resumed).isEmpty, "nothing after the bookmark matched")
                    }
                }
            }
        }
    }

    @Test("a subscription without progress gets no bookmark")
    func noneUnasked() async throws {
        try await TestServer.with { server in
            try await TestClient.with(url: server.url) { watcher in
                let subscribed = try await watcher.request(#"{"type":"subscribe","prefix":"\#(uniqueKey())/"}"#)
                #expect(subscribed.type == "subscribed")
                try await Task.sleep(for: .milliseconds(2500))
                #expect(try await barrier(watcher).isEmpty)
            }
        }
    }

    @Test("progress must be whole seconds from 1 to 3600; anything else is bad_request and subscribes nothing")
    func badProgress() async throws {
        try await TestServer.with { server in
            try await TestClient.with(url: server.url) { client in
                for value in ["0", "3601", "-1", "1.5", "\"60\"", "true"] {
                    let reply = try await client.request(#"{"type":"subscribe","prefix":"p/","progress":\#(value)}"#)
                    #expect(
                        reply.type == "error" && reply["code"]?.str == "bad_request",
                        "\(value): \(reply.encodedString)"
                    )
                }
                let fine = try await client.request(#"{"type":"subscribe","prefix":"p/","progress":3600}"#)
                #expect(fine.type == "subscribed" && fine["sub"]?.int == 1, "the refused ones took no id")
            }
        }
    }
}
