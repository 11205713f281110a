/// A live record as the server sends it (in `snapshot`, `records` and conflicts).
public struct Record: Sendable, Equatable {
    public var key: String
    public var version: Int64
    public var data: JSONObject

    public init(key: String, version: Int64, data: JSONObject) {
        self.key = key
        self.version = version
        self.data = data
    }
}

/// The current state of a key that a write found stale: one `conflict` reply, or one entry of a
/// txn's `conflicts` (Protocol.md 3.1, 3.3).
public struct RecordConflict: Sendable, Equatable, Error {
    public var key: String
    /// The base the write was sent with.
    public var base: Int64
    /// The key's current version (0 if it never existed).
    public var version: Int64
    /// The current data; nil when the key is deleted or never existed, or `hidden`.
    public var data: JSONObject?
    public var deleted: Bool
    /// The server withheld the data: the writer may write the key but not read it
    /// (Protocol.md 2.1). `data` is nil and `deleted` false then, whatever the record holds.
    public var hidden = false
    /// Why a write sent with `"merge": "fields"` could not be merged (Protocol.md 3.3); nil for a
    /// write sent without it.
    public var reason: MergeRefusal?
    /// The paths the write changes that clash with a change since `base`, sorted: given only
    /// when `reason` is `.clash` (and empty when the server withholds them because the writer may
    /// not read the key).
    public var clashes: [FieldPath]
    /// Every path changed since `base`, sorted, when the server gave them: for any conflict
    /// (merge or not) whose versions since `base` the server still knows, so an editor can show
    /// what moved; nil otherwise.
    public var changed: [FieldPath]?
    /// When the current version was committed (ms since the Unix epoch), when the server says.
    public var at: Int64?
    /// Who wrote the current version, on a server that authenticates (not when `hidden`).
    public var by: String?

    public init(
        key: String,
        base: Int64,
        version: Int64,
        data: JSONObject?,
        deleted: Bool,
        reason: MergeRefusal? = nil,
        clashes: [FieldPath] = [],
        changed: [FieldPath]? = nil
    ) {
        self.key = key
        self.base = base
        self.version = version
        self.data = data
        self.deleted = deleted
        self.reason = reason
        self.clashes = clashes
        self.changed = changed
    }
}

/// How a txn was accepted, beside its versions.
public struct TxnAck: Sendable, Equatable {
    /// The one seq of every change the txn made.
    public var seq: Int64
    /// The keys whose `"merge": "fields"` ops were merged into a newer version than their base.
    public var merged: Set<BytewiseString>
    /// The server had already applied this txn (a retry of its idempotency key, Protocol.md 3.7)
    /// and this is its first ack again; it was applied once.
    public var replayed: Bool

    public init(seq: Int64, merged: Set<BytewiseString> = [], replayed: Bool = false) {
        self.seq = seq
        self.merged = merged
        self.replayed = replayed
    }
}

/// The `welcome` that answers `hello` (Protocol.md 2.2).
public struct Welcome: Sendable, Equatable {
    public var session: String
    /// The store's epoch: a resume names it, and a store that is not the one named cannot replay.
    public var epoch: String
    /// The last seq committed when the session started.
    public var seq: Int64
    /// The server's name and version.
    public var server: String
    /// Whether the server accepts forced writes (writes without a base).
    public var allowsForce: Bool
    /// The identity the connection acts as, on a server that authenticates.
    public var user: String?

    public init(session: String, epoch: String, seq: Int64, server: String, allowsForce: Bool, user: String? = nil) {
        self.session = session
        self.epoch = epoch
        self.seq = seq
        self.server = server
        self.allowsForce = allowsForce
        self.user = user
    }
}

/// An `error` reply (Protocol.md 4), or the error result of one batch op.
public struct ServerError: Sendable, Equatable {
    /// The code as sent; `errorCode` when it is one this library knows.
    public var code: String
    public var message: String
    /// The key the error is about (a batch op's, a `not_found`'s).
    public var key: String?
    /// A `not_found` for a deleted key: its tombstone's version.
    public var version: Int64?
    /// A `not_found` that names a version: whether the key was deleted.
    public var deleted: Bool?

