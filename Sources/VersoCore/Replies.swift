import Synchronization

/// One key that a write found stale, as `conflict` replies carry it.
public struct ConflictDetail: Sendable, Equatable {
    public var key: String
    /// The base the client sent (`nil` for a forced write, which never conflicts).
    public var base: Int64
    /// The key's current version (0 when it never existed).
    public var version: Int64
    /// The current data, encoded; nil for a deleted key or one that never existed.
    public var data: [UInt8]?
    public var deleted: Bool
    /// The data is withheld: the writer may not read the key (its rules give `write` without
    /// `read`). Sent as `"data": null, "deleted": false, "hidden": true`.
    public var hidden = false
    /// Why a `"merge": "fields"` write could not be merged (nil for a plain write); its
    /// `changed` is not sent from here but from `changed`.
    public var merge: MergeConflict?
    /// Every path changed since `base`, sorted, when the server knows them (merge or not).
    public var changed: [FieldPath]?
    /// When the current version was committed (ms since the Unix epoch), when the server knows.
    public var at: Int64?
    /// Who wrote the current version (withheld with the data when `hidden`).
    public var by: String?

    /// A conflict with the current data as the store holds it, encoded.
    public init(key: String, base: Int64, version: Int64, data: [UInt8]?, deleted: Bool) {
        self.key = key
        self.base = base
        self.version = version
        self.data = data
        self.deleted = deleted
    }

    /// A conflict with the key's current state (`nil` when it never existed).
    public init(key: String, base: Int64, current: RecordState?) {
        self.init(
            key: key,
            base: base,
            version: current?.version ?? 0,
            data: current?.data.map { JSONValue.object($0).encodedBytes },
            deleted: current?.isDeleted == true
        )
    }
}

/// Encodes server messages as compact JSON bytes, field order as Protocol.md shows them.
public enum Replies {
    /// Version string sent in `welcome`.
    public static let serverName = "verso/0.1.0"

    private static func start(_ type: StaticString, rid: JSONValue?) -> JSONWriter {
        var writer = JSONWriter()
        writer.raw("{\"type\":\"")
        writer.raw(type)
        writer.raw("\"")
        if let rid {
            writer.raw(",\"rid\":")
            writer.value(rid)
        }
        return writer
    }

    private static func finish(_ writer: inout JSONWriter) -> [UInt8] {
        writer.raw("}")
        return writer.bytes
    }

    /// The reply to `hello`. `allowsForce` tells clients whether forced writes are accepted.
    /// The reply to `hello`; `user` is the identity the connection acts as, when the server
    /// authenticates.
    public static func welcome(
        rid: JSONValue?,
        session: String,
        epoch: String,
        seq: Int64,
        allowsForce: Bool,
        user: String? = nil
    ) -> [UInt8] {
        var writer = start("welcome", rid: rid)
        writer.raw(",\"session\":"); writer.string(session)
        writer.raw(",\"epoch\":"); writer.string(epoch)
        writer.raw(",\"seq\":"); writer.integer(seq)
        writer.raw(",\"server\":"); writer.string(serverName)
        writer.raw(",\"force\":"); allowsForce ? writer.raw("true") : writer.raw("false")
        if let user {
            writer.raw(",\"user\":"); writer.string(user)
        }
        return finish(&writer)
    }

    public static func error(
        rid: JSONValue?,
        _ error: RequestError,
        key: String? = nil,
        current: RecordState? = nil
    ) -> [UInt8] {
        var writer = start("error", rid: rid)
        writer.raw(",\"code\":"); writer.string(error.code.rawValue)
        writer.raw(",\"message\":"); writer.string(error.message)
        if let key {
            writer.raw(",\"key\":"); writer.string(key)
        }
        if let current {
            writer.raw(",\"version\":"); writer.integer(current.version)
            writer.raw(",\"deleted\":"); current.isDeleted ? writer.raw("true") : writer.raw("false")
        }
        return finish(&writer)
    }

    /// A `snapshot`: the reply to `get` (with `rid`) or one record sent on subscribe (with `sub`).
    public static func snapshot(rid: JSONValue?, sub: Int64?, record: RecordSnapshot) -> [UInt8] {
        var writer = start("snapshot", rid: rid)
        if let sub {
            writer.raw(",\"sub\":"); writer.integer(sub)
        }
        writer.raw(",\"key\":"); writer.string(record.key)
        writer.raw(",\"version\":"); writer.integer(record.version)
        writer.raw(",\"data\":"); writer.raw(bytes: record.data)
        return finish(&writer)
    }

