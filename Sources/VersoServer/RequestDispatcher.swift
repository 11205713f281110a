import NIOCore
import VersoCore
import VersoEngine
import VersoEventLoop

/// A request the connection's handling task takes, in the order the client sent it.
enum QueuedRequest: Sendable {
    case request(RequestEnvelope)
    /// A message that is not a valid request: answered with this error.
    case rejected(RejectedRequest)
    /// A binary message: answered with `bad_request`.
    case binary
    /// A write the engine refused when it was submitted (shutdown, forced writes disabled):
    /// answered after the acks of the writes before it.
    case refused(rid: JSONValue?, RequestError)
}

/// Decides, on the event loop, where each of a connection's requests is handled.
///
/// A write (or txn) that can be queued in the engine at once, with nothing of the connection's
/// still waiting before it, is submitted right there: parsed, checked against the connection's
/// access rules and queued, with no task resumed. Every other request (reads, subscriptions,
/// hello, errors, a write past the in-flight limit) is queued here and handled by a task that
/// runs only while such requests wait, and so is every request after it until the queue is
/// empty, so replies keep the order of the requests. An idle connection holds no task of its
/// own for this.
///
/// All of its state is used on the channel's event loop only: by the `RequestReader`, by the
/// task handling queued requests and by the task that ends the connection once its channel
/// closes, both of which run on that loop's task executor (each entry point asserts it). That is what makes the `@unchecked Sendable`
/// safe.
final class RequestDispatcher: @unchecked Sendable {
    private let connection: Connection
    private let eventLoop: any EventLoop
    private let outbox: Outbox
    private let writes: InFlightWrites
    private let closing: ClosingFlag
    /// Who the connection acts as; changed only by `hello`, in a queued request.
    private var accessNow: Connection.Access
    /// Requests waiting for the handling task, from `nextIndex` on. An array rather than a
    /// ring buffer so that a connection with nothing queued holds no storage for it.
    private var queued: [QueuedRequest] = []
    private var nextIndex = 0
    /// The task handling queued requests, while there are any.
    private var handling: Task<Void, Never>?
    /// Handles one queued request: set by the connection before any request arrives, cleared
    /// when it ends.
    var handler: (@Sendable (QueuedRequest) async -> Void)?
    /// The connection's subscriptions, by id (changed by queued requests only).
    var subscriptions: [Int64: SubscriptionLane] = [:]
    /// Set when attached to the connection's reader.
    var reader: RequestReader?

    init(
        connection: Connection,
        access: Connection.Access,
        eventLoop: any EventLoop,
        outbox: Outbox,
        writes: InFlightWrites,
        closing: ClosingFlag
    ) {
        self.connection = connection
        self.accessNow = access
        self.eventLoop = eventLoop
        self.outbox = outbox
        self.writes = writes
        self.closing = closing
    }

    /// Who the connection acts as now.
    var access: Connection.Access {
        get {
            eventLoop.assertInEventLoop()
            return accessNow
        }
        set {
            eventLoop.assertInEventLoop()
            accessNow = newValue
        }
    }

    /// Requests queued and not yet handled (the one being handled included).
    private(set) var backlog = 0

    /// A whole message from the client, in order.
    func receive(_ message: RequestReader.Message) {
        eventLoop.assertInEventLoop()
        // Once a close is under way (sent or answered by the guard, or asked for by the
        // outbox), messages still arriving are read but not applied.
        guard !closing.isSet, !outbox.isClosing else { return }
        let request: QueuedRequest
        switch message {
        case .binary:
            connection.metrics?.countRequest(type: "binary")
            request = .binary
        case .request(let parsed):
            do {
                let envelope = try parsed.get()
                connection.metrics?.count(envelope.request)
                if backlog == 0, submitAtOnce(envelope) { return }
                request = .request(envelope)
            } catch {
                connection.metrics?.countRequest(type: "invalid")
                request = .rejected(error)
            }
        }
        queue(request)
    }

    private func queue(_ request: QueuedRequest) {
        backlog += 1
        queued.append(request)
        guard handling == nil else { return }
        handling = Task(executorPreference: EventLoopTaskExecutor(eventLoop)) {
            while let request = self.nextQueued() {
                await self.handler?(request)
                self.handled()
            }
        }
    }

    /// The next queued request; nil, ending the handling task, when there is none.
    private func nextQueued() -> QueuedRequest? {
        eventLoop.assertInEventLoop()
        if nextIndex < queued.count {
            defer { nextIndex += 1 }
            return queued[nextIndex]
        }
        queued = []
        nextIndex = 0
        handling = nil
        return nil
    }

    private func handled() {
        eventLoop.assertInEventLoop()
        backlog -= 1
        reader?.resumeReadingIfRoom()
    }

    /// Returns once every queued request is handled. Call when no more requests can arrive.
    func waitUntilHandled() async {
        eventLoop.assertInEventLoop()
        while let handling {
            await handling.value
        }
    }

    /// Submits a write that needs no waiting: its rules allow it and the connection has room
    /// in flight. False, doing nothing, when it must be queued.
    private func submitAtOnce(_ envelope: RequestEnvelope) -> Bool {
        guard let command = connection.writeCommand(envelope, access: accessNow) else { return false }
        guard let rules = try? connection.rules(for: accessNow),
            !command.operations.contains(where: { rules.missingRight(for: $0) != nil }),
            writes.begin(ifBelow: Connection.maxWritesInFlight)
        else { return false }
        let rid = envelope.rid
        if let refusal = connection.enqueue(command, rid: rid, rules: rules, outbox: outbox, writes: writes) {
            queue(.refused(rid: rid, refusal))
        }
        return true
    }
}