    public init(code: String, message: String, key: String? = nil, version: Int64? = nil, deleted: Bool? = nil) {
        self.code = code
        self.message = message
        self.key = key
        self.version = version
        self.deleted = deleted
    }

    /// The code, when it is one of Protocol.md's (a newer server may send others).
    public var errorCode: ErrorCode? { ErrorCode(rawValue: code) }
}

/// An `update`: a change to a key a subscription matches (Protocol.md 5).
public struct Update: Sendable, Equatable {
    public var sub: Int64
    public var key: String
    public var version: Int64
    public var seq: Int64
    /// The data after the change; nil when the change deleted the key.
    public var data: JSONObject?
    /// When the change committed (ms since the Unix epoch), when the server says.
    public var at: Int64?
    /// Who made the change, on a server that authenticates.
    public var by: String?

    public init(
        sub: Int64,
        key: String,
        version: Int64,
        seq: Int64,
        data: JSONObject?,
        at: Int64? = nil,
        by: String? = nil
    ) {
        self.sub = sub
        self.key = key
        self.version = version
        self.seq = seq
        self.data = data
        self.at = at
        self.by = by
    }

    public var deleted: Bool { data == nil }
}

/// One version of a key in a `history` page (Protocol.md 3.9).
public struct RecordVersion: Sendable, Equatable {
    public var version: Int64
    /// The seq of the change that made this version.
    public var seq: Int64
    /// When it was committed (ms since the Unix epoch), when the server knows.
    public var at: Int64?
    /// Who wrote it, on a server that authenticates.
    public var by: String?
    /// The data of this version; nil when it is a deletion.
    public var data: JSONObject?

    public init(version: Int64, seq: Int64, at: Int64? = nil, by: String? = nil, data: JSONObject?) {
        self.version = version
        self.seq = seq
        self.at = at
        self.by = by
        self.data = data
    }

    public var deleted: Bool { data == nil }
}

/// A page of a key's versions, newest first, as `history` answers it (Protocol.md 3.9).
public struct RecordHistory: Sendable, Equatable {
    public var key: String
    /// Newest first, none between two of them left out.
    public var versions: [RecordVersion]
    /// The `before` of the next page; nil when this page reached the oldest version kept.
    public var next: Int64?
    /// The page reached versions the server no longer keeps: this one and every older one.
    public var gone: Int64?

    public init(key: String, versions: [RecordVersion], next: Int64?, gone: Int64?) {
        self.key = key
        self.versions = versions
        self.next = next
        self.gone = gone
    }
}

/// Another connection's presence on a key (Protocol.md 5.1), or the echo of one's own.
public struct Presence: Sendable, Equatable {
    /// The subscription it came through; nil in the reply to this connection's own `presence`.
    public var sub: Int64?
    public var key: String
    /// The session of the connection whose presence it is.
    public var session: String
    /// The name that connection gave in `hello`.
    public var client: String?
    /// Its user, on a server that authenticates.
    public var user: String?
    /// Its state; nil when it left (cleared its presence or closed).
    public var state: JSONObject?

    public init(
        sub: Int64?,
        key: String,
        session: String,
        client: String? = nil,
        user: String? = nil,
        state: JSONObject?
    ) {
        self.sub = sub
        self.key = key
        self.session = session
        self.client = client
        self.user = user
        self.state = state
    }
}

/// The `subscribed` that answers `subscribe` (Protocol.md 5).
public struct Subscribed: Sendable, Equatable {
    public var sub: Int64
    /// The seq the subscription starts at: updates after it follow.
    public var seq: Int64
    /// A resume could not replay from `since`: snapshots of the current state follow instead.
    public var reset: Bool
    /// How many `snapshot` messages follow.
    public var snapshots: Int64

    public init(sub: Int64, seq: Int64, reset: Bool, snapshots: Int64) {
        self.sub = sub
        self.seq = seq
        self.reset = reset
        self.snapshots = snapshots
    }
}