    /// The `ack` of one write; `merged` when a `"merge": "fields"` write was merged into a newer
    /// version than its base, `replayed` when it answers a retry from the stored outcome of its
    /// idempotency key.
    public static func ack(
        rid: JSONValue?,
        key: String,
        version: Int64,
        seq: Int64,
        merged: Bool = false,
        replayed: Bool = false
    ) -> [UInt8] {
        var writer = start("ack", rid: rid)
        writer.raw(",\"key\":"); writer.string(key)
        writer.raw(",\"version\":"); writer.integer(version)
        writer.raw(",\"seq\":"); writer.integer(seq)
        if merged { writer.raw(",\"merged\":true") }
        if replayed { writer.raw(",\"replayed\":true") }
        return finish(&writer)
    }

    /// The `ack` of a txn: every key the txn names with its version after the txn, and the
    /// keys whose ops were merged (`"merged"`, only when there are any).
    public static func txnAck(rid: JSONValue?, seq: Int64, versions: [KeyVersion], replayed: Bool = false) -> [UInt8] {
        var writer = start("ack", rid: rid)
        writer.raw(",\"seq\":"); writer.integer(seq)
        writer.raw(",\"versions\":{")
        for (index, entry) in versions.enumerated() {
            if index > 0 { writer.raw(",") }
            writer.string(entry.key)
            writer.raw(":")
            writer.integer(entry.version)
        }
        writer.raw("}")
        var first = true
        for entry in versions where entry.merged {
            writer.raw(first ? ",\"merged\":[" : ",")
            writer.string(entry.key)
            first = false
        }
        if !first { writer.raw("]") }
        if replayed { writer.raw(",\"replayed\":true") }
        return finish(&writer)
    }

    private static func conflictFields(_ writer: inout JSONWriter, _ detail: ConflictDetail) {
        writer.raw("\"key\":"); writer.string(detail.key)
        writer.raw(",\"base\":"); writer.integer(detail.base)
        writer.raw(",\"version\":"); writer.integer(detail.version)
        stamp(&writer, at: detail.at, by: detail.by)
        writer.raw(",\"data\":")
        if let data = detail.data {
            writer.raw(bytes: data)
        } else {
            writer.raw("null")
        }
        writer.raw(",\"deleted\":"); detail.deleted ? writer.raw("true") : writer.raw("false")
        if detail.hidden { writer.raw(",\"hidden\":true") }
        if let merge = detail.merge {
            writer.raw(",\"reason\":"); writer.string(merge.reason.rawValue)
            writer.raw(",\"clashes\":"); paths(&writer, merge.clashes)
        }
        if let changed = detail.changed {
            writer.raw(",\"changed\":"); paths(&writer, changed)
        }
    }

    /// `"at"` and `"by"`, each only when known.
    static func stamp(_ writer: inout JSONWriter, at: Int64?, by: String?) {
        if let at {
            writer.raw(",\"at\":"); writer.integer(at)
        }
        if let by {
            writer.raw(",\"by\":"); writer.string(by)
        }
    }

    private static func paths(_ writer: inout JSONWriter, _ paths: [FieldPath]) {
        writer.raw("[")
        for (index, path) in paths.enumerated() {
            if index > 0 { writer.raw(",") }
            writer.string(path.pointer)
        }
        writer.raw("]")
    }

    public static func conflict(rid: JSONValue?, _ detail: ConflictDetail) -> [UInt8] {
        var writer = start("conflict", rid: rid)
        writer.raw(",")
        conflictFields(&writer, detail)
        return finish(&writer)
    }

    public static func txnConflict(rid: JSONValue?, _ details: [ConflictDetail]) -> [UInt8] {
        var writer = start("conflict", rid: rid)
        writer.raw(",\"conflicts\":[")
        for (index, detail) in details.enumerated() {
            writer.raw(index > 0 ? ",{" : "{")
            conflictFields(&writer, detail)
            writer.raw("}")
        }
        writer.raw("]")
        return finish(&writer)
    }

