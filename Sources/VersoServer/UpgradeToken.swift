import Foundation
import HTTPTypes
import VersoCore

/// The access token a WebSocket upgrade carries (Protocol.md section 2.1), and the subprotocol
/// the server selects for it.
///
/// Programs send `Authorization: Bearer TOKEN`. Browsers cannot set headers on a WebSocket, so
/// they offer the subprotocols `verso.v1, verso.bearer.TOKEN`; the server then selects
/// `verso.v1` (never echoing the token back), as RFC 6455 requires of a server that accepts
/// an offer of subprotocols.
struct UpgradeToken: Equatable {
    /// The token, if the request carried one.
    var token: String?
    /// The subprotocol to answer with (`Sec-WebSocket-Protocol`), if the client offered any.
    var selectedProtocol: String?

    static let protocolName = "verso.v1"
    static let bearerProtocolPrefix = "verso.bearer."

    init(_ headers: HTTPFields) {
        self.init(authorization: headers[.authorization], protocols: headers[values: .secWebSocketProtocol])
    }

    /// From the raw header values (`protocols`: every `Sec-WebSocket-Protocol` value).
    init(authorization: String?, protocols: [String]) {
        if let authorization {
            let parts = authorization.split(separator: " ", maxSplits: 1, omittingEmptySubsequences: true)
            if parts.count == 2, parts[0].lowercased() == "bearer" {
                token = parts[1].trimmingCharacters(in: .whitespaces)
            }
        }
        let offered =
            protocols
            .flatMap { $0.split(separator: ",") }
            .map { $0.trimmingCharacters(in: .whitespaces) }
        if token == nil, let bearer = offered.first(where: { $0.hasPrefix(Self.bearerProtocolPrefix) }) {
            token = String(bearer.dropFirst(Self.bearerProtocolPrefix.count))
        }
        if offered.contains(Self.protocolName) { selectedProtocol = Self.protocolName }
    }

    /// The handshake's answer to an upgrade whose token is not valid: 401, saying why.
    static func refusal(reason: String) -> HandshakeGuard.Refusal {
        HandshakeGuard.Refusal(
            status: 401,
            reason: "Unauthorized",
            code: .unauthorized,
            message: Connection.badToken(reason).message,
            extraHeaders: [("WWW-Authenticate", "Bearer")]
        )
    }
}
