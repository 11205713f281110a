import Testing
@testable import VersoEngine

@Suite("Fair queue: connections take turns at the group commit, each one's writes in order")
struct FairQueueTests {
    let a = WriteClient(id: 1)
    let b = WriteClient(id: 2)
    let c = WriteClient(id: 3)

    func queue(_ writes: [(WriteClient, String)]) -> FairQueue<String> {
        var queue = FairQueue<String>()
        for (client, write) in writes { queue.append(write, from: client) }
        return queue
    }

    @Test("a batch takes every client's oldest write first, then the second of each, keeping each client's order")
    func roundsKeepOrder() {
        var queue = queue([(a, "a1"), (a, "a2"), (b, "b1"), (a, "a3"), (c, "c1"), (c, "c2"), (a, "a4")])
        let batch = queue.nextBatch(maxCount: 100, perClient: 64)
        #expect(batch.items.map(\.element) == ["a1", "b1", "c1", "a2", "c2", "a3", "a4"])
        #expect(batch.items.map(\.client) == [a, b, c, a, c, a, a])
        #expect(batch.firstRound == 3)
        #expect(queue.isEmpty && queue.count == 0)
    }

    @Test("one client with many writes queued cannot put another client's write behind them")
    func pipelineDoesNotStarveOthers() {
        var writes = (1...128).map { (a, "a\($0)") }
        writes.append((b, "b1"))
        var queue = queue(writes)
        let batch = queue.nextBatch(maxCount: 1024, perClient: 64)
        #expect(batch.items.prefix(2).map(\.element) == ["a1", "b1"])
        #expect(batch.items.count == 65)
        #expect(queue.count == 64)
        #expect(queue.nextBatch(maxCount: 1024, perClient: 64).items.map(\.element) == (65...128).map { "a\($0)" })
    }

    @Test("at most perClient writes of one client and maxCount in all go in one batch")
    func caps() {
        var queue = queue((1...5).map { (a, "a\($0)") })
        #expect(queue.nextBatch(maxCount: 100, perClient: 2).items.map(\.element) == ["a1", "a2"])
        #expect(queue.nextBatch(maxCount: 1, perClient: 2).items.map(\.element) == ["a3"])
        #expect(queue.nextBatch(maxCount: 100, perClient: 2).items.map(\.element) == ["a4", "a5"])
        #expect(queue.nextBatch(maxCount: 100, perClient: 2).items.isEmpty)
    }

    @Test("when maxCount ends a batch within the first round, the next batch starts with the clients left out")
    func leftOutGoFirst() {
        let clients = (1...5).map { WriteClient(id: UInt64($0)) }
        var queue = queue(clients.map { ($0, "w\($0.id)") })
        #expect(queue.nextBatch(maxCount: 2, perClient: 64).items.map(\.element) == ["w1", "w2"])
        queue.append("w1b", from: clients[0])
        #expect(queue.nextBatch(maxCount: 2, perClient: 64).items.map(\.element) == ["w3", "w4"])
        #expect(queue.nextBatch(maxCount: 2, perClient: 64).items.map(\.element) == ["w5", "w1b"])
    }

    @Test("the client that goes first moves on at every batch")
    func rotation() {
        var queue = queue([(a, "a1"), (a, "a2"), (a, "a3"), (b, "b1"), (b, "b2"), (b, "b3")])
        #expect(queue.nextBatch(maxCount: 100, perClient: 1).items.map(\.element) == ["a1", "b1"])
        #expect(queue.nextBatch(maxCount: 100, perClient: 1).items.map(\.element) == ["b2", "a2"])
        #expect(queue.nextBatch(maxCount: 100, perClient: 1).items.map(\.element) == ["a3", "b3"])
    }

    @Test("writes a commit did not get to go back before the client's later writes, in order, and first")
    func putBack() {
        var queue = queue([(a, "a1"), (a, "a2"), (a, "a3"), (b, "b1"), (b, "b2")])
        let batch = queue.nextBatch(maxCount: 100, perClient: 2)
        #expect(batch.items.map(\.element) == ["a1", "b1", "a2", "b2"])
        // Decided: a1, b1; not looked at: a2, b2. Meanwhile b and c queue more.
        queue.append("b3", from: b)
        queue.append("c1", from: c)
        queue.putBack(batch.items[2...])
        #expect(queue.count == 5)
        let next = queue.nextBatch(maxCount: 100, perClient: 64)
        #expect(next.items.map(\.element) == ["a2", "b2", "c1", "a3", "b3"])
        #expect(next.firstRound == 3)
    }

