import NIOCore
import NIOWebSocket
import VersoCore
import VersoDeflate
import VersoWebSocket

/// Turns a connection's data frames into messages on the event loop and hands each one to the
/// connection's `RequestDispatcher` there, with no task or stream per message.
///
/// Called by the connection's `WebSocketGuard` with each data frame, once the guard has refused
/// frames no client may send. It joins fragments, inflates compressed messages (RFC 7692) and
/// enforces, per message: the size limit after decompression and across fragments (1009), valid
/// UTF-8 in text (1007, also for a compressed message that does not inflate), and continuation
/// frames only inside a fragmented message (1002). A failure is thrown to the guard, which
/// closes the connection and from then on lets nothing more through but the client's close.
///
/// Messages that arrive before the connection attaches its dispatcher are kept in order until
/// it does. While the dispatcher (or that early queue) holds more than `backlogLimit` messages
/// not yet handled, the guard does not read the socket: a client cannot queue requests without
/// bound. Used on the channel's event loop only.
final class RequestReader {
    /// One whole message from the client.
    enum Message {
        /// A text message (valid UTF-8), parsed as a request straight from its bytes.
        case request(Result<RequestEnvelope, RejectedRequest>)
        /// A binary message (its content is never used).
        case binary
    }

    /// A fragmented message being joined.
    private enum Assembly {
        case idle
        case text(ByteBuffer)
        case binary(bytes: Int)
    }

    /// Messages not yet handled past which the socket is not read.
    static let backlogLimit = 16

    private let maxMessageBytes: Int
    private let inflater: PerMessageInflater?
    /// Weak: the guard holds the reader, and lives as long as the channel's pipeline.
    private weak var webSocketGuard: WebSocketGuard?
    private var assembly = Assembly.idle
    private var dispatcher: RequestDispatcher?
    private var early: [Message] = []
    /// The connection ended: nothing more is handed on.
    private var ended = false

    init(maxMessageBytes: Int, compressed: Bool, webSocketGuard: WebSocketGuard) {
        self.maxMessageBytes = maxMessageBytes
        self.inflater = compressed ? PerMessageInflater(maxMessageBytes: maxMessageBytes) : nil
        self.webSocketGuard = webSocketGuard
    }

    /// Hands the messages read so far, and every later one, to `dispatcher`.
    func attach(_ dispatcher: RequestDispatcher) {
        self.dispatcher = dispatcher
        let waiting = early
        early = []
        for message in waiting { dispatcher.receive(message) }
        resumeReadingIfRoom()
    }

    /// Reads the socket again if it was held back and the backlog has room (after the
    /// dispatcher handled a queued message).
    func resumeReadingIfRoom() {
        webSocketGuard?.resumeReadingIfRoom()
    }

    /// Messages read and not yet handled.
    var backlog: Int { dispatcher?.backlog ?? early.count }

    /// Takes one data frame (text, binary or continuation) of the client's; throws when it
    /// fails the connection.
    func receive(_ frame: WireFrame) throws(Failure) {
        guard !ended else { return }
        do {
            try assemble(frame)
        } catch {
            ended = true
            throw error
        }
    }

    /// Stops handing messages on: the connection ended.
    func end() {
        ended = true
    }

    /// Why a message fails the connection.
    struct Failure: Error {
        var code: WebSocketErrorCode
        var reason: String

        static func tooLarge(_ limit: Int) -> Failure {
            Failure(code: .messageTooLarge, reason: "message larger than \(limit) bytes")
        }

        static let notUTF8 = Failure(
            code: .dataInconsistentWithMessage,
            reason: "a text message that is not valid UTF-8"
        )
    }

    private func assemble(_ frame: WireFrame) throws(Failure) {
        if frame.fin, !frame.rsv1, frame.opcode == .text, case .idle = assembly {
            // The common case, a whole uncompressed text message in one frame: unmasked
            // straight into the parser, with no copy of the payload or `String` in between.
            deliver(try Self.request(unmasking: frame, limit: maxMessageBytes))
            return
        }
        switch (frame.opcode, assembly) {
        case (.continuation, .idle):
            throw Failure(code: .protocolError, reason: "a continuation frame with no message to continue")
        case (.text, .text), (.text, .binary), (.binary, .text), (.binary, .binary):
            throw Failure(code: .protocolError, reason: "a new message began before the last one ended")
        default:
            break
        }
        // Checked before inflating: a frame that breaks the sequence must not reach the inflater.
        let payload = try inflated(frame)
        switch (frame.opcode, assembly) {
        case (.text, _):
            if frame.fin { try deliver(text: payload) } else { assembly = .text(payload) }
        case (.binary, _):
            if frame.fin { deliver(.binary) } else { assembly = .binary(bytes: payload.readableBytes) }
        case (_, .text(var joined)):
            guard joined.readableBytes + payload.readableBytes <= maxMessageBytes else {
                throw Failure.tooLarge(maxMessageBytes)
            }
            assembly = .idle
            var payload = payload
            joined.writeBuffer(&payload)
            if frame.fin { try deliver(text: joined) } else { assembly = .text(joined) }
        case (_, .binary(let bytes)):
            let total = bytes + payload.readableBytes
            guard total <= maxMessageBytes else { throw Failure.tooLarge(maxMessageBytes) }
            if frame.fin {
                assembly = .idle
                deliver(.binary)
            } else {
                assembly = .binary(bytes: total)
            }
        default:
            throw Failure(code: .protocolError, reason: "a continuation frame with no message to continue")
        }
    }

    /// The frame's payload, unmasked, and inflated when its message is compressed.
    private func inflated(_ frame: WireFrame) throws(Failure) -> ByteBuffer {
        let payload = frame.unmaskedPayload
        guard let inflater else {
            // The guard refused RSV1 without permessage-deflate.
            guard payload.readableBytes <= maxMessageBytes else { throw Failure.tooLarge(maxMessageBytes) }
            return payload
        }
        do {
            return try inflater.inflate(payload, compressed: frame.rsv1, fin: frame.fin)
        } catch is PerMessageInflater.TooLarge {
            throw Failure.tooLarge(maxMessageBytes)
        } catch {
            throw Failure(code: .dataInconsistentWithMessage, reason: "a compressed message that does not inflate")
        }
    }

    /// The frame's payload unmasked and parsed as a request; 1007 when it is not UTF-8, 1009
    /// past `limit`.
    static func request(unmasking frame: WireFrame, limit: Int) throws(Failure) -> Message {
        guard frame.payload.readableBytes <= limit else { throw Failure.tooLarge(limit) }
        return try frame.withUnmaskedPayload { bytes in Self.request(bytes) }.get()
    }

    /// A whole text message's bytes parsed as a request, with no `String` made of them: a
    /// message that parses is valid UTF-8 (see `Request.parse(utf8:)`); one that does not is
    /// checked, and fails the connection (1007) when it is not.
    static func request(_ bytes: UnsafeBufferPointer<UInt8>) -> Result<Message, Failure> {
        do {
            return .success(.request(.success(try Request.parse(utf8: bytes))))
        } catch {
            guard String(validating: bytes, as: UTF8.self) != nil else { return .failure(.notUTF8) }
            return .success(.request(.failure(error)))
        }
    }

    private func deliver(text payload: ByteBuffer) throws(Failure) {
        assembly = .idle
        let parsed = payload.withUnsafeReadableBytes { raw in
            Self.request(raw.assumingMemoryBound(to: UInt8.self))
        }
        deliver(try parsed.get())
    }

    private func deliver(_ message: Message) {
        if let dispatcher {
            dispatcher.receive(message)
        } else {
            early.append(message)
        }
    }
}
