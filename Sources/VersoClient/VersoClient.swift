import Logging
import Synchronization
import VersoCore

/// Settings of a `VersoClient`, each with a default.
public struct VersoClientConfiguration: Sendable {
    /// The server's WebSocket URL. Default `ws://127.0.0.1:7070/v1/ws`.
    public var url: String
    /// Offer permessage-deflate. Default true.
    public var compression: Bool
    /// How long a request waits for its reply (including waiting for a connection, and for a
    /// write resent after a dropped connection, the reconnect). Default 10 s.
    public var requestTimeout: Duration
    /// How long one connection attempt may take, up to the server's answer to the WebSocket
    /// upgrade; then the attempt counts as failed (and, with `reconnect`, is tried again).
    /// Default 10 s.
    public var connectTimeout: Duration = .seconds(10)
    /// Reconnect after the connection drops. Default true.
    public var reconnect: Bool
    /// First delay before reconnecting; doubles up to `maxBackoff`. Default 100 ms.
    public var initialBackoff: Duration
    /// Longest delay between reconnect attempts. Default 5 s.
    public var maxBackoff: Duration
    /// Sent in `hello`. Default nil.
    public var clientName: String?
    /// Asked of every subscription (whole seconds, 1–3600): while no change arrives, the server
    /// sends a progress bookmark this often, and a resume after a dropped connection starts
    /// from the newest one, so a quiet subscription replays nothing old and needs no reset
    /// when the change log moved on (Protocol.md section 5). Nil asks for none. Default 60 s.
    public var progressInterval: Duration? = .seconds(60)
    /// An access token, for a server that authenticates (Protocol.md 2.1): sent in every
    /// (re)connect's upgrade as `Authorization: Bearer`. Default nil.
    public var token: String?
    /// Asked for a token before every (re)connect, instead of `token`: for tokens that expire
    /// (the server closes a connection whose token expires with 4401, and the client then
    /// reconnects with a fresh one). Default nil.
    public var tokenProvider: (@Sendable () async throws -> String)?
    /// For `wss://` URLs: a PEM file of the certificate authorities to trust instead of the
    /// system's (a private CA, or a self-signed server certificate). Default nil.
    public var caFile: String?

    public init(
        url: String = "ws://127.0.0.1:7070/v1/ws",
        compression: Bool = true,
        requestTimeout: Duration = .seconds(10),
        reconnect: Bool = true,
        initialBackoff: Duration = .milliseconds(100),
        maxBackoff: Duration = .seconds(5),
        clientName: String? = nil
    ) {
        self.url = url
        self.compression = compression
        self.requestTimeout = requestTimeout
        self.reconnect = reconnect
        self.initialBackoff = initialBackoff
        self.maxBackoff = maxBackoff
        self.clientName = clientName
    }
}

/// A typed Verso client with automatic reconnect.
///
/// Use it inside `VersoClient.with(_:_:)`, which connects, runs your code and closes everything
/// it started. After a dropped connection the client reconnects with backoff and resumes every
/// subscription from the last seq it had delivered whole (`since`): a drop between the updates
/// of one txn loses none of them and repeats none, and a progress bookmark moves the point on.
/// When the server cannot replay that far, or the drop came before a subscription's starting
/// records were all delivered, the subscription yields `.started(reset: true)` and fresh
/// snapshots.
///
/// Every write carries an idempotency key (Protocol.md 3.7). A write sent and not answered when
/// the connection drops is sent again, with the same key, once the client has reconnected: its
/// caller gets exactly one outcome (`.timeout` if that takes longer than the request timeout),
/// an ack marked `replayed` when the first attempt had been applied. Other requests in flight when the connection drops fail with `.disconnected`, and so
/// do writes when the client does not reconnect or is closed.
public final class VersoClient: Sendable {
    struct Slot {
        var continuation: CheckedContinuation<ServerMessage, any Error>?
        var reply: Result<ServerMessage, VersoClientError>?
        /// Runs in the reader, under the lock, before anything after the reply is dispatched.
        var onReply: (@Sendable (ServerMessage, inout State) -> Void)?
        /// A write's request as sent (rid and idempotency key included): sent again on the next
        /// connection if this one drops before the reply. Nil for other requests.
        var resend: String?
        /// Whether the request is yet to be sent on the current connection (a write kept from a
        /// connection that dropped).
        var unsent = false
    }

    struct LocalSubscription {
        let filter: SubscriptionFilter
        let continuation: AsyncThrowingStream<SubscriptionEvent, any Error>.Continuation
        var phase = SubscriptionPhase.unstarted
        var serverSub: Int64?
    }

