/// Which records a subscription follows.
public enum SubscriptionFilter: Sendable, Equatable {
    /// These exact keys (compared as UTF-8 bytes).
    case keys(Set<BytewiseString>)
    /// Every key that starts with this prefix (compared as UTF-8 bytes; "" matches all).
    case prefix(String)

    /// Whether a change to `key` is delivered to the subscription.
    public func matches(_ key: String) -> Bool {
        switch self {
        case .keys(let keys): keys.contains(BytewiseString(key))
        case .prefix(let prefix): RecordKey.key(key, hasPrefix: prefix)
        }
    }
}

/// A client request, checked and typed. See Protocol.md for each message.
public enum Request: Sendable, Equatable {
    /// `token`: an access token, when the server authenticates (Protocol.md section 2.1).
    case hello(client: String?, token: String?)
    case get(key: String)
    /// A single `put`, `patch` or `delete`.
    case write(WriteOperation)
    case txn([WriteOperation])
    /// Ops decided one by one, each against the state the ones before it left, and committed
    /// together; one result per op.
    case batch([WriteOperation])
    /// `progress`: seconds between `progress` messages while no matching change arrives
    /// (Protocol.md section 5); nil for none.
    case subscribe(SubscriptionFilter, since: Int64?, epoch: String?, progress: Int64? = nil)
    case unsubscribe(sub: Int64)
    case list(prefix: String, after: String?, limit: Int)
    /// A page of the key's versions, newest first, below version `before` (Protocol.md 3.9).
    case history(key: String, before: Int64?, limit: Int)
    /// Sets (nil: clears) this connection's presence on `key` (Protocol.md 5.1).
    case presence(key: String, state: JSONObject?)
}

/// A request together with the `rid` the client gave it.
public struct RequestEnvelope: Sendable, Equatable {
    /// The client's request id (a string or an integer), echoed in the reply.
    public var rid: JSONValue?
    public var request: Request
    /// The write's `idempotency_key` (1–128 bytes), when the client gave one: a second write
    /// with the same key gets the first one's reply (Protocol.md section 3.7).
    public var idempotencyKey: String?

    public init(rid: JSONValue?, request: Request, idempotencyKey: String? = nil) {
        self.rid = rid
        self.request = request
        self.idempotencyKey = idempotencyKey
    }
}

/// A request that could not be accepted, with the `rid` when it could be read.
public struct RejectedRequest: Error, Sendable, Equatable {
    public var rid: JSONValue?
    public var error: RequestError
}

/// Limits on what one request may ask for.
public enum RequestLimits {
    /// Most ops in one `txn` or `batch`.
    public static let maxTxnOps = 1000
    /// Most keys in one `subscribe`.
    public static let maxSubscribeKeys = 1000
    /// Most subscriptions one connection may hold at once; one more is refused with `too_large`.
    public static let maxSubscriptionsPerConnection = 1000
    /// Records per `list` page when `limit` is not given.
    public static let defaultListLimit = 100
    /// Largest `limit` a `list` may ask for.
    public static let maxListLimit = 1000
    /// Most bytes of UTF-8 in an `idempotency_key`.
    public static let maxIdempotencyKeyBytes = 128
    /// Longest interval a subscription may ask between `progress` messages, in seconds.
    public static let maxProgressSeconds: Int64 = 3600
    /// Versions per `history` page when `limit` is not given.
    public static let defaultHistoryLimit = 20
    /// Largest `limit` a `history` may ask for.
    public static let maxHistoryLimit = 100
    /// Most bytes of a presence `state`, encoded as the server sends it.
    public static let maxPresenceStateBytes = 1024
    /// Most keys one connection may have presence on at once.
    public static let maxPresenceKeysPerConnection = 32
    /// Presence changes one connection may send per second (and in a burst); changes past it
    /// are coalesced, the latest state per key going out when the connection has room again.
    public static let presenceChangesPerSecond = 10
}

extension Request {
    /// Parses one text message into a typed request.
    ///
    /// Throws `RejectedRequest` naming what was wrong (code `bad_request`), with the `rid` when
    /// the message was a JSON object whose `rid` could be read.
    public static func parse(_ text: String) throws(RejectedRequest) -> RequestEnvelope {
        var text = text
        return try text.withUTF8 { bytes in Result { () throws(RejectedRequest) in try parse(utf8: bytes) } }.get()
    }

