import VersoCore

/// Where a connection's outgoing messages go. Neither `send` may block: they queue.
public protocol MessageSink: AnyObject, Sendable {
    /// Queues one complete JSON message for the client.
    func send(_ message: [UInt8])

    /// Queues the update message `update.message(sub: sub)`. A sink that writes frames itself
    /// may keep the shared encoding and write the subscription id into the frame, rather than
    /// build the message's bytes for each subscriber.
    func send(_ update: EncodedUpdate, sub: Int64)

    /// The connection the sink belongs to: a connection's own presence is not sent back to it.
    var connection: ObjectIdentifier { get }
}

extension MessageSink {
    public var connection: ObjectIdentifier { ObjectIdentifier(self) }

    public func send(_ update: EncodedUpdate, sub: Int64) {
        send(update.message(sub: sub))
    }
}