    /// Where a subscription stands: what the server's next messages for it are, and how it
    /// starts again on the next connection.
    enum SubscriptionPhase {
        /// Not started yet.
        case unstarted
        /// Started at `seq`, with `remaining` snapshots still to come. A drop now means
        /// starting again (as a reset): a resume would never send the missing ones.
        case receivingSnapshots(seq: Int64, remaining: Int)
        /// Every starting record delivered; a new connection resumes from `resume.since`.
        case live(ResumePoint)

        /// The `since` of a resume, when the subscription is live.
        var since: Int64? {
            if case .live(let resume) = self { resume.since } else { nil }
        }

        /// Whether `.started` was yielded before (so another start is a reset).
        var hasStarted: Bool {
            if case .unstarted = self { false } else { true }
        }
    }

    /// Where the client's connection stands; changed only under the lock.
    enum Phase {
        /// No session yet. `failure`: why the last attempt failed, once one has.
        case connecting(failure: String?)
        /// A WebSocket is open (`outgoing` writes to it) and its session is starting (hello,
        /// then every subscription resumed). `resuming`: a session existed before this one.
        case starting(outgoing: AsyncStream<String>.Continuation, resuming: Bool)
        /// The session has started: requests go out.
        case ready(outgoing: AsyncStream<String>.Continuation)
        /// A session existed and its connection ended; a new one is being made.
        case reconnecting
        /// For good. `failure`: why the first connection could not be made, when none was.
        case closed(failure: String?)

        /// Where requests go now, while a connection is open.
        var outgoing: AsyncStream<String>.Continuation? {
            switch self {
            case .starting(let outgoing, _), .ready(let outgoing): outgoing
            case .connecting, .reconnecting, .closed: nil
            }
        }

        var isReady: Bool {
            if case .ready = self { true } else { false }
        }

        var isClosed: Bool {
            if case .closed = self { true } else { false }
        }

        /// Whether a session has started since the client was made and the client is not closed
        /// (so a dropped connection is made again).
        var hadSession: Bool {
            switch self {
            case .ready, .reconnecting, .starting(_, resuming: true): true
            case .connecting, .starting(_, resuming: false), .closed: false
            }
        }

        /// Why the first connection could not be made, when no session has started.
        var firstFailure: String? {
            switch self {
            case .connecting(let failure), .closed(let failure): failure
            case .starting, .ready, .reconnecting: nil
            }
        }
    }

    struct State {
        var phase = Phase.connecting(failure: nil)
        var readyWaiters: [Int: CheckedContinuation<Void, Never>] = [:]
        var nextWaiter = 0
        var session: String?
        var epoch: String?
        var allowsForce = false
        var nextRID: Int64 = 1
        var pending: [Int64: Slot] = [:]
        var subscriptions: [Int: LocalSubscription] = [:]
        var nextLocalSub = 1
        var serverSubs: [Int64: Int] = [:]
        /// The presence this client has set, by key: set again after a reconnect, since the
        /// server clears a connection's presence when it closes.
        var presence: [BytewiseString: JSONObject] = [:]
    }

    public let configuration: VersoClientConfiguration
    let state = Mutex(State())
    let logger: Logger
    let stateContinuation: AsyncStream<ConnectionState>.Continuation
    /// Connection state changes, for a status line. One consumer.
    public let connectionStates: AsyncStream<ConnectionState>

    private init(configuration: VersoClientConfiguration, logger: Logger) {
        self.configuration = configuration
        self.logger = logger
        (connectionStates, stateContinuation) = AsyncStream.makeStream(bufferingPolicy: .bufferingNewest(16))
    }

    /// Connects, runs `body` with the client, then closes the connection and every subscription.
    ///
    /// Throws `.cannotConnect` if the first connection fails.
    public static func with<T: Sendable>(
        _ configuration: VersoClientConfiguration,
        logger: Logger = Logger(label: "verso.client", factory: { _ in SwiftLogNoOpLogHandler() }),
        _ body: (VersoClient) async throws -> T
    ) async throws -> T {
        let client = VersoClient(configuration: configuration, logger: logger)
        return try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { await client.maintainConnection() }
            defer {
                client.close()
                group.cancelAll()
            }
            try await client.waitUntilFirstConnection()
            return try await body(client)
        }
    }

    /// The session id the server gave the current connection.
    public var session: String? { state.withLock { $0.session } }

    /// The store's epoch.
    public var epoch: String? { state.withLock { $0.epoch } }

    /// Whether the server accepts forced writes (from its `welcome`).
    public var serverAllowsForce: Bool { state.withLock { $0.allowsForce } }
}