    /// Parses one text message given as its UTF-8 bytes, with no `String` made of it; as
    /// `parse(_:)` otherwise.
    ///
    /// A message that parses is valid UTF-8 (the parser validates every string and accepts
    /// nothing but ASCII around them); one that does not may not be, which the caller checks
    /// when it must tell the two apart.
    ///
    /// A `put` whose `data` is written exactly as the server writes data (compact, members in
    /// UTF-8 byte order, only the escapes it uses) is a `WriteAction.putEncoded` of those bytes:
    /// checked as strictly as any data, but with no tree built of it, and stored as it came.
    public static func parse(utf8 bytes: UnsafeBufferPointer<UInt8>) throws(RejectedRequest) -> RequestEnvelope {
        let parsed: (value: JSONValue, leftOut: Range<Int>?)
        do {
            parsed = try JSONParser.parse(bytes, leavingOut: "data")
        } catch {
            throw RejectedRequest(rid: nil, error: .badRequest("message is not valid JSON: \(error)"))
        }
        let data = parsed.leftOut.map { CanonicalObject(checked: Array(UnsafeBufferPointer(rebasing: bytes[$0]))) }
        return try envelope(parsed.value, encodedData: data)
    }

    /// The request a parsed message makes. `encodedData` is the message's `data` when the
    /// parser left it out of `value` (a canonical object).
    private static func envelope(
        _ value: JSONValue,
        encodedData: CanonicalObject?
    ) throws(RejectedRequest) -> RequestEnvelope {
        guard case .object(let fields) = value else {
            throw RejectedRequest(rid: nil, error: .badRequest("message must be a JSON object"))
        }
        var rid: JSONValue?
        switch fields["rid"] {
        case nil: rid = nil
        case .string?: rid = fields["rid"]
        case .number(let text)? where Int64(text) != nil: rid = fields["rid"]
        default:
            throw RejectedRequest(rid: nil, error: .badRequest("\"rid\" must be a string or an integer"))
        }
        do {
            let request = try parse(fields: fields, encodedData: encodedData)
            return RequestEnvelope(rid: rid, request: request, idempotencyKey: try idempotencyKey(fields, of: request))
        } catch {
            throw RejectedRequest(rid: rid, error: error)
        }
    }

    /// The request's `idempotency_key`: a string of 1–128 bytes, on writes only.
    static func idempotencyKey(_ fields: JSONObject, of request: Request) throws(RequestError) -> String? {
        guard let value = fields["idempotency_key"], value != .null else { return nil }
        switch request {
        case .write, .txn, .batch: break
        default: throw .badRequest("\"idempotency_key\" is only for put, patch, delete, txn and batch")
        }
        guard case .string(let key) = value, (1...RequestLimits.maxIdempotencyKeyBytes).contains(key.utf8.count)
        else {
            throw .badRequest(
                "\"idempotency_key\" must be a string of 1–\(RequestLimits.maxIdempotencyKeyBytes) bytes (a UUID, say)"
            )
        }
        return key
    }

