import VersoClient
import VersoCore
import VersoWire

/// What an `ack` of a single-key write says.
public struct Ack: Sendable, Hashable {
    /// The key written.
    public let key: String
    /// The version the write made.
    public let version: Int64
    /// The global seq the change got.
    public let seq: Int64
}

/// One connection as a case uses it: requests and their replies on one side, subscription
/// messages (`snapshot` with `sub`, `update`) on the other.
///
/// The server replies in request order and interleaves subscription messages, so the next
/// message that is not a subscription message is the reply to the oldest request without one.
/// Subscription messages read while waiting for a reply are kept, in order, for `nextEvent`.
/// Use a peer from one task at a time.
public final class Peer {
    /// The underlying connection, for raw frames and close codes.
    public let wire: WireConnection
    private var events: [JSONValue] = []
    private var lastSent = ""

    /// Wraps a connection that nothing else reads from.
    public init(_ wire: WireConnection) {
        self.wire = wire
    }

    /// Whether `message` belongs to a subscription rather than answering a request.
    static func isEvent(_ message: JSONValue) -> Bool {
        message["sub"] != nil
            && ["update", "snapshot", "progress", "presence"].contains(message.type ?? "")
    }

    /// Sends one text message.
    public func send(_ text: String) async throws {
        lastSent = text
        try await wire.send(text)
    }

    /// The next message, parsed; `waitingFor` says what for, in the failure when none comes.
    /// Every message must read as one of Protocol.md's (`ServerMessage`, the vocabulary every
    /// Verso client reads with): a missing or mistyped member fails the case that received it.
    private func receive(timeout: Duration, waitingFor: @autoclosure () -> String) async throws -> JSONValue {
        let text: String
        do {
            text = try await wire.nextText(timeout: timeout)
        } catch {
            throw ConformanceFailure("\(waitingFor()): \(error)")
        }
        let message: JSONValue
        do {
            message = try JSONParser.parse(text, maxDepth: JSONParser.maxReplyDepth)
        } catch {
            throw ConformanceFailure("the server sent a message that is not JSON (\(error)): \(describe(text))")
        }
        do {
            _ = try ServerMessage.decode(message)
        } catch {
            throw ConformanceFailure("the server sent a message that breaks Protocol.md (\(error)): \(describe(text))")
        }
        return message
    }

    /// The next message as it comes off the wire, reply or subscription message, for checks
    /// of their relative order; messages already kept for `nextEvent` come first.
    public func nextMessage(timeout: Duration = .seconds(10)) async throws -> JSONValue {
        if !events.isEmpty { return events.removeFirst() }
        return try await receive(timeout: timeout, waitingFor: "no message after \(describe(lastSent))")
    }

    /// The next reply; subscription messages that come first are kept for `nextEvent`.
    public func nextReply(timeout: Duration = .seconds(10)) async throws -> JSONValue {
        while true {
            let message = try await receive(timeout: timeout, waitingFor: "no reply to \(describe(lastSent))")
            if Self.isEvent(message) { events.append(message) } else { return message }
        }
    }

    /// Sends `text` and returns its reply.
    public func request(_ text: String) async throws -> JSONValue {
        try await send(text)
        return try await nextReply()
    }

    /// The next subscription message. Fails if a reply arrives instead.
    public func nextEvent(timeout: Duration = .seconds(10)) async throws -> JSONValue {
        if !events.isEmpty { return events.removeFirst() }
        let message = try await receive(timeout: timeout, waitingFor: "a subscription message was expected")
        try expect(Self.isEvent(message), "a subscription message was expected, got the reply \(describe(message))")
        return message
    }

    /// Subscription messages already received and not yet read.
    public var bufferedEvents: Int { events.count }

    // MARK: Typed requests

    /// Sends `hello` and returns the `welcome`.
    public func hello() async throws -> JSONValue {
        try expectType(try await request(Request.hello(client: nil, token: nil).encoded()), "welcome", "hello")
    }

    /// Sends `get` and returns the reply as it is (`snapshot` or `error`).
    public func get(_ key: String) async throws -> JSONValue {
        try await request(Request.get(key: key).encoded())
    }

