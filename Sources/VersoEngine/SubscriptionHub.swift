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
///
/// Presence (Protocol.md 5.1) lives here too, under the same lock: a change of a connection's
/// presence on a key goes to every live matching subscription of other connections, and a
/// subscription going live gets the current presence of its keys after what it buffered, so
/// it misses no change and sees none twice. With a store several servers share, the presence
/// other servers' connections set is kept here too (`PresenceOwner.remote`), each entry
/// refreshed by its server every few seconds and dropped (cleared for subscribers) when it is
/// not.
///
/// A subscription may ask for progress bookmarks: while no matching change is sent to it, a
/// `progress` message with the last published seq every interval. It is sent under the same lock
/// as the updates, after every update up to that seq, so resuming from it replays nothing twice.
final class SubscriptionHub: Sendable {
    /// A class, so that looking one up for each change it receives retains one reference
    /// rather than copying (and retaining) each of its members. Touched only under the hub's
    /// lock, and never handed out of it.
    private final class Subscription {
        let filter: SubscriptionFilter
        let sink: any MessageSink
        /// Changes held while the subscription's starting view is read; nil once live.
        var buffer: [Change]?
        /// The seq of the starting view: changes at or before it are already in it.
        var startSeq: Int64 = .max
        /// Its progress bookmarks, when it asked for them.
        var progress: ProgressTimer?

        init(filter: SubscriptionFilter, sink: any MessageSink, buffer: [Change]?, progress: ProgressTimer?) {
            self.filter = filter
            self.sink = sink
            self.buffer = buffer
            self.progress = progress
        }

        /// Holds `change` while the starting view is read, else sends it (as `id`) unless the
        /// starting view already has it; says whether it sent it. `encoded` is the change's
        /// encoding, made by the first subscription that sends it.
        func receive(_ change: Change, as id: Int64, encoded: inout EncodedUpdate?) -> Bool {
            if buffer != nil {
                buffer!.append(change)
                return false
            }
            guard change.seq > startSeq else { return false }
            if encoded == nil { encoded = EncodedUpdate(change) }
            sink.send(encoded!, sub: id)
            if progress != nil { progress!.delivered = true }
            return true
        }
    }

    /// When a subscription's next bookmark is due, and whether an update made it needless.
    private struct ProgressTimer {
        let interval: Duration
        var due: ContinuousClock.Instant
        /// An update was sent since the last bookmark (or the start): the next one is skipped.
        var delivered = false
    }

    private struct State {
        var nextID: Int64 = 1
        var subscriptions: [Int64: Subscription] = [:]
        /// The subscriptions that asked for progress bookmarks.
        var progressing: Set<Int64> = []
        /// The seq of the last change published: every matching update up to it has been sent.
        var publishedSeq: Int64 = 0
        /// Subscriptions by exact key.
        var byKey: [BytewiseString: Set<Int64>] = [:]
        /// Subscriptions by prefix.
        var byPrefix = PrefixIndex<Int64>()
        /// The presence set on each key, by who set it.
        var presence: [BytewiseString: [PresenceOwner: PresenceEntry]] = [:]
    }

    private let state = Mutex(State())
    /// Updates and presence messages sent to subscriptions so far.
    private let delivered = Atomic<Int>(0)

    /// Updates and presence messages sent to subscriptions so far (for metrics).
    var deliveryCount: Int { delivered.load(ordering: .relaxed) }

    /// Registers a subscription in buffering mode and returns its id; with `progress`, it gets a
    /// bookmark every `progress` while live and sent nothing else.
    func register(_ filter: SubscriptionFilter, sink: any MessageSink, progress: Duration? = nil) -> Int64 {
        state.withLock { state in
            let id = state.nextID
            state.nextID += 1
            state.subscriptions[id] = Subscription(
                filter: filter,
                sink: sink,
                buffer: [],
                progress: progress.map { ProgressTimer(interval: $0, due: .now + $0) }
            )
            if progress != nil { state.progressing.insert(id) }
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
            guard let subscription = state.subscriptions[id], let buffer = subscription.buffer else { return }
            for change in buffer where change.seq > seq {
                subscription.sink.send(EncodedUpdate(change), sub: id)
            }
            // The current presence on its keys (looked up one by one for keys, so a subscribe
            // does not scan everyone's presence under the lock), in key and session order.
            let own = PresenceOwner.local(subscription.sink.connection)
            var present: [(key: BytewiseString, entries: [PresenceOwner: PresenceEntry])]
            switch subscription.filter {
            case .keys(let keys):
                present = keys.compactMap { key in state.presence[key].map { (key, $0) } }
            case .prefix(let prefix):
                present = state.presence.filter { RecordKey.key($0.key.string, hasPrefix: prefix) }.map {
                    ($0.key, $0.value)
                }
            }
            for (key, entries) in present.sorted(by: { $0.key < $1.key }) {
                for (owner, entry) in entries.sorted(by: { $0.value.state.session < $1.value.state.session })
                where owner != own {
                    subscription.sink.send(EncodedUpdate(presenceOf: key.string, entry.state), sub: id)
                }
            }
            subscription.buffer = nil
            subscription.startSeq = seq
            if let interval = subscription.progress?.interval { subscription.progress?.due = .now + interval }
        }
    }