    /// The request `fields` make; `encodedData` is the `data` member when it was left out of
    /// `fields` as a canonical object (`JSONParser.parse(_:maxDepth:leavingOut:)`).
    static func parse(fields: JSONObject, encodedData: CanonicalObject? = nil) throws(RequestError) -> Request {
        guard let typeValue = fields["type"] else { throw .badRequest("missing \"type\"") }
        guard case .string(let type) = typeValue else { throw .badRequest("\"type\" must be a string") }
        let reader = FieldReader(fields: fields, context: type, encodedData: encodedData)
        switch type {
        case "hello":
            return .hello(client: try reader.optionalString("client"), token: try reader.optionalString("token"))
        case "get":
            return .get(key: try reader.key("key"))
        case "put", "patch", "delete":
            return .write(try reader.operation(type: type))
        case "txn":
            return .txn(try operations(fields, of: type, keysOnce: true))
        case "batch":
            return .batch(try operations(fields, of: type, keysOnce: false))
        case "subscribe":
            let since = try reader.optionalInteger("since", minimum: 0)
            let epoch = try reader.optionalString("epoch")
            let progress = try reader.optionalInteger("progress", minimum: 1)
            if let progress, progress > RequestLimits.maxProgressSeconds {
                throw .badRequest(
                    "subscribe: \"progress\" is seconds between progress messages, 1 to \(RequestLimits.maxProgressSeconds)"
                )
            }
            switch (fields["keys"], fields["prefix"]) {
            case (nil, nil): throw .badRequest("subscribe: give either \"keys\" or \"prefix\"")
            case (.some, .some): throw .badRequest("subscribe: give either \"keys\" or \"prefix\", not both")
            case (.some(let keysValue), nil):
                guard case .array(let keys) = keysValue, !keys.isEmpty else {
                    throw .badRequest("subscribe: \"keys\" must be a non-empty array of keys")
                }
                guard keys.count <= RequestLimits.maxSubscribeKeys else {
                    throw RequestError(
                        .tooLarge,
                        "subscribe: at most \(RequestLimits.maxSubscribeKeys) keys are allowed in one subscription"
                    )
                }
                var set = Set<BytewiseString>()
                for key in keys {
                    guard case .string(let text) = key else {
                        throw .badRequest("subscribe: every key must be a string")
                    }
                    if let problem = RecordKey.problem(with: text) { throw .badRequest("subscribe: \(problem)") }
                    set.insert(BytewiseString(text))
                }
                return .subscribe(.keys(set), since: since, epoch: epoch, progress: progress)
            case (nil, .some):
                return .subscribe(.prefix(try reader.prefix("prefix")), since: since, epoch: epoch, progress: progress)
            }
        case "unsubscribe":
            guard let sub = try reader.optionalInteger("sub", minimum: 1) else {
                throw .badRequest("unsubscribe: missing \"sub\"")
            }
            return .unsubscribe(sub: sub)
        case "list":
            let prefix = fields["prefix"] == nil ? "" : try reader.prefix("prefix")
            let after = fields["after"] == nil || fields["after"] == .null ? nil : try reader.key("after")
            let limit = try reader.limit(default: RequestLimits.defaultListLimit, maximum: RequestLimits.maxListLimit)
            return .list(prefix: prefix, after: after, limit: limit)
        case "history":
            let key = try reader.key("key")
            let before = try reader.optionalInteger("before", minimum: 1)
            let limit = try reader.limit(
                default: RequestLimits.defaultHistoryLimit,
                maximum: RequestLimits.maxHistoryLimit
            )
            return .history(key: key, before: before, limit: limit)
        case "presence":
            let key = try reader.key("key")
            switch fields["state"] {
            case nil: throw .badRequest("presence: missing \"state\" (an object, or null to clear)")
            case .null?: return .presence(key: key, state: nil)
            case .object(let state)?:
                guard JSONValue.object(state).encodedBytes.count <= RequestLimits.maxPresenceStateBytes else {
                    throw RequestError(
                        .tooLarge,
                        "presence: \"state\" must encode to at most \(RequestLimits.maxPresenceStateBytes) bytes"
                    )
                }
                return .presence(key: key, state: state)
            default: throw .badRequest("presence: \"state\" must be a JSON object, or null to clear")
            }
        default:
            throw .badRequest("unknown message type \"\(type)\"")
        }
    }
}

extension Request {
    /// The `ops` of a txn or batch: 1–`maxTxnOps` of them, each a put, patch, delete or check;
    /// with `keysOnce`, no key twice.
    static func operations(
        _ fields: JSONObject,
        of type: String,
        keysOnce: Bool
    ) throws(RequestError) -> [WriteOperation] {
        guard let opsValue = fields["ops"] else { throw .badRequest("\(type): missing \"ops\"") }
        guard case .array(let ops) = opsValue else { throw .badRequest("\(type): \"ops\" must be an array") }
        guard !ops.isEmpty else { throw .badRequest("\(type): \"ops\" must not be empty") }
        guard ops.count <= RequestLimits.maxTxnOps else {
            throw RequestError(.tooLarge, "\(type): at most \(RequestLimits.maxTxnOps) ops are allowed in one \(type)")
        }
        var operations: [WriteOperation] = []
        var seen = Set<BytewiseString>()
        for (index, op) in ops.enumerated() {
            guard case .object(let opFields) = op else { throw .badRequest("\(type): ops[\(index)] must be an object") }
            let opReader = FieldReader(fields: opFields, context: "\(type) ops[\(index)]")
            guard let opName = opFields["op"] else { throw .badRequest("\(type) ops[\(index)]: missing \"op\"") }
            guard case .string(let opType) = opName, ["put", "patch", "delete", "check"].contains(opType) else {
                throw .badRequest("\(type) ops[\(index)]: \"op\" must be one of put, patch, delete, check")
            }
            let operation = try opReader.operation(type: opType)
            guard !keysOnce || seen.insert(BytewiseString(operation.key)).inserted else {
                throw .badRequest(
                    "\(type) ops[\(index)]: key \"\(operation.key)\" appears more than once in the \(type)"
                )
            }
            operations.append(operation)
        }
        return operations
    }
}

