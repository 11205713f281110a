import Foundation
import JWTKit
import Logging
import Synchronization
import VersoCore

/// Where `--auth jwt` finds the keys that sign access tokens: exactly one of the three.
public enum JWTKeySource: Sendable, Equatable {
    /// A shared secret for HS256 (`--jwt-secret-file`): the file's bytes, less a final newline;
    /// at least 32 bytes.
    case secretFile(String)
    /// One public key in PEM (`--jwt-public-key-file`): RSA (RS256), P-256 (ES256) or Ed25519
    /// (EdDSA).
    case publicKeyFile(String)
    /// A JSON Web Key Set (`--jwks-file`): public keys chosen by each token's `kid`.
    case jwksFile(String)

    var path: String {
        switch self {
        case .secretFile(let path), .publicKeyFile(let path), .jwksFile(let path): path
        }
    }

    var flag: String {
        switch self {
        case .secretFile: "--jwt-secret-file"
        case .publicKeyFile: "--jwt-public-key-file"
        case .jwksFile: "--jwks-file"
        }
    }
}

/// The claims Verso reads from a signed token (besides `verso`, read from the same payload as
/// JSON): who it names and when it is valid. `exp` and `nbf` are checked by jwt-kit.
struct AccessClaims: JWTPayload {
    var sub: SubjectClaim
    var exp: ExpirationClaim?
    var nbf: NotBeforeClaim?

    func verify(using _: some JWTAlgorithm) async throws {
        try exp?.verifyNotExpired()
        try nbf?.verifyNotBefore()
    }
}

/// JSON Web Tokens (`--auth jwt`), verified through jwt-kit against keys read from a file.
///
/// A token is valid when its signature verifies with one of the keys, it has not expired
/// (`exp`) and is already valid (`nbf`), `sub` names the user and `verso.rules` holds the
/// user's access rules (Protocol.md section 2.1). `reload()` reads the key file again (on
/// SIGHUP), so keys can be rotated without a restart; connections already open keep the
/// identity their token gave them until it expires.
public final class SignedTokens: Sendable {
    private let source: JWTKeySource
    private let logger: Logger
    private let keys: Mutex<JWTKeyCollection>

    /// Reads the keys; throws `ConfigurationError` saying what is wrong with the file.
    public init(source: JWTKeySource, logger: Logger) async throws(ConfigurationError) {
        self.source = source
        self.logger = logger
        keys = Mutex(try await Self.load(source))
        AccessTokens.warnIfReadableByOthers(source.path, flag: source.flag, logger: logger)
    }

    /// Checks `token`: the identity it grants and when it expires, or why it is refused.
    public func verify(_ token: String) async -> TokenCheck {
        let keys = keys.withLock { $0 }
        do {
            let claims = try await keys.verify(token, as: AccessClaims.self)
            let rules = try Self.rules(inPayloadOf: token)
            return .valid(Identity(user: claims.sub.value, rules: rules), expires: claims.exp?.value)
        } catch let error as JWTError {
            return .invalid(Self.reason(error))
        } catch let error as AccessRulesError {
            return .invalid("its verso claim cannot be used: \(error.description)")
        } catch {
            return .invalid("it cannot be read as a JSON Web Token")
        }
    }

    /// Reads the key file again; on any error keeps the keys loaded before and returns the error.
    @discardableResult
    public func reload() async -> ConfigurationError? {
        do {
            let loaded = try await Self.load(source)
            keys.withLock { $0 = loaded }
            logger.info("reloaded the token keys", metadata: ["verso.keys_file": "\(source.path)"])
            AccessTokens.warnIfReadableByOthers(source.path, flag: source.flag, logger: logger)
            return nil
        } catch {
            logger.error(
                "could not reload the token keys; the keys loaded before stay in force",
                metadata: ["verso.error": "\(error)"]
            )
            return error
        }
    }

    /// The shortest HS256 secret accepted: 256 bits, the size of the hash (RFC 7518 3.2).
    static let minimumSecretBytes = 32

    /// The keys in `source`'s file; `flag` names the file in errors (default: the server's flag
    /// for `source`).
    static func load(_ source: JWTKeySource, flag: String? = nil) async throws(ConfigurationError) -> JWTKeyCollection {
        let flag = flag ?? source.flag
        let bytes: Data
        do {
            bytes = try Data(contentsOf: URL(fileURLWithPath: source.path))
        } catch {
            throw ConfigurationError("\(flag) \(source.path) cannot be read: \(error.localizedDescription)")
        }
        let keys = JWTKeyCollection()
        switch source {
        case .secretFile(let path):
            let secret = try secret(from: bytes, path: path, flag: flag)
            await keys.add(hmac: HMACKey(from: secret), digestAlgorithm: .sha256)
        case .publicKeyFile(let path):
            let pem = String(decoding: bytes, as: UTF8.self)
            if let key = try? ES256PublicKey(pem: pem) {
                await keys.add(ecdsa: key)
            } else if let key = try? Insecure.RSA.PublicKey(pem: pem) {
                await keys.add(rsa: key, digestAlgorithm: .sha256)
            } else if let key = try? EdDSA.PublicKey(pem: pem) {
                await keys.add(eddsa: key)
            } else {
                throw ConfigurationError(
                    "\(flag) \(path) holds no public key Verso can use: give an RSA (RS256), P-256 (ES256) or Ed25519 (EdDSA) public key in PEM (-----BEGIN PUBLIC KEY-----)"
                )
            }
        case .jwksFile(let path):
            do {
                try await keys.add(jwksJSON: String(decoding: bytes, as: UTF8.self))
            } catch {
                throw ConfigurationError(
                    "\(flag) \(path) is not a JSON Web Key Set Verso can use (RFC 7517: {\"keys\": [{\"kty\": …, \"kid\": …}]}): \(error)"
                )
            }
        }
        return keys
    }

