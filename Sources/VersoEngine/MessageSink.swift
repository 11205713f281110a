/// Where a connection's outgoing messages go. `send` must not block: it queues.
public protocol MessageSink: AnyObject, Sendable {
    /// Queues one complete JSON message for the client.
    func send(_ message: [UInt8])
}
