/// Who queued a write: one per connection. Writes of one client are decided in the order
/// queued; writes of different clients take turns (see `FairQueue`).
public struct WriteClient: Hashable, Sendable {
    let id: UInt64
}

/// Writes waiting for a group commit, one FIFO per client, taken in turns.
///
/// A batch takes the oldest write of every waiting client first (round 1, the clients in
/// round-robin order from a start that moves on at every batch), then the second of each,
/// and so on: at most `perClient` writes of one client and `maxCount` in all. So a client's
/// writes keep their order, and a client with many writes queued cannot put another
/// client's first write behind all of them. Writes a commit did not get to go back to the
/// front of their client's queue with `putBack`. Pure: no locking, no I/O.
struct FairQueue<Element> {
    /// One batch: `items` in the order to decide them; the first `firstRound` are the oldest
    /// write of each client in the batch.
    struct Batch {
        var items: [(client: WriteClient, element: Element)]
        var firstRound: Int
    }

    private var queues: [WriteClient: [Element]] = [:]
    /// Clients with queued writes, in the order they take turns in the next batch.
    private var turns: [WriteClient] = []
    private(set) var count = 0

    var isEmpty: Bool { count == 0 }

    /// Queues `element` as `client`'s newest write.
    mutating func append(_ element: Element, from client: WriteClient) {
        if queues[client, default: []].isEmpty { turns.append(client) }
        queues[client, default: []].append(element)
        count += 1
    }

    /// Takes the next batch (empty when nothing is queued).
    mutating func nextBatch(maxCount: Int, perClient: Int) -> Batch {
        var batch = Batch(items: [], firstRound: 0)
        guard !turns.isEmpty, maxCount > 0, perClient > 0 else { return batch }
        let order = turns
        var taken = [Int](repeating: 0, count: order.count)
        rounds: for round in 0..<perClient {
            var tookAny = false
            for (index, client) in order.enumerated() {
                guard let queue = queues[client], queue.count > round else { continue }
                batch.items.append((client, queue[round]))
                taken[index] += 1
                tookAny = true
                if round == 0 { batch.firstRound += 1 }
                if batch.items.count == maxCount { break rounds }
            }
            if !tookAny { break }
        }
        for (index, client) in order.enumerated() where taken[index] > 0 {
            queues[client]!.removeFirst(taken[index])
            if queues[client]!.isEmpty { queues[client] = nil }
        }
        count -= batch.items.count
        // The next batch starts with the first client left out of round 1, or else with the
        // client after this batch's first.
        let pivot = Swift.min(order.count, batch.firstRound < order.count ? batch.firstRound : 1)
        turns = (order[pivot...] + order[..<pivot]).filter { queues[$0] != nil }
        return batch
    }

    /// Puts back writes of a batch that were not decided (a suffix of the batch), each
    /// client's before its writes still queued, keeping their order.
    mutating func putBack(_ items: some Collection<(client: WriteClient, element: Element)>) {
        var byClient: [WriteClient: [Element]] = [:]
        var clients: [WriteClient] = []
        for item in items {
            if byClient[item.client] == nil { clients.append(item.client) }
            byClient[item.client, default: []].append(item.element)
        }
        for client in clients {
            if queues[client, default: []].isEmpty { turns.insert(client, at: 0) }
            queues[client, default: []].insert(contentsOf: byClient[client]!, at: 0)
        }
        count += items.count
    }
}

extension FairQueue: Sendable where Element: Sendable {}
extension FairQueue.Batch: Sendable where Element: Sendable {}
