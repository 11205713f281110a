import VersoCore

/// Concurrent write patterns several cases share.
enum Workloads {
    /// Opens `count` connections (every other one with permessage-deflate), waits until all
    /// are open, then runs `body` with each at once; returns each connection's index and result.
    static func simultaneously<T: Sendable>(
        _ context: CaseContext,
        connections count: Int,
        _ body: @escaping @Sendable (_ index: Int, Peer) async throws -> T
    ) async throws -> [(index: Int, result: T)] {
        let gate = StartGate(count: count)
        return try await withThrowingTaskGroup(of: (Int, T).self) { group in
            for index in 0..<count {
                group.addTask {
                    var arrived = false
                    do {
                        return try await context.connect(compression: index % 2 == 0) { peer in
                            await gate.arrive()
                            arrived = true
                            return (index, try await body(index, peer))
                        }
                    } catch {
                        // A connection that failed still counts, so the others are not held.
                        if !arrived { await gate.arrive() }
                        throw error
                    }
                }
            }
            return try await group.reduce(into: []) { $0.append($1) }
        }
    }

    /// `clients` connections each make `perClient` increments of the counter `n` in the records
    /// at `keys` (which must exist with a number `n`), spread over the keys: read the record,
    /// write `n + 1` on its version (put and patch in turn), and on a conflict retry from the
    /// state the conflict carries. Returns every acknowledged write.
    static func increments(_ context: CaseContext, keys: [String], clients: Int, perClient: Int) async throws -> [Ack] {
        try await simultaneously(context, connections: clients) { client, peer in
            var acks: [Ack] = []
            for step in 0..<perClient {
                let key = keys[(client + step) % keys.count]
                acks.append(try await increment(key, peer: peer, usePatch: step % 2 == 1))
            }
            return acks
        }.flatMap(\.result)
    }

    /// One increment of `n` at `key`, retried on conflict.
    private static func increment(_ key: String, peer: Peer, usePatch: Bool) async throws -> Ack {
        var current = try expectType(try await peer.get(key), "snapshot", "get \(key)")
        for _ in 0..<10_000 {
            let version = try require(current["version"]?.int, "no version in \(describe(current))")
            let n = try require(current["data"]?["n"]?.int, "no counter n in \(describe(current))")
            let reply =
                usePatch
                ? try await peer.request(
                    #"{"type":"patch","key":\#(quoted(key)),"base":\#(version),"patch":{"n":\#(n + 1)}}"#
                )
                : try await peer.request(
                    #"{"type":"put","key":\#(quoted(key)),"base":\#(version),"data":{"n":\#(n + 1)}}"#
                )
            switch reply.type {
            case "ack":
                let ack = try peer.ack(of: reply, key: key, "increment \(key) on base \(version)")
                try expectEqual(ack.version, version + 1, "the version the write on base \(version) of \(key) took")
                return ack
            case "conflict":
                try expectEqual(reply["base"]?.int, version, "the conflict's base")
                let newer = try require(reply["version"]?.int, "the conflict has no version: \(describe(reply))")
                try expect(
                    newer > version,
                    "a conflict for base \(version) of \(key) says the current version is \(newer), not newer"
                )
                current = reply
            default:
                throw ConformanceFailure.mismatch(
                    "increment \(key) on base \(version)",
                    expected: "ack or conflict",
                    actual: describe(reply)
                )
            }
        }
        throw ConformanceFailure("increment of \(key) made no progress in 10,000 tries")
    }

    /// Writes `count` times on one connection, round robin over `keys`, starting from the
    /// versions in `versions`; returns the acks in order.
    static func roundRobin(
        _ context: CaseContext,
        keys: [String],
        from versions: [Int64],
        count: Int
    ) async throws -> [Ack] {
        try await context.connect { peer in
            var versions = versions
            var acks: [Ack] = []
            for round in 0..<count {
                let index = round % keys.count
                let ack = try await peer.put(keys[index], base: versions[index], data: #"{"round":\#(round)}"#)
                versions[index] = ack.version
                acks.append(ack)
            }
            return acks
        }
    }
}

/// One `update` message, checked for the members Protocol.md section 5 gives it.
struct Update: Equatable {
    let key: String
    let version: Int64
    let seq: Int64
    let data: JSONValue
    let deleted: Bool

    /// Reads `event` as an update of subscription `sub`.
    init(_ event: JSONValue, sub: JSONValue?, _ what: String) throws {
        try expectType(event, "update", what)
        try expectEqual(event["sub"], sub, "\(what): the update's sub")
        key = try require(event["key"]?.str, "\(what): no key in \(describe(event))")
        version = try require(event["version"]?.int, "\(what): no integer version in \(describe(event))")
        seq = try require(event["seq"]?.int, "\(what): no integer seq in \(describe(event))")
        guard case .bool(let deleted)? = event["deleted"] else {
            throw ConformanceFailure("\(what): no boolean deleted in \(describe(event))")
        }
        self.deleted = deleted
        data = event["data"] ?? .null
        if deleted {
            try expectEqual(data, .null, "\(what): the data of a deleted record's update")
        } else {
            try expect(data.objectValue != nil, "\(what): the data of an update must be an object: \(describe(event))")
        }
    }
}
