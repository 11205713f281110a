import Foundation
import Testing
import VersoClient
import VersoCore
import VersoServer
import VersoTesting
import VersoWire

/// Runs a test server on `port` over `directory` until `stop` yields; reports its port. If the
/// server cannot start, the port stream ends, so the test fails instead of waiting.
private func runServer(
    directory: String,
    port: Int,
    ports: AsyncStream<Int>.Continuation,
    stop: AsyncStream<Void>
) async throws {
    do {
        try await TestServer.with(dataDirectory: directory, configure: { $0.port = port }) { server in
            ports.yield(server.port)
            for await _ in stop { break }
        }
    } catch {
        ports.finish()
        throw error
    }
}

/// A client configuration for tests. A connection accepted in the last moments of an in-process
/// server's shutdown is closed without an answer to its upgrade (or its hello): the connect
/// timeout (8 s, time for a first upgrade while every suite starts its servers on two cores)
/// gives up on it well within the request timeout and the event log's wait, so the client
/// reconnects to the next server in time.
private func configuration(port: Int) -> VersoClientConfiguration {
    var configuration = VersoClientConfiguration(
        url: "ws://127.0.0.1:\(port)/v1/ws",
        requestTimeout: .seconds(30),
        initialBackoff: .milliseconds(500),
        maxBackoff: .seconds(1)
    )
    configuration.connectTimeout = .seconds(8)
    return configuration
}

/// Reads a subscription stream in a task of its own, so a test can wait for events with a
/// deadline instead of forever.
private final class EventLog: Sendable {
    private let events = Locked<[SubscriptionEvent]>([])
    private let cursor = Locked(0)
    private let end = Locked<String?>(nil)
    private let stamped = Locked(0)

    /// How many updates came with their commit time.
    var stampedUpdates: Int { stamped.withLock { $0 } }

    /// Reads the stream until it ends. Updates are kept without their commit time (`at`), which a
    /// test cannot know in advance; `stampedUpdates` counts those that had one.
    func read(_ stream: AsyncThrowingStream<SubscriptionEvent, any Error>) async {
        do {
            for try await event in stream {
                var kept = event
                if case .update(let key, let version, let seq, let data, let at, let by) = event {
                    if at != nil { stamped.withLock { $0 += 1 } }
                    kept = .update(key: key, version: version, seq: seq, data: data, by: by)
                }
                events.withLock { $0.append(kept) }
            }
            end.withLock { $0 = "the subscription ended" }
        } catch {
            end.withLock { $0 = "the subscription failed: \(error)" }
        }
    }

    /// The next `count` events, waiting at most `timeout` for them.
    func next(_ count: Int, timeout: Duration = .seconds(30)) async throws -> [SubscriptionEvent] {
        let deadline = ContinuousClock.now + timeout
        while true {
            let start = cursor.withLock { $0 }
            let available = events.withLock { Array($0.dropFirst(start).prefix(count)) }
            if available.count == count {
                cursor.withLock { $0 += count }
                return available
            }
            if let end = end.withLock({ $0 }) { throw TestFailure("\(end) after \(available)") }
            if ContinuousClock.now >= deadline {
                throw TestFailure("got \(available) and nothing more within \(timeout)")
            }
            try await Task.sleep(for: .milliseconds(5))
        }
    }
}

/// Runs `body` with a client that reaches `server` through a cutting proxy (uncompressed, so the
/// proxy can read it) and the events of its subscription to `prefix`, whose `.started` and
/// `.synced` (there are no records yet) have been read.
private func withProxiedSubscription(
    _ server: TestServer,
    prefix: String,
    configure: (inout VersoClientConfiguration) -> Void = { _ in },
    _ body: (CuttingProxy, VersoClient, EventLog) async throws -> Void
) async throws {
    try await CuttingProxy.with(to: server.port) { proxy, port in
        var proxied = configuration(port: port)
        proxied.compression = false
        configure(&proxied)
        try await VersoClient.with(proxied) { client in
            let events = EventLog()
            let stream = try await client.subscribe(.prefix(prefix))
            let reader = Task { await events.read(stream) }
            defer { reader.cancel() }
            #expect(try await events.next(2) == [.started(seq: 0, reset: false), .synced])
            try await body(proxy, client, events)
        }
    }
}

