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
/// front of their client's queue with `putBack`.
///
/// Turns are also fair in cost (deficit round robin): after a commit, `charge` gives each
/// client its part of what the commit cost (the writer's time, say) and credits every client
/// that was waiting with an equal share of it. A client that took more than its share is in
/// debt and sits out the following batches while others wait, each batch paying its debt
/// down by a share, so one client's costly writes (patches of a large record) cannot be in
/// every batch that other clients' cheap writes wait for. A client alone, or when every
/// waiting client is in debt, goes at once: no batch waits for nothing. Pure: no locking,
/// no I/O.
struct FairQueue<Element> {
    /// One batch: `items` in the order to decide them; the first `firstRound` are the oldest
    /// write of each client in the batch. `sharers` are the clients that were waiting when it
    /// was taken (in it or sitting out), among whom `charge` shares its cost.
    struct Batch {
        var items: [(client: WriteClient, element: Element)]
        var firstRound: Int
        var sharers: [WriteClient] = []
    }

    private var queues: [WriteClient: [Element]] = [:]
    /// Emptied queues kept with their storage for the next client that starts queueing, so a
    /// client with one write at a time does not allocate a queue per write.
    private var spareQueues: [[Element]] = []
    /// Most emptied queues kept (a computed property: a generic type has no stored statics).
    static var maxSpareQueues: Int { 256 }
    /// Clients with queued writes, in the order they take turns in the next batch.
    private var turns: [WriteClient] = []
    /// Cost each client took beyond its share; only positive debts are kept.
    private var debts: [WriteClient: Int] = [:]
    /// A client whose debt is at most this takes part in batches (so rounding does not make
    /// clients of equal cost sit out).
    let tolerance: Int
    private(set) var count = 0

    init(tolerance: Int = 0) {
        self.tolerance = tolerance
    }

    /// What `client` owes (for tests and monitoring).
    func debt(of client: WriteClient) -> Int { debts[client] ?? 0 }

    var isEmpty: Bool { count == 0 }

    /// Queues `element` as `client`'s newest write.
    mutating func append(_ element: Element, from client: WriteClient) {
        if queues[client] == nil {
            turns.append(client)
            queues[client] = spareQueues.popLast() ?? []
        }
        queues[client]!.append(element)
        count += 1
    }

    /// Drops `client`'s queue, now empty, keeping its storage for reuse.
    private mutating func retireQueue(of client: WriteClient) {
        guard var queue = queues.removeValue(forKey: client), spareQueues.count < Self.maxSpareQueues else { return }
        queue.removeAll(keepingCapacity: true)
        spareQueues.append(queue)
    }

    /// Takes the next batch (empty when nothing is queued).
    mutating func nextBatch(maxCount: Int, perClient: Int) -> Batch {
        var batch = Batch(items: [], firstRound: 0)
        guard !turns.isEmpty, maxCount > 0, perClient > 0 else { return batch }
        forgiveIfNoneEligible()
        batch.sharers = turns
        let order = turns.filter { debt(of: $0) <= tolerance }
        let sittingOut = turns.filter { debt(of: $0) > tolerance }
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
            if queues[client]!.isEmpty { retireQueue(of: client) }
        }
        count -= batch.items.count
        // The next batch starts with the first client left out of round 1, or else with the
        // client after this batch's first; clients that sat out keep their places after them.
        let pivot = Swift.min(order.count, batch.firstRound < order.count ? batch.firstRound : 1)
        turns = (order[pivot...] + order[..<pivot] + sittingOut).filter { queues[$0] != nil }
        return batch
    }

    /// When every waiting client is in debt, forgives each the least of those debts, so the
    /// least indebted go now rather than the writer idling.
    private mutating func forgiveIfNoneEligible() {
        guard let least = turns.map({ debt(of: $0) }).min(), least > tolerance else { return }
        for client in turns { settle(client, by: -least) }
    }

    /// Records what a committed batch cost: `costs` are the parts of it each client's writes
    /// took, shared equally among `sharers` (the batch's, see `Batch`). Each sharer still
    /// waiting owes its part less the share; debts never go below zero (no one saves up
    /// turns), and a client with nothing queued owes nothing (it holds no one up), so debts
    /// are kept only for waiting clients.
    mutating func charge(_ costs: [WriteClient: Int], sharedBy sharers: [WriteClient]) {
        guard !sharers.isEmpty else { return }
        let share = costs.values.reduce(0, +) / sharers.count
        for client in sharers {
            if queues[client] == nil {
                debts[client] = nil
            } else {
                settle(client, by: (costs[client] ?? 0) - share)
            }
        }
    }

    private mutating func settle(_ client: WriteClient, by change: Int) {
        let debt = debt(of: client) + change
        debts[client] = debt > 0 ? debt : nil
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
