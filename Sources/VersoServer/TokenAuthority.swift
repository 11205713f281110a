import Foundation
import Logging

/// What decides whether an access token is valid on a server that authenticates: the listed
/// tokens of `--auth tokens`, or the keys of `--auth jwt`.
enum TokenAuthority: Sendable {
    case listed(AccessTokens)
    case signed(SignedTokens)

    /// Builds the authority `authentication` asks for; nil for `.none`. Throws when its file
    /// cannot be used.
    static func make(
        _ authentication: Authentication,
        logger: Logger
    ) async throws(ConfigurationError) -> TokenAuthority? {
        switch authentication {
        case .none: nil
        case .tokens(let file): .listed(try AccessTokens(path: file, logger: logger))
        case .jwt(let keys): .signed(try await SignedTokens(source: keys, logger: logger))
        }
    }

    /// The verdict on `token`.
    func check(_ token: String) async -> TokenCheck {
        switch self {
        case .listed(let tokens):
            tokens.identity(for: token).map { .valid($0, expires: nil) }
                ?? .invalid("this server's tokens file does not list it")
        case .signed(let keys):
            await keys.verify(token)
        }
    }

    /// Reads the tokens or key file again (SIGHUP); the error when it cannot be used.
    func reload() async -> ConfigurationError? {
        switch self {
        case .listed(let tokens): tokens.reload()
        case .signed(let keys): await keys.reload()
        }
    }
}