/// Every message a Verso server sends (Protocol.md), decoded: the one vocabulary the client
/// library, the conformance suite and the load tool read the server with. The server writes the
/// same messages with `Replies` and `EncodedUpdate`, tested to decode as these.
public enum ServerMessage: Sendable, Equatable {
    case welcome(Welcome)
    /// A single write's ack (in a batch's results, also a `check` that held). `merged`: a
    /// `"merge": "fields"` write merged into a newer version than its base; `replayed`: the stored
    /// outcome of its idempotency key.
    case ack(key: String, version: Int64, seq: Int64, merged: Bool, replayed: Bool)
    /// A txn's ack: every key it names with its version afterwards.
    case txnAck(TxnAck, versions: [BytewiseString: Int64])
    /// One write's stale base; nothing changed.
    case conflict(RecordConflict)
    /// A txn's stale bases (every one); nothing changed.
    case txnConflict([RecordConflict])
    case error(ServerError)
    /// The reply to `get` (`sub` nil), or one current record of a subscription's start.
    case snapshot(sub: Int64?, Record)
    case update(Update)
    /// A subscription's bookmark while no matching change arrives: every matching change up to
    /// `seq` has been sent before it (resume with `since: seq`).
    case progress(sub: Int64, seq: Int64)
    /// A batch's reply: an ack, conflict or error per op, in order.
    case results([ServerMessage], replayed: Bool)
    case subscribed(Subscribed)
    case unsubscribed(sub: Int64)
    /// A page of `list`; `next` is the cursor of the next page, nil on the last.
    case records([Record], next: String?)
    /// A page of `history`.
    case history(RecordHistory)
    /// A connection's presence on a key changed (or, with no `sub`, the reply to `presence`).
    case presence(Presence)
}

/// A message from the server that does not read as Protocol.md says: what is wrong with it.
public struct MalformedServerMessage: Error, Sendable, Equatable, CustomStringConvertible {
    public var problem: String

    public init(_ problem: String) {
        self.problem = problem
    }

    public var description: String { "malformed server message: \(problem)" }
}

extension ServerMessage {
    /// The message's `type`, as sent.
    public var type: String {
        switch self {
        case .welcome: "welcome"
        case .ack, .txnAck: "ack"
        case .conflict, .txnConflict: "conflict"
        case .error: "error"
        case .snapshot: "snapshot"
        case .update: "update"
        case .progress: "progress"
        case .results: "results"
        case .subscribed: "subscribed"
        case .unsubscribed: "unsubscribed"
        case .records: "records"
        case .history: "history"
        case .presence: "presence"
        }
    }

    /// Reads a message from the server's JSON text; also returns its `rid` (nil for one the
    /// server sends of its own accord). Members this library does not know are ignored; a
    /// missing or mistyped member it needs throws `MalformedServerMessage`.
    public static func decode(text: String) throws -> (rid: JSONValue?, message: ServerMessage) {
        let value: JSONValue
        do {
            value = try JSONParser.parse(text, maxDepth: JSONParser.maxReplyDepth)
        } catch {
            throw MalformedServerMessage("not JSON: \(error)")
        }
        return (value["rid"], try decode(value))
    }

