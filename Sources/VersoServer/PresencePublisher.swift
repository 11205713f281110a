import NIOCore
import VersoCore
import VersoEngine

/// One connection's presence (Protocol.md 5.1): the keys the engine shows it on, and the
/// changes waiting for the connection's rate limit, coalesced by key.
///
/// A connection may change its presence `RequestLimits.presenceChangesPerSecond` times a
/// second (a bucket of as many tokens, refilled at that rate). A change past that waits, and a
/// later change of the same key replaces it rather than queue behind it, so a client that sends
/// too fast is slowed down to the limit and its subscribers see its latest state, never a
/// backlog. At most `RequestLimits.maxPresenceKeysPerConnection` keys have its presence at once.
///
/// Used on the connection's event loop only (by its queued requests, and by the flush it
/// schedules on that loop), which is what makes the `@unchecked Sendable` safe.
final class PresencePublisher: @unchecked Sendable {
    private let engine: RecordEngine
    private let eventLoop: any EventLoop
    private let connection: ObjectIdentifier
    private let session: String
    /// The name given in `hello`, shown with the presence.
    private var clientName: String?
    /// The presence the engine shows, by key.
    private var shown: [BytewiseString: PresenceState] = [:]
    /// Changes waiting for a token, in the order their keys first waited; one per key.
    private var pending: [(key: String, presence: PresenceState)] = []
    private var tokens: Double
    private var refilledAt: NIODeadline
    private var scheduledFlush: Scheduled<Void>?
    private var isClosed = false

    private static let rate = Double(RequestLimits.presenceChangesPerSecond)

    init(engine: RecordEngine, eventLoop: any EventLoop, connection: ObjectIdentifier, session: String) {
        self.engine = engine
        self.eventLoop = eventLoop
        self.connection = connection
        self.session = session
        self.tokens = Self.rate
        self.refilledAt = .now()
    }

    /// The name the connection gave in `hello`; presence set after it carries it.
    var client: String? {
        get { clientName }
        set {
            eventLoop.assertInEventLoop()
            clientName = newValue
        }
    }

    /// Sets (nil: clears) the connection's presence on `key` to the encoded `state`, at once or,
    /// past the rate limit, as soon as a token is free; returns the presence as it will be shown.
    /// Throws `too_large` when it would put the connection's presence on more keys than allowed.
    func set(_ state: [UInt8]?, on key: String, user: String?) throws(RequestError) -> PresenceState {
        eventLoop.assertInEventLoop()
        let presence = PresenceState(session: session, client: clientName, user: user, state: state)
        guard !isClosed else { return presence }
        let name = BytewiseString(key)
        let waiting = pending.firstIndex { BytewiseString($0.key) == name }
        if state != nil, shown[name] == nil, waiting == nil, keyCount >= RequestLimits.maxPresenceKeysPerConnection {
            throw RequestError(
                .tooLarge,
                "this connection already has presence on \(RequestLimits.maxPresenceKeysPerConnection) keys, the most allowed: clear one (\"state\": null) first"
            )
        }
        if let waiting {
            pending[waiting].presence = presence
            return presence
        }
        // Clearing a key the connection has no presence on, or setting what is shown already,
        // changes nothing and is sent to no one.
        if state == nil ? shown[name] == nil : shown[name] == presence { return presence }
        refill()
        if pending.isEmpty, tokens >= 1 {
            tokens -= 1
            publish(presence, on: key)
        } else {
            pending.append((key, presence))
            scheduleFlush()
        }
        return presence
    }

    /// Clears the connection's presence everywhere and drops what waits: the connection closed.
    func close() {
        eventLoop.assertInEventLoop()
        isClosed = true
        scheduledFlush?.cancel()
        scheduledFlush = nil
        pending = []
        for (key, presence) in shown.sorted(by: { $0.key < $1.key }) {
            var cleared = presence
            cleared.state = nil
            engine.setPresence(cleared, on: key.string, by: connection)
        }
        shown = [:]
    }

    /// Keys with the connection's presence once what waits is sent.
    private var keyCount: Int {
        var keys = Set(shown.keys)
        for (key, presence) in pending {
            if presence.state == nil { keys.remove(BytewiseString(key)) } else { keys.insert(BytewiseString(key)) }
        }
        return keys.count
    }

    private func publish(_ presence: PresenceState, on key: String) {
        engine.setPresence(presence, on: key, by: connection)
        shown[BytewiseString(key)] = presence.state == nil ? nil : presence
    }

    private func refill() {
        let now = NIODeadline.now()
        let elapsed = Double((now - refilledAt).nanoseconds) / 1e9
        tokens = min(Self.rate, tokens + elapsed * Self.rate)
        refilledAt = now
    }

    private func scheduleFlush() {
        guard scheduledFlush == nil else { return }
        let wait = max(0, (1 - tokens) / Self.rate)
        scheduledFlush = eventLoop.scheduleTask(in: .nanoseconds(Int64(wait * 1e9) + 1_000_000)) { [self] in
            scheduledFlush = nil
            flush()
        }
    }

    /// Sends what waits while tokens last; schedules the rest.
    private func flush() {
        guard !isClosed else { return }
        refill()
        while tokens >= 1, !pending.isEmpty {
            tokens -= 1
            let (key, presence) = pending.removeFirst()
            publish(presence, on: key)
        }
        if !pending.isEmpty { scheduleFlush() }
    }
}