/// Reads typed fields out of a request object, with errors that name the field.
private struct FieldReader {
    let fields: JSONObject
    let context: String
    /// The `data` member, when it was left out of `fields` as a canonical object.
    var encodedData: CanonicalObject? = nil

    func key(_ name: String) throws(RequestError) -> String {
        guard let value = fields[name] else { throw .badRequest("\(context): missing \"\(name)\"") }
        guard case .string(let key) = value else { throw .badRequest("\(context): \"\(name)\" must be a string") }
        if let problem = RecordKey.problem(with: key) { throw .badRequest("\(context): \(problem)") }
        return key
    }

    func prefix(_ name: String) throws(RequestError) -> String {
        guard case .string(let prefix)? = fields[name] else {
            throw .badRequest("\(context): \"\(name)\" must be a string")
        }
        if let problem = RecordKey.prefixProblem(with: prefix) { throw .badRequest("\(context): \(problem)") }
        return prefix
    }

    func optionalString(_ name: String) throws(RequestError) -> String? {
        switch fields[name] {
        case nil, .null?: return nil
        case .string(let text)?: return text
        default: throw .badRequest("\(context): \"\(name)\" must be a string")
        }
    }

    func optionalInteger(_ name: String, minimum: Int64) throws(RequestError) -> Int64? {
        guard let value = fields[name], value != .null else { return nil }
        guard let integer = value.integerValue, integer >= minimum else {
            throw .badRequest("\(context): \"\(name)\" must be an integer of at least \(minimum)")
        }
        return integer
    }

    /// A page's `limit`: 1 to `maximum`, `default` when not given.
    func limit(default: Int, maximum: Int) throws(RequestError) -> Int {
        let limit = try optionalInteger("limit", minimum: 1) ?? Int64(`default`)
        guard limit <= Int64(maximum) else { throw .badRequest("\(context): \"limit\" must be at most \(maximum)") }
        return Int(limit)
    }

    func object(_ name: String) throws(RequestError) -> JSONObject {
        guard let value = fields[name] else { throw .badRequest("\(context): missing \"\(name)\"") }
        guard case .object(let members) = value else {
            throw .badRequest("\(context): \"\(name)\" must be a JSON object")
        }
        return members
    }

    func operation(type: String) throws(RequestError) -> WriteOperation {
        let key = try key("key")
        let precondition: WritePrecondition
        let force: Bool
        switch fields["force"] {
        case nil, .bool(false)?: force = false
        case .bool(true)?: force = true
        default: throw .badRequest("\(context): \"force\" must be true or false")
        }
        switch (fields["base"], force) {
        case (.some, true): throw .badRequest("\(context): give either \"base\" or \"force\": true, not both")
        case (nil, true):
            guard type != "check" else { throw .badRequest("\(context): a check needs a \"base\", not \"force\"") }
            precondition = .force
        case (nil, false):
            throw .badRequest("\(context): missing \"base\" (the version the change starts from; 0 creates)")
        case (.some(let base), false):
            guard let version = base.integerValue, version >= 0 else {
                throw .badRequest("\(context): \"base\" must be a non-negative integer")
            }
            precondition = .base(version)
        }
        let action: WriteAction
        switch type {
        case "put":
            if let encodedData { action = .putEncoded(encodedData) } else { action = .put(try object("data")) }
        case "patch": action = .patch(try object("patch"))
        case "delete": action = .delete
        default: action = .check
        }
        let merge: MergePolicy
        switch fields["merge"] {
        case nil, .null?: merge = .plain
        case .string("fields")?:
            guard type == "put" || type == "patch" else {
                throw .badRequest("\(context): \"merge\" is only for put and patch")
            }
            guard !force else { throw .badRequest("\(context): \"merge\" needs a \"base\", not \"force\"") }
            merge = .fields
        default: throw .badRequest("\(context): \"merge\" must be \"fields\"")
        }
        return WriteOperation(key: key, action: action, precondition: precondition, merge: merge)
    }
}