    /// Reads a parsed message from the server (its `rid` is left to the caller).
    public static func decode(_ value: JSONValue) throws -> ServerMessage {
        let message = try Members(value, of: "message")
        let type = try message.string("type")
        switch type {
        case "welcome":
            return .welcome(
                Welcome(
                    session: try message.string("session"),
                    epoch: try message.string("epoch"),
                    seq: try message.integer("seq"),
                    server: try message.string("server"),
                    allowsForce: try message.bool("force"),
                    user: try message.optionalString("user")
                )
            )
        case "ack":
            guard let versions = message["versions"] else {
                return .ack(
                    key: try message.string("key"),
                    version: try message.integer("version"),
                    seq: try message.integer("seq"),
                    merged: try message.flag("merged"),
                    replayed: try message.flag("replayed")
                )
            }
            guard case .object(let members) = versions else { throw message.problem("versions", "an object") }
            var decoded: [BytewiseString: Int64] = [:]
            for (key, version) in members {
                guard let version = version.integerValue else { throw message.problem("versions", "integers") }
                decoded[key] = version
            }
            let merged = try message.optionalArray("merged")?.map { item -> BytewiseString in
                guard let key = item.stringValue else { throw message.problem("merged", "an array of keys") }
                return BytewiseString(key)
            }
            let ack = TxnAck(
                seq: try message.integer("seq"),
                merged: Set(merged ?? []),
                replayed: try message.flag("replayed")
            )
            return .txnAck(ack, versions: decoded)
        case "conflict":
            guard let conflicts = try message.optionalArray("conflicts") else {
                return .conflict(try recordConflict(message))
            }
            return .txnConflict(try conflicts.map { try recordConflict(Members($0, of: "conflicts entry")) })
        case "error":
            return .error(
                ServerError(
                    code: try message.string("code"),
                    message: try message.string("message"),
                    key: try message.optionalString("key"),
                    version: try message.optionalInteger("version"),
                    deleted: try message.optionalBool("deleted")
                )
            )
        case "snapshot":
            return .snapshot(sub: try message.optionalInteger("sub"), try record(message))
        case "update":
            let data = try data(message)
            return .update(
                Update(
                    sub: try message.integer("sub"),
                    key: try message.string("key"),
                    version: try message.integer("version"),
                    seq: try message.integer("seq"),
                    data: data,
                    at: try message.optionalInteger("at"),
                    by: try message.optionalString("by")
                )
            )
        case "progress":
            return .progress(sub: try message.integer("sub"), seq: try message.integer("seq"))
        case "results":
            let results = try message.array("results").map { item in
                let result = try decode(item)
                switch result {
                case .ack, .conflict, .error: return result
                default: throw message.problem("results", "acks, conflicts and errors")
                }
            }
            return .results(results, replayed: try message.flag("replayed"))
        case "subscribed":
            return .subscribed(
                Subscribed(
                    sub: try message.integer("sub"),
                    seq: try message.integer("seq"),
                    reset: try message.flag("reset"),
                    snapshots: try message.integer("snapshots")
                )
            )
        case "unsubscribed":
            return .unsubscribed(sub: try message.integer("sub"))
        case "records":
            let records = try message.array("records").map { try record(Members($0, of: "records entry")) }
            let next: String?
            switch message["next"] {
            case .string(let cursor)?: next = cursor
            case .null?: next = nil
            default: throw message.problem("next", "a string or null")
            }
            return .records(records, next: next)
        case "history":
            let versions = try message.array("versions").map { item in
                let entry = try Members(item, of: "versions entry")
                return RecordVersion(
                    version: try entry.integer("version"),
                    seq: try entry.integer("seq"),
                    at: try entry.optionalInteger("at"),
                    by: try entry.optionalString("by"),
                    data: try data(entry)
                )
            }
            let next: Int64?
            switch message["next"] {
            case .null?: next = nil
            case let value? where value.integerValue != nil: next = value.integerValue
            default: throw message.problem("next", "an integer or null")
            }
            return .history(
                RecordHistory(
                    key: try message.string("key"),
                    versions: versions,
                    next: next,
                    gone: try message.optionalInteger("gone")
                )
            )
        case "presence":
            let state: JSONObject?
            switch message["state"] {
            case .object(let object)?: state = object
            case .null?: state = nil
            default: throw message.problem("state", "an object or null")
            }
            return .presence(
                Presence(
                    sub: try message.optionalInteger("sub"),
                    key: try message.string("key"),
                    session: try message.string("session"),
                    client: try message.optionalString("client"),
                    user: try message.optionalString("user"),
                    state: state
                )
            )
        default:
            throw MalformedServerMessage("unknown type \(quotedForMessage(type))")
        }
    }

    /// `data` and `deleted` as an update or a history entry has them: an object, or null with
    /// `"deleted": true`.
    private static func data(_ members: Members) throws -> JSONObject? {
        let deleted = try members.bool("deleted")
        switch (members["data"], deleted) {
        case (.object(let object)?, false): return object
        case (.null?, true): return nil
        default: throw members.problem("data", deleted ? "null for a deletion" : "an object")
        }
    }

