import Crypto
import VersoCore

/// A write's idempotency key, in the scope it belongs to, with a fingerprint of the request
/// it was first used for.
///
/// Keys are scoped per identity (the token's user; one anonymous scope for connections
/// without a token), so one user's key never answers another's request. The fingerprint is
/// a SHA-256 of the command's canonical encoding (everything but the `rid` and the key), so
/// the same key with another request is told apart from a retry.
public struct IdempotencyClaim: Sendable, Equatable {
    public var scope: String
    public var key: String
    /// 32 bytes.
    public var fingerprint: [UInt8]

    public init(scope: String, key: String, fingerprint: [UInt8]) {
        self.scope = scope
        self.key = key
        self.fingerprint = fingerprint
    }

    /// The claim of `key` for `operations` sent as a request of `shape`: the fingerprint hashes
    /// the shape and each operation as the protocol writes it (`WriteOperation.opMessage`,
    /// encoded with its members in byte order, so equal requests give equal bytes).
    public init(scope: String, key: String, operations: [WriteOperation], shape: WriteShape) {
        let canonical: JSONValue = .array([.string(shape.rawValue), .array(operations.map(\.opMessage))])
        self.init(scope: scope, key: key, fingerprint: Array(SHA256.hash(data: canonical.encodedBytes)))
    }
}
