import NIOCore
import VersoCore
import VersoEngine

/// A request the connection's task handles, in the order the client sent it.
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
/// hello, errors, a write past the in-flight limit) goes to the connection's task through
/// `lane`, and so do all requests after it until the task has handled them all, so replies keep
/// the order of the requests.
///
/// All of its state is used on the channel's event loop only: by the `RequestReader`, and by
/// the connection's task, which runs on that loop's task executor (each entry point asserts
/// it). That is what makes the `@unchecked Sendable` safe.
final class RequestDispatcher: @unchecked Sendable {
    private let connection: Connection
    private let eventLoop: any EventLoop
    private let outbox: Outbox
    private let writes: InFlightWrites
    private let closing: ClosingFlag
    private let lane: AsyncStream<QueuedRequest>.Continuation
    /// Who the connection acts as; changed only by `hello`, in the connection's task.
    private var accessNow: Connection.Access
    /// Requests handed to the task and not yet handled.
    private(set) var backlog = 0
    /// Set when attached to the connection's reader.
    var reader: RequestReader?

    init(connection: Connection, access: Connection.Access, eventLoop: any EventLoop, outbox: Outbox, writes: InFlightWrites, closing: ClosingFlag, lane: AsyncStream<QueuedRequest>.Continuation) {
        self.connection = connection
        self.accessNow = access
        self.eventLoop = eventLoop
        self.outbox = outbox
        self.writes = writes
        self.closing = closing
        self.lane = lane
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

    /// A whole message from the client, in order.
    func receive(_ message: RequestReader.Message) {
        eventLoop.assertInEventLoop()
        // Once a close is under way (sent by the WebSocket layer, the guard, or asked for by
        // the outbox), messages still arriving are read but not applied.
        guard !closing.isSet, !outbox.isClosing else { return }
        let request: QueuedRequest
        switch message {
        case .binary:
            request = .binary
        case .text(let text):
            do {
                let envelope = try Request.parse(text)
                if backlog == 0, submitAtOnce(envelope) { return }
                request = .request(envelope)
            } catch {
                request = .rejected(error)
            }
        }
        queue(request)
    }

    private func queue(_ request: QueuedRequest) {
        backlog += 1
        lane.yield(request)
    }

    /// The connection's task handled one queued request.
    func handled() {
        eventLoop.assertInEventLoop()
        backlog -= 1
        reader?.resumeReadingIfRoom()
    }

    /// No request will follow: the client closed, or the connection failed or ended.
    func finish() {
        lane.finish()
    }

    /// Submits a write that needs no waiting: its rules allow it and the connection has room
    /// in flight. False, doing nothing, when the task must handle it.
    private func submitAtOnce(_ envelope: RequestEnvelope) -> Bool {
        let command: WriteCommand
        switch envelope.request {
        case .write(let operation): command = WriteCommand(operations: [operation], isTxn: false)
        case .txn(let operations): command = WriteCommand(operations: operations, isTxn: true)
        default: return false
        }
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
