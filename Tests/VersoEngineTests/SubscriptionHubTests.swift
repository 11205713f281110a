import Synchronization
import Testing
import VersoCore
@testable import VersoEngine

/// Collects what the hub sends.
final class RecordingSink: MessageSink {
    let messages = Mutex<[String]>([])
    func send(_ message: [UInt8]) {
        messages.withLock { $0.append(String(decoding: message, as: UTF8.self)) }
    }
    var seqs: [Int64] {
        messages.withLock { $0 }.compactMap { try? JSONParser.parse($0)["seq"]?.integerValue }
    }
}

@Suite("Subscription hub: the seam between a starting view and live updates")
struct SubscriptionHubTests {
    private func change(_ seq: Int64, _ key: String = "a/1") -> Change {
        Change(seq: seq, key: key, version: seq, data: Array("{}".utf8))
    }

    @Test("changes published while the starting view is read are delivered once, after it, and only if newer")
    func buffered() {
        let hub = SubscriptionHub()
        let sink = RecordingSink()
        let id = hub.register(.prefix("a/"), sink: sink)
        hub.publish([change(5), change(6)])
        #expect(sink.seqs.isEmpty)
        hub.activate(id, after: 5)
        #expect(sink.seqs == [6])
        hub.publish([change(7)])
        #expect(sink.seqs == [6, 7])
    }

    @Test("a change already in the starting view but published after activation is not delivered again")
    func committedBeforePublished() {
        let hub = SubscriptionHub()
        let sink = RecordingSink()
        let id = hub.register(.keys(["a/1"]), sink: sink)
        // The view was read after seq 6 committed, but seq 6 is published only now.
        hub.activate(id, after: 6)
        hub.publish([change(6)])
        hub.publish([change(7), change(8, "b/1")])
        #expect(sink.seqs == [7])
    }

    @Test("a removed subscription gets nothing more, and only its owner can remove it")
    func removal() {
        let hub = SubscriptionHub()
        let sink = RecordingSink()
        let other = RecordingSink()
        let id = hub.register(.prefix(""), sink: sink)
        hub.activate(id, after: 0)
        #expect(!hub.remove(id, ownedBy: other))
        #expect(hub.remove(id, ownedBy: sink))
        hub.publish([change(1)])
        #expect(sink.seqs.isEmpty)
        #expect(hub.count == 0)
    }
}
