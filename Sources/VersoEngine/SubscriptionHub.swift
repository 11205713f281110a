import Synchronization
import VersoCore

/// Routes committed changes to the subscriptions that match them.
///
/// A new subscription starts out buffering: changes published while its snapshot or replay is
/// being read are kept, and `activate` sends those that come after the snapshot's seq, then
/// switches it to live delivery. A change is committed before it is published, so a snapshot
/// may already contain a change whose publication is still to come: live delivery therefore
/// also skips every change at or before the snapshot's seq. Changes are published in seq order
/// by the engine's writer, so every subscription sees them in seq order with no gap and no
/// duplicate.
///
/// Keys and prefixes are matched by their UTF-8 bytes (a subscription to NFC "é" never sees a
/// change to NFD "e\u{301}"), and finding a change's prefix subscriptions walks the key's bytes
/// in a trie, so it costs the same however many prefixes other connections follow.
final class SubscriptionHub: Sendable {
    private struct Subscription {
        let filter: SubscriptionFilter
        let sink: any MessageSink
        /// Changes held while the subscription's starting view is read; nil once live.
        var buffer: [Change]?
        /// The seq of the starting view: changes at or before it are already in it.
        var startSeq: Int64 = .max
    }

    private struct State {
        var nextID: Int64 = 1
        var subscriptions: [Int64: Subscription] = [:]
        /// Subscriptions by exact key.
        var byKey: [BytewiseString: Set<Int64>] = [:]
        /// Subscriptions by prefix.
        var byPrefix = PrefixIndex<Int64>()
    }

    private let state = Mutex(State())

    /// Registers a subscription in buffering mode and returns its id.
    func register(_ filter: SubscriptionFilter, sink: any MessageSink) -> Int64 {
        state.withLock { state in
            let id = state.nextID
            state.nextID += 1
            state.subscriptions[id] = Subscription(filter: filter, sink: sink, buffer: [])
            switch filter {
            case .keys(let keys):
                for key in keys { state.byKey[key, default: []].insert(id) }
            case .prefix(let prefix):
                state.byPrefix.insert(id, prefix: prefix)
            }
            return id
        }
    }

    /// Delivers the buffered changes after `seq`, then switches the subscription to live delivery.
    func activate(_ id: Int64, after seq: Int64) {
        state.withLock { state in
            guard var subscription = state.subscriptions[id], let buffer = subscription.buffer else { return }
            for change in buffer where change.seq > seq {
                subscription.sink.send(EncodedUpdate(change), sub: id)
            }
            subscription.buffer = nil
            subscription.startSeq = seq
            state.subscriptions[id] = subscription
        }
    }

    /// Removes a subscription; returns whether it existed and belonged to `sink`.
    @discardableResult
    func remove(_ id: Int64, ownedBy sink: any MessageSink) -> Bool {
        state.withLock { state in
            guard let subscription = state.subscriptions[id], subscription.sink === sink else { return false }
            state.subscriptions[id] = nil
            switch subscription.filter {
            case .keys(let keys):
                for key in keys {
                    state.byKey[key]?.remove(id)
                    if state.byKey[key]?.isEmpty == true { state.byKey[key] = nil }
                }
            case .prefix(let prefix):
                state.byPrefix.remove(id, prefix: prefix)
            }
            return true
        }
    }

    /// Number of subscriptions (for tests and metrics).
    var count: Int { state.withLock { $0.subscriptions.count } }

    /// Sends each change, encoded once, to every matching subscription. Call in seq order.
    func publish(_ changes: [Change]) {
        guard !changes.isEmpty else { return }
        state.withLock { state in
            guard !state.subscriptions.isEmpty else { return }
            for change in changes {
                var targets: [Int64] = []
                if !state.byKey.isEmpty, let ids = state.byKey[BytewiseString(change.key)] {
                    targets.append(contentsOf: ids)
                }
                state.byPrefix.forEachMatch(of: change.key) { targets.append($0) }
                guard !targets.isEmpty else { continue }
                var encoded: EncodedUpdate?
                for id in targets {
                    guard let subscription = state.subscriptions[id] else { continue }
                    if subscription.buffer != nil {
                        state.subscriptions[id]!.buffer!.append(change)
                    } else if change.seq > subscription.startSeq {
                        if encoded == nil { encoded = EncodedUpdate(change) }
                        subscription.sink.send(encoded!, sub: id)
                    }
                }
            }
        }
    }
}