@Suite("Swift client library against a live server")
struct VersoClientTests {
    @Test("typed get, put, patch, delete, list and txn; conflicts carry the current record")
    func typedCalls() async throws {
        try await TestServer.with { server in
            try await VersoClient.with(configuration(port: server.port)) { client in
                #expect(try await client.get("c/a") == .missing)
                #expect(try await client.put("c/a", base: 0, data: ["n": .integer(1)]) == .ack(version: 1, seq: 1))
                guard case .conflict(let conflict) = try await client.put("c/a", base: 0, data: [:]) else {
                    Issue.record("expected a conflict"); return
                }
                #expect(conflict.version == 1)
                #expect(conflict.data == ["n": .integer(1)])
                #expect(try await client.patch("c/a", base: 1, patch: ["m": .bool(true)]) == .ack(version: 2, seq: 2))
                #expect(
                    try await client.get("c/a")
                        == .found(Record(key: "c/a", version: 2, data: ["n": .integer(1), "m": .bool(true)]))
                )
                let txn = try await client.txn([
                    TxnOperation(key: "c/b", base: 0, action: .put(["b": .integer(1)])),
                    TxnOperation(key: "c/a", base: 2, action: .check),
                ])
                #expect(txn == .ack(TxnAck(seq: 3), versions: ["c/b": 1, "c/a": 2]))
                let listed = try await client.listAll(prefix: "c/")
                #expect(listed.map(\.key) == ["c/a", "c/b"])
                #expect(try await client.delete("c/a", base: 2) == .ack(version: 3, seq: 4))
                #expect(try await client.get("c/a") == .deleted(version: 3))
                do {
                    _ = try await client.delete("c/a", base: 3)
                    Issue.record("expected not_found")
                } catch let error as VersoClientError {
                    #expect(error.code == .notFound)
                }
                do {
                    _ = try await client.put("c/a", base: nil, data: [:])
                    Issue.record("expected forbidden")
                } catch let error as VersoClientError {
                    #expect(error.code == .forbidden)
                }
            }
        }
    }

    @Test("a subscription starts with snapshots, says when it is synced, then delivers live updates")
    func subscription() async throws {
        try await TestServer.with { server in
            try await VersoClient.with(configuration(port: server.port)) { client in
                _ = try await client.put("s/a", base: 0, data: ["v": .integer(1)])
                let stream = try await client.subscribe(.prefix("s/"))
                let events = EventLog()
                try await withThrowingTaskGroup(of: Void.self) { group in
                    group.addTask { await events.read(stream) }
                    let start = try await events.next(3)
                    #expect(
                        start == [
                            .started(seq: 1, reset: false),
                            .snapshot(Record(key: "s/a", version: 1, data: ["v": .integer(1)])), .synced,
                        ]
                    )
                    _ = try await client.put("s/b", base: 0, data: [:])
                    #expect(try await events.next(1) == [.update(key: "s/b", version: 1, seq: 2, data: [:])])
                    #expect(events.stampedUpdates == 1, "an update says when it committed")
                    group.cancelAll()
                }
            }
        }
    }

    @Test(
        "a token in the configuration is sent at every connect; without it the server's unauthorized and forbidden come back as server errors"
    )
    func token() async throws {
        let directory = TestServer.makeDataDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let file = (directory as NSString).appendingPathComponent("tokens.json")
        let json =
            #"{"tokens":[{"token":"ann-0123456789","user":"ann","rules":[{"prefix":"mine/","allow":["read","write"]}]}]}"#
        try Data(json.utf8).write(to: URL(fileURLWithPath: file))
        try await TestServer.with(configure: { $0.authentication = .tokens(file: file) }) { server in
            var withToken = configuration(port: server.port)
            withToken.token = "ann-0123456789"
            try await VersoClient.with(withToken) { client in
                guard case .ack = try await client.put("mine/a", base: 0, data: ["n": .number("1")]) else {
                    Issue.record("the put was not acknowledged")
                    return
                }
                await #expect { _ = try await client.get("theirs/a") } throws: {
                    ($0 as? VersoClientError)?.kind == .server(.forbidden)
                }
            }
            try await VersoClient.with(configuration(port: server.port)) { client in
                await #expect { _ = try await client.get("mine/a") } throws: {
                    ($0 as? VersoClientError)?.kind == .server(.unauthorized)
                }
            }
        }
    }

    @Test(
        "a server that reads the upgrade request and closes without an answer fails the attempt after the connect timeout, for the typed and the wire client"
    )
    func unansweredUpgrade() async throws {
        try await SilentListener.with { port in
            var silent = configuration(port: port)
            silent.reconnect = false
            silent.connectTimeout = .seconds(1)
            let started = ContinuousClock.now
            do {
                try await VersoClient.with(silent) { _ in }
                Issue.record("expected cannotConnect")
            } catch let error as VersoClientError {
                #expect(error.kind == .cannotConnect)
                #expect(error.message.contains("no answer to the WebSocket upgrade"), "\(error)")
            }
            #expect(ContinuousClock.now - started < .seconds(8))
            await #expect { try await WireConnection.with(url: "ws://127.0.0.1:\(port)/v1/ws") { _ in } } throws: {
                "\($0)".contains("no answer to the WebSocket upgrade")
            }
        }
    }

    @Test("cannot connect is reported at once")
    func cannotConnect() async throws {
        let port = try await TestServer.with { $0.port }
        do {
            try await VersoClient.with(configuration(port: port)) { _ in }
            Issue.record("expected cannotConnect")
        } catch let error as VersoClientError {
            #expect(error.kind == .cannotConnect)
        }
    }

    @Test(
        "after the server restarts, the client reconnects and every subscription resumes from its last seq without gap or duplicate"
    )
    func reconnectAndResume() async throws {
        let directory = TestServer.makeDataDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try await withThrowingTaskGroup(of: Void.self) { group in
            let (ports, portSink) = AsyncStream<Int>.makeStream()
            var portIterator = ports.makeAsyncIterator()
            let (stopFirst, stopFirstSink) = AsyncStream<Void>.makeStream()
            let fixedPort = try TestServer.reservablePort()
            group.addTask {
                try await runServer(directory: directory, port: fixedPort, ports: portSink, stop: stopFirst)
            }
            let port = try #require(await portIterator.next())
            try await VersoClient.with(configuration(port: port)) { client in
                _ = try await client.put("r/a", base: 0, data: ["v": .integer(1)])
                let events = EventLog()
                let stream = try await client.subscribe(.prefix("r/"))
                group.addTask { await events.read(stream) }
                _ = try await events.next(3)
                _ = try await client.put("r/a", base: 1, data: ["v": .integer(2)])
                #expect(try await events.next(1) == [.update(key: "r/a", version: 2, seq: 2, data: ["v": .integer(2)])])

                stopFirstSink.yield()
                let (stopSecond, stopSecondSink) = AsyncStream<Void>.makeStream()
                // The first server must be gone before the second takes its port.
                try await group.next()
                group.addTask {
                    try await runServer(directory: directory, port: port, ports: portSink, stop: stopSecond)
                }
                #expect(await portIterator.next() == port)
                // Another client writes while (or before) this one reconnects.
                try await WireConnection.with(url: "ws://127.0.0.1:\(port)/v1/ws") { other in
                    _ = try await other.request(#"{"type":"put","key":"r/a","base":2,"data":{"v":3}}"#)
                }
                // A request waits for the reconnection.
                #expect(try await client.put("r/b", base: 0, data: [:]) == .ack(version: 1, seq: 4))
                let resumed = try await events.next(2)
                #expect(
                    resumed == [
                        .update(key: "r/a", version: 3, seq: 3, data: ["v": .integer(3)]),
                        .update(key: "r/b", version: 1, seq: 4, data: [:]),
                    ]
                )
                stopSecondSink.yield()
            }
            try await group.waitForAll()
        }
    }

    @Test(
        "a connection whose hello is never answered is given up after the connect timeout and made again; the subscription resumes without gap"
    )
    func unansweredHello() async throws {
        try await TestServer.with { server in
            try await withProxiedSubscription(server, prefix: "h/") { proxy, client, events in
                // The next request's connection is cut; on the one after, hello is lost and
                // the WebSocket stays open, as with a server that stopped answering.
                proxy.arm(.request(containing: #""type":"get""#), .mute(requestContaining: #""type":"hello""#))
                await #expect(throws: VersoClientError.self) { try await client.get("h/1") }
                try await WireConnection.with(url: server.url) { other in
                    _ = try await other.request(#"{"type":"put","key":"h/1","base":0,"data":{}}"#)
                }
                // Answered within the request timeout (30 s): the muted session is given up
                // after the connect timeout (8 s), where a session kept open would never be ready.
                #expect(try await client.put("h/2", base: 0, data: [:]) == .ack(version: 1, seq: 2))
                #expect(
                    try await events.next(2) == [
                        .update(key: "h/1", version: 1, seq: 1, data: [:]),
                        .update(key: "h/2", version: 1, seq: 2, data: [:]),
                    ]
                )
                #expect(proxy.cuts == 2 && proxy.connections == 3)
            }
        }
    }

    @Test(
        "a quiet subscription yields progress bookmarks and resumes from the newest after a drop: no reset though the change log moved far past its start"
    )
    func resumesFromBookmark() async throws {
        try await TestServer.with(configure: { $0.historyLimit = 4 }) { server in
            try await withProxiedSubscription(
                server,
                prefix: "quiet/",
                configure: { $0.progressInterval = .seconds(1) }
            ) {
                proxy,
                client,
                events in
                // 40 changes elsewhere: the log keeps about the last 4, far past seq 0.
                try await WireConnection.with(url: server.url) { other in
                    for index in 0..<40 {
                        _ = try await other.request(#"{"type":"put","key":"busy/\#(index)","base":0,"data":{}}"#)
                    }
                }
                var bookmark = try await events.next(1)
                while bookmark != [.progress(seq: 40)] {
                    guard case .progress = bookmark.first else {
                        Issue.record("expected progress bookmarks, got \(bookmark)")
                        return
                    }
                    bookmark = try await events.next(1)
                }
                // The connection drops; the resume starts at 40, which the log still holds.
                proxy.arm(.request(containing: #""type":"get""#))
                await #expect(throws: VersoClientError.self) { try await client.get("quiet/x") }
                _ = try await client.put("quiet/x", base: 0, data: [:])
                var next = try await events.next(1)
                while case .progress = next.first { next = try await events.next(1) }
                #expect(next == [.update(key: "quiet/x", version: 1, seq: 41, data: [:])], "no reset, no gap")
                #expect(proxy.connections == 2)
            }
        }
    }

    @Test(
        "a drop between the updates of one txn loses none of them and delivers none twice: the resume starts before the txn's seq"
    )
    func dropMidTxn() async throws {
        try await TestServer.with { server in
            try await withProxiedSubscription(server, prefix: "t/") { proxy, client, events in
                // The connection is cut right after the first of the txn's three updates.
                proxy.arm(.after(replyContaining: #""type":"update""#))
                try await WireConnection.with(url: server.url) { other in
                    let reply = try await other.request(
                        #"{"type":"txn","ops":[{"op":"put","key":"t/a","base":0,"data":{}},{"op":"put","key":"t/b","base":0,"data":{}},{"op":"put","key":"t/c","base":0,"data":{}}]}"#
                    )
                    #expect(reply["type"]?.stringValue == "ack", "\(reply.encodedString)")
                }
                let updates = try await events.next(3)
                #expect(
                    Set(updates.map { "\($0)" })
                        == Set(
                            ["a", "b", "c"].map {
                                "\(SubscriptionEvent.update(key: "t/\($0)", version: 1, seq: 1, data: [:]))"
                            }
                        ),
                    "each of the txn's updates once: \(updates)"
                )
                _ = try await client.put("t/d", base: 0, data: [:])
                #expect(
                    try await events.next(1) == [.update(key: "t/d", version: 1, seq: 2, data: [:])],
                    "and nothing twice"
                )
                #expect(proxy.cuts == 1 && proxy.connections == 2)
            }
        }
    }

    @Test(
        "when the server cannot replay (a new store), the subscription yields a reset and fresh snapshots"
    )
    func resetAfterNewStore() async throws {
        let firstDirectory = TestServer.makeDataDirectory()
        let secondDirectory = TestServer.makeDataDirectory()
        defer {
            try? FileManager.default.removeItem(atPath: firstDirectory)
            try? FileManager.default.removeItem(atPath: secondDirectory)
        }
        try await withThrowingTaskGroup(of: Void.self) { group in
            let (ports, portSink) = AsyncStream<Int>.makeStream()
            var portIterator = ports.makeAsyncIterator()
            let (stopFirst, stopFirstSink) = AsyncStream<Void>.makeStream()
            let fixedPort = try TestServer.reservablePort()
            group.addTask {
                try await runServer(directory: firstDirectory, port: fixedPort, ports: portSink, stop: stopFirst)
            }
            let port = try #require(await portIterator.next())
            try await VersoClient.with(configuration(port: port)) { client in
                _ = try await client.put("n/old", base: 0, data: [:])
                let events = EventLog()
                let stream = try await client.subscribe(.prefix("n/"))
                group.addTask { await events.read(stream) }
                _ = try await events.next(3)
                stopFirstSink.yield()
                try await group.next()
                let (stopSecond, stopSecondSink) = AsyncStream<Void>.makeStream()
                group.addTask {
                    try await runServer(directory: secondDirectory, port: port, ports: portSink, stop: stopSecond)
                }
                #expect(await portIterator.next() == port)
                try await WireConnection.with(url: "ws://127.0.0.1:\(port)/v1/ws") { other in
                    _ = try await other.request(#"{"type":"put","key":"n/new","base":0,"data":{}}"#)
                }
                let reset = try await events.next(1)
                if case .started(_, let wasReset) = reset.first {
                    #expect(wasReset)
                } else {
                    Issue.record("expected a reset start, got \(reset)")
                }
                // The fresh start comes from the new store: n/new (written there before or after
                // the client reconnected) and never n/old.
                func isNew(_ event: SubscriptionEvent) -> Bool {
                    switch event {
                    case .snapshot(let record): record.key == "n/new" && record.version == 1
                    case .update(let key, let version, _, _, _, _): key == "n/new" && version == 1
                    default: false
                    }
                }
                var sawNew = false
                while true {
                    let event = try await events.next(1)[0]
                    if event == .synced { break }
                    if isNew(event), !sawNew {
                        sawNew = true
                    } else {
                        Issue.record("unexpected event before synced: \(event)")
                    }
                }
                if !sawNew {
                    // Written after the reconnect: it arrives live.
                    let update = try await events.next(1)
                    #expect(isNew(update[0]), "expected n/new at version 1, got \(update)")
                }
                stopSecondSink.yield()
            }
            try await group.waitForAll()
        }
    }
}
