import Foundation
import HTTPTypes

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
        let offered = protocols
            .flatMap { $0.split(separator: ",") }
            .map { $0.trimmingCharacters(in: .whitespaces) }
        if token == nil, let bearer = offered.first(where: { $0.hasPrefix(Self.bearerProtocolPrefix) }) {
            token = String(bearer.dropFirst(Self.bearerProtocolPrefix.count))
        }
        if offered.contains(Self.protocolName) { selectedProtocol = Self.protocolName }
    }

    /// The handshake's answer when the upgrade carries a token `tokens` do not know: 401.
    /// An upgrade without a token is let through (its connection may still send one in hello).
    static func refusal(headers: [String: String], tokens: AccessTokens) -> HandshakeGuard.Refusal? {
        let offered = UpgradeToken(authorization: headers["authorization"], protocols: headers["sec-websocket-protocol"].map { [$0] } ?? [])
        guard let token = offered.token, tokens.identity(for: token) == nil else { return nil }
        return HandshakeGuard.Refusal(
            status: 401, reason: "Unauthorized", code: .unauthorized,
            message: Connection.badToken.message,
            extraHeaders: [("WWW-Authenticate", "Bearer")]
        )
    }
}