    /// An HS256 secret from a file's bytes: a final newline (as editors add) is not part of it.
    static func secret(from bytes: Data, path: String, flag: String) throws(ConfigurationError) -> [UInt8] {
        var secret = [UInt8](bytes)
        while let last = secret.last, last == 0x0A || last == 0x0D { secret.removeLast() }
        guard secret.count >= minimumSecretBytes else {
            throw ConfigurationError(
                "\(flag) \(path) holds \(secret.count) bytes: an HS256 secret needs at least \(minimumSecretBytes) (for example: openssl rand -hex 32 > \(path))"
            )
        }
        return secret
    }

    /// The access rules of a token whose signature was verified: its payload's `verso.rules`.
    static func rules(inPayloadOf token: String) throws -> AccessRules {
        let parts = token.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 3, let payload = Data(base64URLEncoded: String(parts[1])) else {
            throw AccessRulesError("the payload is not base64url")
        }
        guard case .object(let claims) = try JSONParser.parse(String(decoding: payload, as: UTF8.self)) else {
            throw AccessRulesError("the payload is not a JSON object")
        }
        guard case .object(let verso)? = claims["verso"], let rules = verso["rules"] else {
            throw AccessRulesError("the token has no \"verso\": {\"rules\": […]} claim naming what its user may do")
        }
        return try AccessRules(json: rules, context: "verso.rules")
    }

    /// Why jwt-kit refused a token, in words a client can act on (never the token itself).
    static func reason(_ error: JWTError) -> String {
        switch error.errorType {
        case .claimVerificationFailure:
            if error.failedClaim is ExpirationClaim { return "it has expired (exp)" }
            if error.failedClaim is NotBeforeClaim { return "it is not valid yet (nbf)" }
            return "a claim did not verify"
        case .signatureVerificationFailed: return "its signature does not verify with this server's keys"
        case .unknownKID, .missingKIDHeader: return "it names no key this server has (kid)"
        case .malformedToken: return "it is not a well-formed JSON Web Token"
        default: return "it could not be verified (\(error.errorType))"
        }
    }
}

extension SignedTokens {
    /// The payload of a token `mint` makes.
    private struct MintedClaims: JWTPayload {
        struct Rule: Codable {
            var prefix: String
            var allow: [String]
        }
        struct Verso: Codable {
            var rules: [Rule]
        }
        var sub: SubjectClaim
        var iat: IssuedAtClaim
        var exp: ExpirationClaim
        var verso: Verso

        func verify(using _: some JWTAlgorithm) async throws {}
    }

    /// An HS256 token for `identity`, valid from now for `lifetime`, signed with the secret in
    /// the file at `secretFile` (read as `--jwt-secret-file` reads it): for development and
    /// tests (`verso-server token`); production tokens come from the identity provider.
    public static func mint(
        secretFile: String,
        identity: Identity,
        lifetime: Duration,
        now: Date = Date()
    ) async throws(ConfigurationError) -> String {
        let keys = try await load(.secretFile(secretFile), flag: "--secret-file")
        let rules = identity.rules.rules.map {
            MintedClaims.Rule(prefix: $0.prefix, allow: $0.rights.sorted().map(\.rawValue))
        }
        let seconds = Double(lifetime.components.seconds) + Double(lifetime.components.attoseconds) / 1e18
        let claims = MintedClaims(
            sub: SubjectClaim(value: identity.user),
            iat: IssuedAtClaim(value: now),
            exp: ExpirationClaim(value: now.addingTimeInterval(seconds)),
            verso: .init(rules: rules)
        )
        do {
            return try await keys.sign(claims)
        } catch {
            throw ConfigurationError("could not sign the token: \(error)")
        }
    }
}

/// The verdict on a presented access token.
public enum TokenCheck: Sendable, Equatable {
    /// The token stands for `identity` until `expires` (nil: until it is withdrawn).
    case valid(Identity, expires: Date?)
    /// The token is refused; `reason` says why in words for the client (never the token).
    case invalid(String)
}

extension Data {
    /// Decodes base64url without padding (RFC 4648 section 5), as JWTs use.
    init?(base64URLEncoded text: String) {
        var base64 = text.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        base64 += String(repeating: "=", count: (4 - base64.count % 4) % 4)
        self.init(base64Encoded: base64)
    }
}
