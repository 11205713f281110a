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
}
