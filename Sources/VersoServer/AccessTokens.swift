import Foundation
import Logging
import Synchronization
import VersoCore

/// Who a connection acts as, and what it may do.
public struct Identity: Sendable, Equatable {
    /// The user the token names (shown in `welcome`, and in logs).
    public var user: String
    public var rules: AccessRules

    public init(user: String, rules: AccessRules) {
        self.user = user
        self.rules = rules
    }
}

/// How the server learns who a client is.
public enum Authentication: Sendable, Equatable {
    /// Nobody is asked: every connection may do everything (the server listens on loopback).
    case none
    /// Opaque tokens listed in a JSON file with the user and rules of each (`--auth tokens
    /// --tokens-file FILE`); the file is read again on SIGHUP.
    case tokens(file: String)
    /// JSON Web Tokens signed with the keys of `keys` (`--auth jwt`); the key file is read
    /// again on SIGHUP.
    case jwt(keys: JWTKeySource)
}

/// The tokens of `--auth tokens`, read from a JSON file:
///
/// ```json
/// {"tokens": [
///   {"token": "7f3c…", "user": "ann", "rules": [{"prefix": "notes/", "allow": ["read", "write"]}]}
/// ]}
/// ```
///
/// `reload()` reads the file again (on SIGHUP): a file that cannot be read or has an error
/// leaves the tokens as they were, and the error is logged. Connections look their token up
/// at every request, so a token removed from the file stops working at once; and a connection
/// that watches its token (`watch`) is ended when a reload withdraws it or changes its user or
/// rules, so its subscriptions do not go on delivering what the token may no longer read.
public final class AccessTokens: Sendable {
    /// A connection acting with a listed token, and how to end it.
    private struct Holder {
        var token: String
        var identity: Identity
        var end: @Sendable (_ reason: String) -> Void
    }

    private let path: String
    private let logger: Logger
    private let identities: Mutex<[String: Identity]>
    private let holders = Mutex<[ObjectIdentifier: Holder]>([:])

    /// Reads the file; throws `ConfigurationError` saying what is wrong with it.
    public init(path: String, logger: Logger) throws(ConfigurationError) {
        self.path = path
        self.logger = logger
        identities = Mutex(try Self.read(path))
        Self.warnIfReadableByOthers(path, flag: "--tokens-file", logger: logger)
    }

    /// The identity `token` stands for, or nil.
    public func identity(for token: String) -> Identity? {
        identities.withLock { $0[token] }
    }

    /// Number of tokens loaded (for logs and tests).
    public var count: Int { identities.withLock { $0.count } }

    /// Calls `end` (once) when a reload withdraws `token` or changes the identity it stands
    /// for from `identity`; replaces what `connection` watched before.
    func watch(
        _ connection: ObjectIdentifier,
        token: String,
        identity: Identity,
        end: @escaping @Sendable (_ reason: String) -> Void
    ) {
        holders.withLock { $0[connection] = Holder(token: token, identity: identity, end: end) }
    }

    /// Stops watching for `connection` (it has ended).
    func unwatch(_ connection: ObjectIdentifier) {
        _ = holders.withLock { $0.removeValue(forKey: connection) }
    }

    /// Ends the watching connections whose token `loaded` no longer gives the same identity.
    private func endWithdrawn(_ loaded: [String: Identity]) {
        let ended = holders.withLock { holders -> [(Holder, String)] in
            var ended: [(Holder, String)] = []
            for (connection, holder) in holders {
                guard let now = loaded[holder.token] else {
                    ended.append((holder, "the token was taken out of the server's tokens file"))
                    holders[connection] = nil
                    continue
                }
                if now != holder.identity {
                    ended.append((holder, "the user or the rules of the token changed in the server's tokens file"))
                    holders[connection] = nil
                }
            }
            return ended
        }
        for (holder, reason) in ended { holder.end(reason) }
        if !ended.isEmpty {
            logger.info(
                "ended connections whose token was withdrawn or changed",
                metadata: ["verso.connections": "\(ended.count)"]
            )
        }
    }

    /// Reads the file again; on any error keeps the current tokens and returns the error.
    @discardableResult
    public func reload() -> ConfigurationError? {
        do {
            let loaded = try Self.read(path)
            identities.withLock { $0 = loaded }
            endWithdrawn(loaded)
            logger.info(
                "reloaded the tokens file",
                metadata: ["verso.tokens_file": "\(path)", "verso.tokens": "\(loaded.count)"]
            )
            Self.warnIfReadableByOthers(path, flag: "--tokens-file", logger: logger)
            return nil
        } catch {
            logger.error(
                "could not reload the tokens file; the tokens loaded before stay in force",
                metadata: ["verso.error": "\(error)"]
            )
            return error
        }
    }

    /// Logs a warning when the secret file at `path` can be read by other users of the machine.
    static func warnIfReadableByOthers(_ path: String, flag: String, logger: Logger) {
        guard let mode = (try? FileManager.default.attributesOfItem(atPath: path))?[.posixPermissions] as? Int,
            mode & 0o077 != 0
        else { return }
        logger.warning(
            "\(flag) \(path) can be read by other users of this machine: chmod 600 it",
            metadata: ["verso.mode": "\(String(mode, radix: 8))"]
        )
    }

    /// Parses a tokens file: every token non-empty, without spaces, and listed once.
    static func read(_ path: String) throws(ConfigurationError) -> [String: Identity] {
        let text: String
        do {
            text = try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            throw ConfigurationError(
                "--tokens-file \(path) cannot be read as UTF-8 text: \(error.localizedDescription)"
            )
        }
        let value: JSONValue
        do {
            value = try JSONParser.parse(text)
        } catch {
            throw ConfigurationError("--tokens-file \(path) is not valid JSON: \(error)")
        }
        return try parse(value, file: path)
    }

    static func parse(_ value: JSONValue, file: String) throws(ConfigurationError) -> [String: Identity] {
        guard case .object(let top) = value, case .array(let entries)? = top["tokens"] else {
            throw ConfigurationError(
                "--tokens-file \(file): expected {\"tokens\": [{\"token\": …, \"user\": …, \"rules\": […]}, …]}"
            )
        }
        var identities: [String: Identity] = [:]
        for (index, entry) in entries.enumerated() {
            let at = "--tokens-file \(file): token \(index + 1)"
            guard case .object(let fields) = entry else {
                throw ConfigurationError("\(at) must be an object with \"token\", \"user\" and \"rules\"")
            }
            guard case .string(let token)? = fields["token"], !token.isEmpty,
                !token.contains(where: { $0.isWhitespace || $0 == "," })
            else {
                throw ConfigurationError("\(at): \"token\" must be a non-empty string without spaces or commas")
            }
            guard case .string(let user)? = fields["user"], !user.isEmpty else {
                throw ConfigurationError("\(at): \"user\" must be a non-empty string")
            }
            let rules: AccessRules
            do {
                rules = try AccessRules(json: fields["rules"] ?? .array([]), context: "\(at) (\(user))")
            } catch {
                throw ConfigurationError(error.description)
            }
            guard identities.updateValue(Identity(user: user, rules: rules), forKey: token) == nil else {
                throw ConfigurationError("\(at) (\(user)): the same token is listed twice")
            }
        }
        return identities
    }
}