    /// Sends a `put` and returns the reply as it is.
    public func tryPut(_ key: String, base: Int64, data: String = "{}") async throws -> JSONValue {
        // The data goes as written (the vocabulary's encoder would put its members in order).
        try await request(#"{"type":"put","key":\#(quoted(key)),"base":\#(base),"data":\#(data)}"#)
    }

    /// Puts `data` (JSON object text) at `key` on `base` and expects an `ack`.
    @discardableResult
    public func put(_ key: String, base: Int64, data: String = "{}") async throws -> Ack {
        try ack(of: try await tryPut(key, base: base, data: data), key: key, "put \(key) on base \(base)")
    }

    /// Patches `key` on `base` with `patch` (JSON object text) and expects an `ack`.
    @discardableResult
    public func patch(_ key: String, base: Int64, patch: String) async throws -> Ack {
        let reply = try await request(#"{"type":"patch","key":\#(quoted(key)),"base":\#(base),"patch":\#(patch)}"#)
        return try ack(of: reply, key: key, "patch \(key) on base \(base)")
    }

    /// Deletes `key` on `base` and expects an `ack`.
    @discardableResult
    public func delete(_ key: String, base: Int64) async throws -> Ack {
        let delete = Request.write(WriteOperation(key: key, action: .delete, precondition: .base(base)))
        let reply = try await request(delete.encoded())
        return try ack(of: reply, key: key, "delete \(key) on base \(base)")
    }

    /// Checks that `reply` acknowledges a single-key write of `key` and reads it.
    func ack(of reply: JSONValue, key: String, _ what: String) throws -> Ack {
        guard case .ack(let acked, let version, let seq, _, _)? = try? ServerMessage.decode(reply) else {
            throw ConformanceFailure.mismatch(what, expected: "an ack of one write", actual: describe(reply))
        }
        try expectEqual(acked, key, "\(what): the ack's key")
        return Ack(key: key, version: version, seq: seq)
    }

    /// The current version of `key` (0 when it never existed, the tombstone's when deleted).
    public func version(of key: String) async throws -> Int64 {
        let reply = try await get(key)
        if reply.type == "snapshot" {
            return try require(reply["version"]?.int, "get \(key): no version in \(describe(reply))")
        }
        try expectError(reply, code: .notFound, "get \(key)")
        return reply["version"]?.int ?? 0
    }

    /// Subscribes to every key under `prefix` (see `subscribe(_:)`).
    public func subscribe(prefix: String) async throws -> (reply: JSONValue, snapshots: [JSONValue]) {
        try await subscribe(Request.subscribe(.prefix(prefix), since: nil, epoch: nil).encoded())
    }

    /// Lists the first page (at most 100) of live records under `prefix` and returns the
    /// `records` reply.
    public func list(prefix: String) async throws -> JSONValue {
        let list = Request.list(prefix: prefix, after: nil, limit: RequestLimits.defaultListLimit)
        return try expectType(try await request(list.encoded()), "records", "list \(prefix)")
    }

    /// Subscribes with `request` (a whole `subscribe` message) and reads the `subscribed` reply
    /// and the snapshots it announces.
    public func subscribe(_ request: String) async throws -> (reply: JSONValue, snapshots: [JSONValue]) {
        let reply = try expectType(try await self.request(request), "subscribed", "subscribe")
        let count = try require(
            reply["snapshots"]?.int,
            "subscribed has no integer snapshots count: \(describe(reply))"
        )
        var snapshots: [JSONValue] = []
        for index in 0..<count {
            let snapshot = try await nextEvent()
            try expectType(snapshot, "snapshot", "snapshot \(index + 1) of \(count) after subscribed")
            try expectEqual(snapshot["sub"], reply["sub"], "the sub of snapshot \(index + 1)")
            snapshots.append(snapshot)
        }
        return (reply, snapshots)
    }

    /// Writes the fresh key `barrierKey`, which must match every subscription in `subs` (all
    /// of this peer), and returns every other subscription message that arrived until each of
    /// them delivered its update for it.
    ///
    /// Updates of one subscription arrive in seq order, and the barrier's seq is higher than
    /// that of any change acknowledged before it was sent; so once its update is here, every
    /// update due for those changes is here too, and anything missing will never come.
    public func events(before barrierKey: String, subs: [JSONValue?]) async throws -> [JSONValue] {
        try await put(barrierKey, base: 0, data: #"{"barrier":true}"#)
        var waiting = subs
        var before: [JSONValue] = []
        while !waiting.isEmpty {
            let event = try await nextEvent()
            if event["key"]?.str?.hasSameBytes(as: barrierKey) == true, let index = waiting.firstIndex(of: event["sub"])
            {
                waiting.remove(at: index)
            } else {
                before.append(event)
            }
        }
        return before
    }
}

/// Checks that `message` has `type`; returns it.
@discardableResult
func expectType(_ message: JSONValue, _ type: String, _ what: String) throws -> JSONValue {
    guard message.type == type else {
        throw ConformanceFailure.mismatch(what, expected: "a \"\(type)\" message", actual: describe(message))
    }
    return message
}

/// Checks that `reply` is an `error` with `code`, a message, and (when `rid` is given) that rid
/// echoed; `rid: .some(nil)` requires no rid at all.
func expectError(_ reply: JSONValue, code: ErrorCode, rid: JSONValue?? = nil, _ what: String) throws {
    guard case .error(let error)? = try? ServerMessage.decode(reply), error.errorCode == code else {
        throw ConformanceFailure.mismatch(
            what,
            expected: "an error with code \(code.rawValue)",
            actual: describe(reply)
        )
    }
    try expect((reply["message"]?.str ?? "").isEmpty == false, "\(what): the error has no message: \(describe(reply))")
    if let rid {
        try expectEqual(reply["rid"], rid, "\(what): the error's rid")
    }
}
