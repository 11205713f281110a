import Testing
import VersoCore
@testable import VersoEngine

@Suite("Change sequencer: several servers' changes reach the hub once each, in seq order")
struct ChangeSequencerTests {
    private static let me: Int64 = 7
    private static let other: Int64 = 9

    private func change(_ seq: Int64, _ key: String = "a/1") -> Change {
        Change(seq: seq, key: key, version: seq, data: Array("{}".utf8))
    }

    private func logged(_ seq: Int64, by writer: Int64, _ key: String = "a/1") -> LoggedChange {
        LoggedChange(change: change(seq, key), writer: writer)
    }

    private func live() -> (ChangeSequencer, RecordingSink) {
        let hub = SubscriptionHub()
        let sink = RecordingSink()
        hub.activate(hub.register(.prefix(""), sink: sink), after: 0)
        return (ChangeSequencer(hub: hub, published: 0), sink)
    }

    @Test("an own commit after another server's waits for it, and goes out right after it")
    func ownCommitWaitsForEarlierSeqs() {
        let (sequencer, sink) = live()
        #expect(sequencer.committedLocally([change(2)]) == 0, "seq 1 is not published yet")
        #expect(sink.seqs.isEmpty)
        let window = LogWindow(
            changes: [logged(1, by: Self.other), logged(2, by: Self.me)],
            lastSeq: 2,
            prunedThrough: 0
        )
        #expect(sequencer.publish(window, me: Self.me) == .advanced(published: 2))
        #expect(sink.seqs == [1, 2])
    }

    @Test("a row of this server's read from the log before its writer reported it is held until the report")
    func ownRowWaitsForTheAck() {
        let (sequencer, sink) = live()
        let window = LogWindow(
            changes: [logged(1, by: Self.other), logged(2, by: Self.me), logged(3, by: Self.other)],
            lastSeq: 3,
            prunedThrough: 0
        )
        #expect(sequencer.publish(window, me: Self.me) == .advanced(published: 1))
        #expect(sink.seqs == [1])
        #expect(sequencer.committedLocally([change(2)]) == 2)
        // Read again from the published seq: seq 3 follows, and nothing goes out twice.
        let rest = LogWindow(changes: [logged(3, by: Self.other)], lastSeq: 3, prunedThrough: 0)
        #expect(sequencer.publish(rest, me: Self.me) == .advanced(published: 3))
        #expect(sink.seqs == [1, 2, 3])
    }

    @Test("the ops of one transaction go out together, and a window read twice publishes nothing twice")
    func transactionsAndRereads() {
        let (sequencer, sink) = live()
        let window = LogWindow(
            changes: [logged(1, by: Self.other, "a/1"), logged(1, by: Self.other, "a/2"), logged(2, by: Self.other)],
            lastSeq: 2,
            prunedThrough: 0
        )
        #expect(sequencer.publish(window, me: Self.me) == .advanced(published: 2))
        #expect(sequencer.publish(window, me: Self.me) == .advanced(published: 2))
        #expect(sink.seqs == [1, 1, 2])
    }

    @Test("a server whose next seqs were pruned reports that it fell behind and moves to the log's end")
    func fellBehind() {
        let (sequencer, sink) = live()
        let window = LogWindow(changes: [logged(41, by: Self.other)], lastSeq: 41, prunedThrough: 40)
        #expect(sequencer.publish(window, me: Self.me) == .fellBehind(published: 41, lastSeq: 41))
        #expect(sink.seqs.isEmpty)
        #expect(sequencer.publishedSeq == 41)
    }
}
