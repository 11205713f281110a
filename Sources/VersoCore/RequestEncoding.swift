/// Requests as a client sends them: the inverse of `Request.parse(_:)`, so that every client
/// builds each message from the same typed vocabulary the server reads it into.
extension Request {
    /// The message for this request, its members as Protocol.md names them; `rid` and
    /// `idempotencyKey` are added when given. `Request.parse` reads it back to the same
    /// envelope.
    public func message(rid: JSONValue? = nil, idempotencyKey: String? = nil) -> JSONObject {
        var message: JSONObject
        switch self {
        case .hello(let client, let token):
            message = ["type": .string("hello")]
            message["client"] = client.map { .string($0) }
            message["token"] = token.map { .string($0) }
        case .get(let key):
            message = ["type": .string("get"), "key": .string(key)]
        case .write(let operation):
            message = operation.members
            message["type"] = .string(operation.action.name)
        case .txn(let operations):
            message = ["type": .string("txn"), "ops": .array(operations.map(\.opMessage))]
        case .batch(let operations):
            message = ["type": .string("batch"), "ops": .array(operations.map(\.opMessage))]
        case .subscribe(let filter, let since, let epoch, let progress):
            message = ["type": .string("subscribe")]
            switch filter {
            case .keys(let keys): message["keys"] = .array(keys.sorted().map { .string($0.string) })
            case .prefix(let prefix): message["prefix"] = .string(prefix)
            }
            message["since"] = since.map { .integer($0) }
            message["epoch"] = epoch.map { .string($0) }
            message["progress"] = progress.map { .integer($0) }
        case .unsubscribe(let sub):
            message = ["type": .string("unsubscribe"), "sub": .integer(sub)]
        case .list(let prefix, let after, let limit):
            message = ["type": .string("list"), "prefix": .string(prefix), "limit": .integer(Int64(limit))]
            message["after"] = after.map { .string($0) }
        case .history(let key, let before, let limit):
            message = ["type": .string("history"), "key": .string(key), "limit": .integer(Int64(limit))]
            message["before"] = before.map { .integer($0) }
        case .presence(let key, let state):
            message = ["type": .string("presence"), "key": .string(key), "state": state.map { .object($0) } ?? .null]
        }
        message["rid"] = rid
        message["idempotency_key"] = idempotencyKey.map { .string($0) }
        return message
    }

    /// `message(rid:idempotencyKey:)` encoded as the text sent on the wire.
    public func encoded(rid: JSONValue? = nil, idempotencyKey: String? = nil) -> String {
        JSONValue.object(message(rid: rid, idempotencyKey: idempotencyKey)).encodedString
    }
}

extension WriteAction {
    /// The name of the action: the message `type` of a single write, the `op` of a txn or
    /// batch op.
    public var name: String {
        switch self {
        case .put, .putEncoded: "put"
        case .patch: "patch"
        case .delete: "delete"
        case .check: "check"
        }
    }
}

extension WriteOperation {
    /// The members an operation has in any write: key, base (or force), data or patch, merge.
    var members: JSONObject {
        var members: JSONObject = ["key": .string(key)]
        switch precondition {
        case .base(let base): members["base"] = .integer(base)
        case .force: members["force"] = .bool(true)
        }
        switch action {
        case .put(let data): members["data"] = .object(data)
        case .putEncoded(let data): members["data"] = .object(data.object)
        case .patch(let patch): members["patch"] = .object(patch)
        case .delete, .check: break
        }
        if merge == .fields { members["merge"] = .string("fields") }
        return members
    }

    /// The operation as an element of a txn's or batch's `ops`.
    public var opMessage: JSONValue {
        var members = members
        members["op"] = .string(action.name)
        return .object(members)
    }
}