    /// Removes a subscription; returns whether it existed and belonged to `sink`.
    @discardableResult
    func remove(_ id: Int64, ownedBy sink: any MessageSink) -> Bool {
        state.withLock { state in
            guard let subscription = state.subscriptions[id], subscription.sink === sink else { return false }
            state.subscriptions[id] = nil
            state.progressing.remove(id)
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
        guard let last = changes.last else { return }
        var sent = 0
        defer { if sent > 0 { delivered.add(sent, ordering: .relaxed) } }
        state.withLock { state in
            // Set before the sends below, all under the lock: a bookmark never comes between.
            state.publishedSeq = max(state.publishedSeq, last.seq)
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
                    if state.subscriptions[id]?.receive(change, as: id, encoded: &encoded) == true { sent += 1 }
                }
            }
        }
    }

    /// Sets `owner`'s presence on `key` (clears it when `presence.state` is nil) and sends the
    /// change to every live subscription matching `key` of the other connections. Another
    /// server's presence is stamped `now`; the same state again only refreshes the stamp.
    func setPresence(_ presence: PresenceState, on key: String, by owner: PresenceOwner, now: ContinuousClock.Instant) {
        state.withLock { state in
            let name = BytewiseString(key)
            if presence.state == nil {
                guard state.presence[name]?.removeValue(forKey: owner) != nil else { return }
                if state.presence[name]?.isEmpty == true { state.presence[name] = nil }
            } else {
                let refreshed: ContinuousClock.Instant? = owner.isLocal ? nil : now
                let unchanged = state.presence[name]?[owner]?.state == presence
                state.presence[name, default: [:]][owner] = PresenceEntry(state: presence, refreshed: refreshed)
                if unchanged, !owner.isLocal { return }
            }
            send(presence, on: key, from: owner, in: &state)
        }
    }

    /// Sends a presence change on `key` to the live subscriptions matching it, but `owner`'s own.
    private func send(_ presence: PresenceState, on key: String, from owner: PresenceOwner, in state: inout State) {
        var targets: [Int64] = []
        if let ids = state.byKey[BytewiseString(key)] { targets.append(contentsOf: ids) }
        state.byPrefix.forEachMatch(of: key) { targets.append($0) }
        var encoded: EncodedUpdate?
        for id in targets {
            guard let subscription = state.subscriptions[id], subscription.buffer == nil,
                owner != .local(subscription.sink.connection)
            else { continue }
            if encoded == nil { encoded = EncodedUpdate(presenceOf: key, presence) }
            subscription.sink.send(encoded!, sub: id)
            delivered.add(1, ordering: .relaxed)
        }
    }

    /// Drops the presence of other servers' connections not refreshed since `deadline` (their
    /// server stopped, or its clear was lost), sending each subscriber the clear.
    func expireRemotePresence(before deadline: ContinuousClock.Instant) {
        state.withLock { state in
            var expired: [(key: BytewiseString, owner: PresenceOwner, state: PresenceState)] = []
            for (key, entries) in state.presence {
                for (owner, entry) in entries where (entry.refreshed.map { $0 < deadline }) == true {
                    expired.append((key, owner, entry.state))
                }
            }
            for (key, owner, presence) in expired {
                state.presence[key]?.removeValue(forKey: owner)
                if state.presence[key]?.isEmpty == true { state.presence[key] = nil }
                var cleared = presence
                cleared.state = nil
                send(cleared, on: key.string, from: owner, in: &state)
            }
        }
    }

    /// The presence this server's connections have set, by key (for other servers).
    func localPresence() -> [(key: String, presence: PresenceState)] {
        state.withLock { state in
            state.presence.flatMap { key, entries in
                entries.filter(\.key.isLocal).map { (key.string, $0.value.state) }
            }
        }
    }

    /// The presence set on `key`, by session (for tests).
    func presence(on key: String) -> [PresenceState] {
        state.withLock { state in
            (state.presence[BytewiseString(key)] ?? [:]).values.map(\.state).sorted { $0.session < $1.session }
        }
    }

    /// Sends the bookmarks due at `now`: to each live subscription whose interval has passed
    /// and that was sent no update in it, `progress` with the last published seq (or its start,
    /// when later). Call about once a second; a bookmark is at most that late.
    func sendProgress(now: ContinuousClock.Instant) {
        state.withLock { state in
            for id in state.progressing {
                guard let subscription = state.subscriptions[id], subscription.buffer == nil,
                    var timer = subscription.progress, timer.due <= now
                else { continue }
                if !timer.delivered {
                    subscription.sink.send(
                        Replies.progress(sub: id, seq: max(state.publishedSeq, subscription.startSeq))
                    )
                }
                timer.delivered = false
                timer.due = now + timer.interval
                subscription.progress = timer
            }
        }
    }
}

/// Who set a presence: a connection of this server, or a connection of another server sharing
/// the store (by that server's writer id and the connection's session).
enum PresenceOwner: Hashable, Sendable {
    case local(ObjectIdentifier)
    case remote(server: Int64, session: String)

    var isLocal: Bool {
        if case .local = self { true } else { false }
    }
}

/// A presence as the hub keeps it; another server's carries when it was last refreshed.
struct PresenceEntry: Sendable {
    var state: PresenceState
    var refreshed: ContinuousClock.Instant?
}
