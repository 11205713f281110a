import FuzzSupport
import VersoCore

// Request.parse (every client text message) and the versioning rule the store applies to
// each parsed write.
//
// Invariants, for any text:
// - parsing depends only on the JSON value: the canonical re-encoding of the message parses to
//   the same request, or the same refusal;
// - a refusal is `bad_request` or `too_large` with a message, carries the message's `rid` when it
//   had a readable one (a string or an integer) and none otherwise, and its `error` reply is
//   valid JSON that says the same;
// - an accepted request is within the documented limits (valid keys, 1-1000 distinct txn keys,
//   1-1000 subscribe keys, list limit 1-1000, non-negative bases);
// - a refused write changes nothing: for every accepted write operation and each kind of current
//   state (none, live, tombstone), `VersioningRules.decide` either accepts exactly one new version
//   (data an object, or nil only for a delete) or leaves the current state as it was.

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzRequest(_ start: UnsafeRawPointer, _ count: Int) -> CInt {
    // A WebSocket text message is valid UTF-8 (the server validates it); repair anything else.
    let text = String(decoding: fuzzInput(start, count), as: UTF8.self)
    let result = parse(text)

    let value = try? JSONParser.parse(text)
    if let value {
        invariant(parse(value.encodedString) == result, "parsing depends on more than the JSON value: \(text)")
    }

    switch result {
    case .failure(let rejected):
        checkRefusal(rejected, message: value)
    case .success(let envelope):
        checkAccepted(envelope.request)
    }
    return 0
}

private func parse(_ text: String) -> Result<RequestEnvelope, RejectedRequest> {
    Result { () throws(RejectedRequest) in try Request.parse(text) }
}

private func checkRefusal(_ rejected: RejectedRequest, message: JSONValue?) {
    invariant(
        rejected.error.code == .badRequest || rejected.error.code == .tooLarge,
        "refused with \(rejected.error.code)"
    )
    invariant(!rejected.error.message.isEmpty, "refusal without a message")
    if let rid = rejected.rid {
        invariant(
            rid == message?["rid"],
            "refusal names rid \(rid), the message had \(String(describing: message?["rid"]))"
        )
        switch rid {
        case .string: break
        case .number(let digits): invariant(Int64(digits) != nil, "refusal rid \(digits) is not an integer")
        default: invariant(false, "refusal rid \(rid) is neither a string nor an integer")
        }
    }
    let reply = Replies.error(rid: rejected.rid, rejected.error)
    guard let parsed = try? JSONParser.parse(String(decoding: reply, as: UTF8.self)) else {
        fatalError("invariant broken: the error reply is not valid JSON: \(String(decoding: reply, as: UTF8.self))")
    }
    invariant(parsed["type"] == .string("error"), "error reply of type \(String(describing: parsed["type"]))")
    invariant(parsed["code"] == .string(rejected.error.code.rawValue), "error reply with another code")
    invariant(parsed["message"] == .string(rejected.error.message), "error reply with another message")
    invariant(parsed["rid"] == rejected.rid, "error reply with another rid")
}

private func checkKey(_ key: String) {
    invariant(RecordKey.problem(with: key) == nil, "accepted an invalid key \(key.debugDescription)")
}

private func checkAccepted(_ request: Request) {
    switch request {
    case .hello:
        break
    case .get(let key):
        checkKey(key)
    case .write(let operation):
        invariant(operation.action != .check, "a single write that is a check")
        checkWrite(operation)
    case .txn(let operations):
        invariant((1...RequestLimits.maxTxnOps).contains(operations.count), "txn of \(operations.count) ops")
        invariant(Set(operations.map(\.key)).count == operations.count, "txn with a repeated key")
        operations.forEach(checkWrite)
    case .batch(let operations):
        // Unlike a txn, a batch may name a key more than once.
        invariant((1...RequestLimits.maxTxnOps).contains(operations.count), "batch of \(operations.count) ops")
        operations.forEach(checkWrite)
    case .subscribe(let filter, let since, _, _):
        invariant((since ?? 0) >= 0, "subscribe since \(since ?? 0)")
        switch filter {
        case .keys(let keys):
            invariant((1...RequestLimits.maxSubscribeKeys).contains(keys.count), "subscribe to \(keys.count) keys")
            keys.forEach { checkKey($0.string) }
        case .prefix(let prefix):
            invariant(RecordKey.prefixProblem(with: prefix) == nil, "accepted an invalid prefix")
        }
    case .unsubscribe(let sub):
        invariant(sub >= 1, "unsubscribe \(sub)")
    case .list(let prefix, let after, let limit):
        invariant(RecordKey.prefixProblem(with: prefix) == nil, "accepted an invalid prefix")
        if let after { checkKey(after) }
        invariant((1...RequestLimits.maxListLimit).contains(limit), "list limit \(limit)")
    case .history(let key, let before, let limit):
        checkKey(key)
        invariant((before ?? 1) >= 1, "history before \(before ?? 0)")
        invariant((1...RequestLimits.maxHistoryLimit).contains(limit), "history limit \(limit)")
    case .presence(let key, let state):
        checkKey(key)
        if let state {
            let bytes = JSONValue.object(state).encodedBytes.count
            invariant(bytes <= RequestLimits.maxPresenceStateBytes, "presence state of \(bytes) bytes")
        }
    }
}

/// The states a key can be in when a write reaches the store.
private let currentStates: [RecordState?] = [
    nil,
    RecordState(version: 3, data: ["a": .integer(1), "b": .object(["c": .string("d")])]),
    RecordState(version: 2, data: nil),
]

private func checkWrite(_ operation: WriteOperation) {
    checkKey(operation.key)
    if case .base(let base) = operation.precondition {
        invariant(base >= 0, "accepted base \(base)")
    }
    for current in currentStates {
        let currentVersion = current?.version ?? 0
        let decision = VersioningRules.decide(operation, current: current)
        if case .base(let base) = operation.precondition, base != currentVersion {
            invariant(
                decision == .conflict(current: current),
                "base \(base) on version \(currentVersion) decided \(decision)"
            )
            continue
        }
        switch decision {
        case .accept(let next):
            invariant(next.version == currentVersion + 1, "accepted version \(next.version) after \(currentVersion)")
            switch operation.action {
            case .put(let data):
                invariant(next.data == data, "a put stored other data")
            case .putEncoded(let data):
                invariant(next.encoded == data, "a put that came encoded stored other bytes")
                invariant(next.data == data.object, "a put that came encoded stored other data")
                invariant(
                    JSONValue.object(data.object).encodedBytes == data.bytes,
                    "encoded data that is not canonical"
                )
            case .patch(let patch):
                let merged = MergePatch.apply(.object(patch), to: current?.data.map { .object($0) })
                invariant(next.data.map { JSONValue.object($0) } == merged, "a patch stored other data than the merge")
            case .delete:
                invariant(next.data == nil, "a delete left data")
                invariant(current?.isDeleted == false, "a delete of a missing or deleted key was accepted")
            case .check:
                invariant(false, "a check was accepted as a change")
            }
        case .unchanged:
            invariant(operation.action == .check, "\(operation.action) decided unchanged")
        case .notFound(let reported):
            invariant(
                operation.action == .delete && (current == nil || current?.isDeleted == true),
                "not found for \(operation.action)"
            )
            invariant(reported == current, "not found reports another state")
        case .conflict:
            invariant(false, "a conflict for a write whose base holds")
        case .merged, .mergeRefused:
            invariant(false, "the plain rule decided a merge")
        }
    }
}
