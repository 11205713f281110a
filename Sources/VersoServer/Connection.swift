import Foundation
import Logging
import NIOCore
import NIOWebSocket
import VersoCore
import VersoEngine
import WSCore

/// Serves one WebSocket connection: reads requests in order, answers each before reading the
/// next, and writes replies and subscription updates through the connection's `Outbox`.
struct Connection {
    let engine: RecordEngine
    let registry: ConnectionRegistry
    let configuration: ServerConfiguration
    let logger: Logger

    /// Serves the connection until it closes. Rethrows a protocol error from the inbound stream
    /// so the WebSocket layer closes with the code RFC 6455 asks for (1007, 1009, 1002).
    ///
    /// Reading requests and writing the outbox run side by side. When the outbox asks to close
    /// (a client too slow to read, or shutdown), reading stops too, so the connection ends even
    /// if the client never answers.
    func run(inbound: WebSocketInboundStream, outbound: WebSocketOutboundWriter, channel: any Channel) async throws {
        let outbox = Outbox(maxQueuedBytes: configuration.maxQueuedBytesPerConnection)
        let session = UUID().uuidString.lowercased()
        var sessionLogger = logger
        sessionLogger[metadataKey: "verso.session"] = "\(session)"
        let logger = sessionLogger
        registry.add(outbox)
        defer { registry.remove(outbox) }
        let inboundError = await withTaskGroup(of: (any Error)?.self) { group in
            group.addTask {
                await Self.writeOutbox(outbox, to: outbound, logger: logger)
                return nil
            }
            group.addTask {
                await readRequests(inbound, session: session, outbox: outbox, logger: logger)
            }
            group.addTask {
                // A client that stopped reading blocks the writer before it can send the close
                // frame: once a close is asked for, give it a moment, then drop the socket.
                guard await outbox.waitForCloseRequest() else { return nil }
                try? await Task.sleep(for: .seconds(2))
                if !Task.isCancelled {
                    logger.info("dropping a connection that did not take its close frame")
                    channel.close(promise: nil)
                }
                return nil
            }
            // Whichever side ends first ends the connection: the client went away, or the
            // server closed it.
            var firstError = await group.next() ?? nil
            group.cancelAll()
            while let error = await group.next() {
                if firstError == nil { firstError = error }
            }
            return firstError
        }
        if let inboundError { throw inboundError }
    }

    /// Handles requests in order until the client closes, the stream fails (returned), or the
    /// task is cancelled; then ends the connection's subscriptions and its outbox.
    private func readRequests(_ inbound: WebSocketInboundStream, session: String, outbox: Outbox, logger: Logger) async -> (any Error)? {
        var subscriptions = Set<Int64>()
        defer {
            for id in subscriptions { engine.unsubscribe(id, sink: outbox) }
            outbox.finish()
        }
        do {
            for try await message in inbound.messages(maxSize: configuration.maxMessageBytes) {
                switch message {
                case .text(let text):
                    await handle(text, session: session, outbox: outbox, subscriptions: &subscriptions)
                case .binary:
                    outbox.send(Replies.error(rid: nil, .badRequest("binary frames are not accepted: send each request as JSON in a text frame")))
                }
            }
            return nil
        } catch is CancellationError {
            return nil
        } catch {
            logger.debug("connection ended with an error", metadata: ["verso.error": "\(error)"])
            return Task.isCancelled ? nil : error
        }
    }

    /// Writes queued messages to the socket until the outbox finishes or asks to close.
    private static func writeOutbox(_ outbox: Outbox, to outbound: WebSocketOutboundWriter, logger: Logger) async {
        do {
            while true {
                switch await outbox.next() {
                case .messages(let messages):
                    for message in messages {
                        var buffer = ByteBufferAllocator().buffer(capacity: message.count)
                        buffer.writeBytes(message)
                        try await outbound.write(.custom(WebSocketFrame(fin: true, opcode: .text, data: buffer)))
                    }
                case .close(let code, let reason):
                    logger.debug("closing connection", metadata: ["verso.close": "\(code)", "verso.reason": "\(reason)"])
                    try await outbound.close(code, reason: reason)
                    return
                case .finished:
                    return
                }
            }
        } catch {
            logger.debug("could not write to the connection", metadata: ["verso.error": "\(error)"])
        }
    }

