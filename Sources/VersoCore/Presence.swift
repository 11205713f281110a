/// One connection's presence on one key, as subscribers see it (Protocol.md 5.1): who it is
/// and the small state it set, still encoded. Nothing of it is stored.
public struct PresenceState: Sendable, Equatable {
    /// The connection's session id (as its `welcome` says).
    public var session: String
    /// The name the connection gave in `hello`, if any.
    public var client: String?
    /// The user of the connection's access token, on a server that authenticates.
    public var user: String?
    /// The encoded JSON object, or nil when the connection cleared its presence (or closed).
    public var state: [UInt8]?

    public init(session: String, client: String?, user: String?, state: [UInt8]?) {
        self.session = session
        self.client = client
        self.user = user
        self.state = state
    }
}