    private static func record(_ members: Members) throws -> Record {
        guard case .object(let data)? = members["data"] else { throw members.problem("data", "an object") }
        return Record(key: try members.string("key"), version: try members.integer("version"), data: data)
    }

    /// One stale key: `reason` and `clashes` come together, only for a merge write; `changed`
    /// with any conflict whose paths since its base the server knows.
    private static func recordConflict(_ members: Members) throws -> RecordConflict {
        let data: JSONObject?
        switch members["data"] {
        case .object(let object)?: data = object
        case .null?: data = nil
        default: throw members.problem("data", "an object or null")
        }
        var conflict = RecordConflict(
            key: try members.string("key"),
            base: try members.integer("base"),
            version: try members.integer("version"),
            data: data,
            deleted: try members.bool("deleted")
        )
        conflict.hidden = try members.flag("hidden")
        conflict.at = try members.optionalInteger("at")
        conflict.by = try members.optionalString("by")
        if let changed = try members.optionalArray("changed") {
            conflict.changed = try paths(changed, members, "changed")
        }
        guard let reason = try members.optionalString("reason") else {
            guard members["clashes"] == nil else { throw members.problem("clashes", "absent without a reason") }
            return conflict
        }
        guard let refusal = MergeRefusal(rawValue: reason) else { throw members.problem("reason", "a known reason") }
        conflict.reason = refusal
        conflict.clashes = try paths(members.array("clashes"), members, "clashes")
        return conflict
    }

    private static func paths(_ items: [JSONValue], _ members: Members, _ name: String) throws -> [FieldPath] {
        try items.map { item in
            guard let pointer = item.stringValue, let path = FieldPath(pointer: pointer) else {
                throw members.problem(name, "an array of JSON Pointers")
            }
            return path
        }
    }
}

/// `text` in quotes, for a problem's description.
private func quotedForMessage(_ text: String) -> String {
    var writer = JSONWriter()
    writer.string(text)
    return String(decoding: writer.bytes, as: UTF8.self)
}

/// The members of one message (or one entry of it), read with the problem named when one is
/// missing or of the wrong kind.
private struct Members {
    let object: JSONObject
    let what: String

    init(_ value: JSONValue, of what: String) throws {
        guard case .object(let object) = value else { throw MalformedServerMessage("\(what) is not an object") }
        self.object = object
        self.what = (object["type"]?.stringValue).map { "\(what) \($0)" } ?? what
    }

    subscript(name: String) -> JSONValue? { object[BytewiseString(name)] }

    func problem(_ name: String, _ expected: String) -> MalformedServerMessage {
        MalformedServerMessage("\(what): \(quotedForMessage(name)) must be \(expected)")
    }

    func string(_ name: String) throws -> String {
        guard let value = try optionalString(name) else { throw problem(name, "a string") }
        return value
    }

    func optionalString(_ name: String) throws -> String? {
        guard let value = self[name] else { return nil }
        guard let string = value.stringValue else { throw problem(name, "a string") }
        return string
    }

    func integer(_ name: String) throws -> Int64 {
        guard let value = try optionalInteger(name) else { throw problem(name, "an integer") }
        return value
    }

    func optionalInteger(_ name: String) throws -> Int64? {
        guard let value = self[name] else { return nil }
        guard let integer = value.integerValue else { throw problem(name, "an integer") }
        return integer
    }

    func bool(_ name: String) throws -> Bool {
        guard let value = try optionalBool(name) else { throw problem(name, "true or false") }
        return value
    }

    func optionalBool(_ name: String) throws -> Bool? {
        guard let value = self[name] else { return nil }
        guard case .bool(let flag) = value else { throw problem(name, "true or false") }
        return flag
    }

    /// A member that is sent only when true.
    func flag(_ name: String) throws -> Bool {
        try optionalBool(name) ?? false
    }

    func array(_ name: String) throws -> [JSONValue] {
        guard let items = try optionalArray(name) else { throw problem(name, "an array") }
        return items
    }

    func optionalArray(_ name: String) throws -> [JSONValue]? {
        guard let value = self[name] else { return nil }
        guard case .array(let items) = value else { throw problem(name, "an array") }
        return items
    }
}