    /// The reply to a `batch`: each op's result (an `ack`, `conflict` or `error` message
    /// without `rid`), in order; `replayed` when it answers a retry of its idempotency key.
    public static func results(rid: JSONValue?, _ results: [[UInt8]], replayed: Bool = false) -> [UInt8] {
        var writer = start("results", rid: rid)
        if replayed { writer.raw(",\"replayed\":true") }
        writer.raw(",\"results\":[")
        for (index, result) in results.enumerated() {
            if index > 0 { writer.raw(",") }
            writer.raw(bytes: result)
        }
        writer.raw("]")
        return finish(&writer)
    }

    /// The reply to `subscribe`. `snapshots` is how many `snapshot` messages follow it.
    public static func subscribed(rid: JSONValue?, sub: Int64, seq: Int64, reset: Bool, snapshots: Int) -> [UInt8] {
        var writer = start("subscribed", rid: rid)
        writer.raw(",\"sub\":"); writer.integer(sub)
        writer.raw(",\"seq\":"); writer.integer(seq)
        if reset { writer.raw(",\"reset\":true") }
        writer.raw(",\"snapshots\":"); writer.integer(Int64(snapshots))
        return finish(&writer)
    }

    /// A `progress` bookmark: every change up to `seq` that matches subscription `sub` has been
    /// sent before it, so a resume with `since: seq` replays nothing already delivered.
    public static func progress(sub: Int64, seq: Int64) -> [UInt8] {
        var writer = start("progress", rid: nil)
        writer.raw(",\"sub\":"); writer.integer(sub)
        writer.raw(",\"seq\":"); writer.integer(seq)
        return finish(&writer)
    }

    /// The reply to `history`: a page of the key's versions, newest first (Protocol.md 3.9).
    public static func history(rid: JSONValue?, key: String, _ history: StoredHistory) -> [UInt8] {
        var writer = start("history", rid: rid)
        writer.raw(",\"key\":"); writer.string(key)
        writer.raw(",\"versions\":[")
        for (index, entry) in history.versions.enumerated() {
            writer.raw(index > 0 ? ",{\"version\":" : "{\"version\":")
            writer.integer(entry.version)
            writer.raw(",\"seq\":"); writer.integer(entry.seq)
            stamp(&writer, at: entry.at, by: entry.by)
            if let data = entry.data {
                writer.raw(",\"data\":"); writer.raw(bytes: data)
                writer.raw(",\"deleted\":false}")
            } else {
                writer.raw(",\"data\":null,\"deleted\":true}")
            }
        }
        writer.raw("],\"next\":")
        if let next = history.next { writer.integer(next) } else { writer.raw("null") }
        if let gone = history.gone {
            writer.raw(",\"gone\":"); writer.integer(gone)
        }
        return finish(&writer)
    }

    /// The reply to `presence`: the state as set on `key` (null when cleared), as the
    /// connection's subscribers will see it.
    public static func presence(rid: JSONValue?, key: String, _ presence: PresenceState) -> [UInt8] {
        var writer = start("presence", rid: rid)
        presenceFields(&writer, key: key, presence)
        return finish(&writer)
    }

    /// `"key"` and what `PresenceState` holds, after `type` and `rid` or `sub`.
    static func presenceFields(_ writer: inout JSONWriter, key: String, _ presence: PresenceState) {
        writer.raw(",\"key\":"); writer.string(key)
        writer.raw(",\"session\":"); writer.string(presence.session)
        if let client = presence.client {
            writer.raw(",\"client\":"); writer.string(client)
        }
        if let user = presence.user {
            writer.raw(",\"user\":"); writer.string(user)
        }
        writer.raw(",\"state\":")
        if let state = presence.state { writer.raw(bytes: state) } else { writer.raw("null") }
    }

    public static func unsubscribed(rid: JSONValue?, sub: Int64) -> [UInt8] {
        var writer = start("unsubscribed", rid: rid)
        writer.raw(",\"sub\":"); writer.integer(sub)
        return finish(&writer)
    }

