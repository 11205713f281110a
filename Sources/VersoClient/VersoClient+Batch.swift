import VersoCore

// `batch` (Protocol.md 3.8): many writes in one request, each decided on its own.
extension VersoClient {
    /// Sends `operations` (1–1000) as one batch and returns a result per op, in the same order.
    ///
    /// Unlike `txn`, a batch is not all or nothing: each op is decided on its own, in order,
    /// against the state the ops before it left (so a key may appear more than once), and gets
    /// its own ack, conflict or error. Everything the batch applied is committed together in one
    /// durable transaction before the reply, each applied op with its own seq. A conflict or error
    /// of one op changes nothing for the others.
    ///
    /// Ops with `merge` are merged as `put` describes. A merge op that is not a put or patch with
    /// a base throws `.invalidArgument` before sending. A batch the server refuses whole (more
    /// than 1000 ops, a forced op on a server without `--allow-force`, an op the token may not
    /// make) throws that error; nothing was applied.
    ///
    /// The batch carries `idempotencyKey` (default: a new UUID) and, like every write, is sent
    /// again with it when the connection drops before the reply: it is applied at most once, and
    /// a batch that had been committed is answered with its first results, marked `replayed`
    /// (Protocol.md 3.7). Give your own key to retry the same batch later, even from another
    /// client.
    public func batch(_ operations: [TxnOperation], idempotencyKey: String? = nil) async throws -> BatchOutcome {
        let fields = Request.batch(try Self.writeOperations(operations)).message(
            idempotencyKey: try Self.idempotencyKey(idempotencyKey)
        )
        let reply = try await send(fields, resendable: true)
        guard case .results(let items, let replayed) = reply, items.count == operations.count else {
            throw unexpected(reply)
        }
        var results: [BatchResult] = []
        results.reserveCapacity(items.count)
        for (operation, item) in zip(operations, items) {
            switch item {
            case .ack(let key, let version, let seq, let merged, _):
                results.append(.ack(key: key, version: version, seq: seq, merged: merged))
            case .conflict(let conflict):
                results.append(.conflict(conflict))
            case .error(let error):
                results.append(
                    .error(key: error.key ?? operation.key, code: error.errorCode ?? .internal, message: error.message)
                )
            default:
                throw unexpected(reply)
            }
        }
        return BatchOutcome(results: results, replayed: replayed)
    }
}