    @Test(
        "a client whose writes took more than its share of a commit sits out while others wait, until their batches pay its debt down"
    )
    func costlyClientSitsOut() {
        var queue = queue([(a, "a1"), (a, "a2"), (a, "a3"), (b, "b1")])
        let first = queue.nextBatch(maxCount: 100, perClient: 1)
        #expect(first.items.map(\.element) == ["a1", "b1"])
        #expect(Set(first.sharers) == [a, b])
        // a's write took 10 units of the commit, b's 2: the share is 6, so a owes 4.
        queue.charge([a: 10, b: 2], sharedBy: first.sharers)
        #expect(queue.debt(of: a) == 4 && queue.debt(of: b) == 0)
        queue.append("b2", from: b)
        queue.append("c1", from: c)
        // a sits out; b and c go.
        let second = queue.nextBatch(maxCount: 100, perClient: 1)
        #expect(second.items.map(\.element) == ["b2", "c1"])
        #expect(Set(second.sharers) == [a, b, c])
        // Each of the three waiting clients gets a share of 3: a's debt falls to 1; b and c,
        // with nothing queued any more, owe nothing.
        queue.charge([b: 3, c: 6], sharedBy: second.sharers)
        #expect(queue.debt(of: a) == 1 && queue.debt(of: b) == 0 && queue.debt(of: c) == 0)
        queue.append("b3", from: b)
        #expect(queue.nextBatch(maxCount: 100, perClient: 1).items.map(\.element) == ["b3"])
    }

    @Test("a client in debt goes at once when no other client waits: the writer never idles for fairness")
    func debtorAloneGoes() {
        var queue = queue([(a, "a1"), (a, "a2"), (b, "b1")])
        let first = queue.nextBatch(maxCount: 100, perClient: 1)
        queue.charge([a: 100, b: 0], sharedBy: first.sharers)
        #expect(queue.debt(of: a) == 50)
        // b has nothing queued: a, alone, is forgiven its debt and goes.
        #expect(queue.nextBatch(maxCount: 100, perClient: 1).items.map(\.element) == ["a2"])
        #expect(queue.debt(of: a) == 0)
    }

    @Test("when every waiting client is in debt, the least indebted go and keep their order")
    func leastIndebtedGoFirst() {
        var queue = queue([(a, "a1"), (a, "a2"), (b, "b1"), (b, "b2"), (c, "c1"), (c, "c2")])
        let first = queue.nextBatch(maxCount: 100, perClient: 1)
        #expect(first.items.map(\.element) == ["a1", "b1", "c1"])
        // Shares of 34: a owes 26, b 6, c nothing.
        queue.charge([a: 60, b: 40, c: 2], sharedBy: first.sharers)
        #expect(queue.nextBatch(maxCount: 100, perClient: 1).items.map(\.element) == ["c2"])
        // c's queue is empty; a and b are both in debt: b, the lesser, is forgiven first.
        #expect(queue.nextBatch(maxCount: 100, perClient: 1).items.map(\.element) == ["b2"])
        #expect(queue.debt(of: a) == 20)
    }

    @Test("debts within the tolerance do not make a client sit out")
    func tolerance() {
        var queue = FairQueue<String>(tolerance: 5)
        for (client, write) in [(a, "a1"), (a, "a2"), (b, "b1"), (b, "b2")] { queue.append(write, from: client) }
        let first = queue.nextBatch(maxCount: 100, perClient: 1)
        queue.charge([a: 13, b: 7], sharedBy: first.sharers)
        #expect(queue.debt(of: a) == 3)
        #expect(Set(queue.nextBatch(maxCount: 100, perClient: 1).items.map(\.element)) == ["a2", "b2"])
    }

    @Test("the writer's time for a batch is split between clients in proportion to their writes' work")
    func sharesOfTime() {
        let shares = RecordEngine.shares(of: .milliseconds(10), among: [a, b, a], work: [600, 200, 200])
        #expect(shares == [a: 8_000_000, b: 2_000_000])
        #expect(RecordEngine.shares(of: .milliseconds(10), among: [a], work: []).isEmpty)
    }
}