    public static func records(rid: JSONValue?, records: [RecordSnapshot], next: String?) -> [UInt8] {
        var writer = start("records", rid: rid)
        writer.raw(",\"records\":[")
        for (index, record) in records.enumerated() {
            writer.raw(index > 0 ? ",{\"key\":" : "{\"key\":")
            writer.string(record.key)
            writer.raw(",\"version\":"); writer.integer(record.version)
            writer.raw(",\"data\":"); writer.raw(bytes: record.data)
            writer.raw("}")
        }
        writer.raw("],\"next\":")
        if let next { writer.string(next) } else { writer.raw("null") }
        return finish(&writer)
    }
}

/// An `update` (or `presence`) message encoded once per change and stamped with each
/// subscriber's `sub` id, so a message fanned out to many subscribers is encoded once.
public struct EncodedUpdate: Sendable {
    /// Everything before the subscription id.
    public let head: [UInt8]
    /// Everything after it.
    public let tail: [UInt8]
    /// The tail compressed once for every subscriber that agreed permessage-deflate (filled by
    /// the server); nil for an update too small ever to be compressed.
    public let compressedTails: CompressedTails?

    /// Tails shorter than this are never compressed: the whole message stays under the
    /// 256 bytes from which permessage-deflate compresses (a head of 26 bytes and an id of at
    /// most 20 digits).
    public static let minimumCompressedTailBytes = 200

    /// The same for every update: shared, not built per change.
    private static let sharedHead = Array("{\"type\":\"update\",\"sub\":".utf8)
    private static let presenceHead = Array("{\"type\":\"presence\",\"sub\":".utf8)

    /// Whether this is a `presence` message rather than an `update`.
    public var isPresence: Bool { head == Self.presenceHead }

    /// A `presence` message: `presence` set (or cleared) on `key` (Protocol.md 5.1).
    public init(presenceOf key: String, _ presence: PresenceState) {
        head = Self.presenceHead
        var writer = JSONWriter()
        Replies.presenceFields(&writer, key: key, presence)
        writer.raw("}")
        tail = writer.bytes
        compressedTails = tail.count >= Self.minimumCompressedTailBytes ? CompressedTails() : nil
    }

    public init(_ change: Change) {
        head = Self.sharedHead
        var writer = JSONWriter()
        writer.raw(",\"key\":"); writer.string(change.key)
        writer.raw(",\"version\":"); writer.integer(change.version)
        writer.raw(",\"seq\":"); writer.integer(change.seq)
        Replies.stamp(&writer, at: change.at, by: change.by)
        writer.raw(",\"data\":")
        if let data = change.data {
            writer.raw(bytes: data)
            writer.raw(",\"deleted\":false}")
        } else {
            writer.raw("null,\"deleted\":true}")
        }
        tail = writer.bytes
        compressedTails = tail.count >= Self.minimumCompressedTailBytes ? CompressedTails() : nil
    }

    /// The length of `message(sub: sub)`, without building it.
    public func byteCount(sub: Int64) -> Int {
        var digits = sub < 0 ? 2 : 1
        var rest = sub.magnitude
        while rest >= 10 {
            rest /= 10
            digits += 1
        }
        return head.count + digits + tail.count
    }

    /// The whole message for subscription `sub`.
    public func message(sub: Int64) -> [UInt8] {
        var bytes = head
        bytes.reserveCapacity(head.count + tail.count + 20)
        bytes.append(contentsOf: String(sub).utf8)
        bytes.append(contentsOf: tail)
        return bytes
    }
}

/// An update's tail in compressed form, made once per window size by the first connection that
/// needs it and shared by every other (each subscriber's head goes in front of it in a stored
/// deflate block: VersoDeflate's `PerMessageDeflate.appendStoredBlockHeader`). Safe from any
/// thread.
public final class CompressedTails: Sendable {
    private let forms = Mutex<[(windowBits: Int32, bytes: [UInt8])]>([])

    public init() {}

    /// The tail compressed with `windowBits`: made by `make` the first time it is asked for
    /// (two connections asking at once may both make it; either result is kept).
    public func bytes(windowBits: Int32, orMake make: () throws -> [UInt8]) rethrows -> [UInt8] {
        if let made = forms.withLock({ $0.first { $0.windowBits == windowBits }?.bytes }) { return made }
        let bytes = try make()
        forms.withLock { forms in
            if !forms.contains(where: { $0.windowBits == windowBits }) { forms.append((windowBits, bytes)) }
        }
        return bytes
    }
}