    private func handle(_ text: String, session: String, outbox: Outbox, subscriptions: inout Set<Int64>) async {
        let envelope: RequestEnvelope
        do {
            envelope = try Request.parse(text)
        } catch {
            outbox.send(Replies.error(rid: error.rid, error.error))
            return
        }
        let rid = envelope.rid
        do throws(RequestError) {
            switch envelope.request {
            case .hello:
                guard engine.isAccepting else { throw RequestError(.unavailable, "the server is shutting down; reconnect and retry") }
                outbox.send(Replies.welcome(rid: rid, session: session, epoch: engine.epoch, seq: engine.currentSeq, allowsForce: engine.configuration.allowForce))
            case .get(let key):
                let stored = try await engine.record(key)
                guard let stored, let data = stored.data else {
                    let message = stored == nil ? "no record at \"\(key)\"" : "the record at \"\(key)\" was deleted"
                    let tombstone = stored.map { RecordState(version: $0.version, data: nil) }
                    outbox.send(Replies.error(rid: rid, RequestError(.notFound, message), key: key, current: tombstone))
                    return
                }
                outbox.send(Replies.snapshot(rid: rid, sub: nil, record: RecordSnapshot(key: key, version: stored.version, data: data)))
            case .write(let operation):
                await engine.submit(WriteCommand(operations: [operation], isTxn: false)) { result in
                    outbox.send(Self.reply(to: result, rid: rid, isTxn: false))
                }
            case .txn(let operations):
                await engine.submit(WriteCommand(operations: operations, isTxn: true)) { result in
                    outbox.send(Self.reply(to: result, rid: rid, isTxn: true))
                }
            case .subscribe(let filter, let since, let epoch):
                let start = try await engine.subscribe(filter, since: since, epoch: epoch, sink: outbox)
                subscriptions.insert(start.id)
                outbox.send(Replies.subscribed(rid: rid, sub: start.id, seq: start.seq, reset: start.reset, snapshots: start.snapshots.count))
                for record in start.snapshots {
                    outbox.send(Replies.snapshot(rid: nil, sub: start.id, record: record))
                }
                for change in start.replay {
                    outbox.send(EncodedUpdate(change).message(sub: start.id))
                }
                engine.activate(start)
            case .unsubscribe(let sub):
                guard subscriptions.remove(sub) != nil, engine.unsubscribe(sub, sink: outbox) else {
                    throw RequestError(.notFound, "this connection has no subscription \(sub)")
                }
                outbox.send(Replies.unsubscribed(rid: rid, sub: sub))
            case .list(let prefix, let after, let limit):
                let page = try await engine.list(prefix: prefix, after: after, limit: limit)
                outbox.send(Replies.records(rid: rid, records: page.records, next: page.next))
            }
        } catch {
            outbox.send(Replies.error(rid: rid, error))
        }
    }

    /// The reply to a write, encoded.
    static func reply(to result: WriteResult, rid: JSONValue?, isTxn: Bool) -> [UInt8] {
        switch result {
        case .refused(let error):
            return Replies.error(rid: rid, error)
        case .outcome(.applied(let seq, _, let versions)):
            if isTxn {
                return Replies.txnAck(rid: rid, seq: seq, versions: versions.map { ($0.key, $0.version) })
            }
            return Replies.ack(rid: rid, key: versions[0].key, version: versions[0].version, seq: seq)
        case .outcome(.conflict(let details)):
            return isTxn ? Replies.txnConflict(rid: rid, details) : Replies.conflict(rid: rid, details[0])
        case .outcome(.notFound(let key, let current)):
            let message = current == nil ? "no record at \"\(key)\" to delete" : "the record at \"\(key)\" is already deleted"
            return Replies.error(rid: rid, RequestError(.notFound, message), key: key, current: current)
        }
    }
}
