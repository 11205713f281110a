import ArgumentParser
import Foundation
import VersoCore
import VersoServer

/// `verso-server token`: prints an HS256 access token for a server run with
/// `--auth jwt --jwt-secret-file FILE`, for development and tests.
struct MintTokenCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "token",
        abstract: "Print a signed access token (HS256 JWT) for development.",
        discussion: """
            Example: verso-server token --secret-file jwt.secret --user ann --allow notes/=read,write --allow inbox/=write
            The rights are read, write, force and presence (Protocol.md 2.1); --allow =read covers every key.
            In production, tokens come from your identity provider, signed with a key whose public half the server holds (--jwt-public-key-file or --jwks-file).
            """
    )

    @Option(help: "The file holding the HS256 secret, the same file the server reads with --jwt-secret-file.")
    var secretFile: String

    @Option(help: "The user the token names (its sub claim).")
    var user: String

    @Option(
        help: ArgumentHelp(
            "A rule PREFIX=RIGHTS, rights comma separated; repeatable. Without any, the token may do nothing.",
            valueName: "prefix=rights"
        )
    )
    var allow: [String] = []

    @Option(help: "Seconds until the token expires (its exp claim) (default 3600).")
    var expiresIn: Int = 3600

    func run() async throws {
        guard !user.isEmpty else { throw ValidationError("--user must not be empty") }
        guard expiresIn > 0 else {
            throw ValidationError("--expires-in \(expiresIn) must be a positive number of seconds")
        }
        let rules = try allow.map(Self.rule)
        do {
            let token = try await SignedTokens.mint(
                secretFile: secretFile,
                identity: Identity(user: user, rules: AccessRules(rules)),
                lifetime: .seconds(expiresIn)
            )
            print(token)
        } catch {
            throw ValidationError(error.description)
        }
    }

    /// `notes/=read,write` as a rule.
    static func rule(_ text: String) throws -> AccessRule {
        guard let equals = text.lastIndex(of: "=") else {
            throw ValidationError("--allow \(text) is not PREFIX=RIGHTS (for example notes/=read,write)")
        }
        let prefix = String(text[..<equals])
        if let problem = RecordKey.prefixProblem(with: prefix) { throw ValidationError("--allow \(text): \(problem)") }
        var rights = Set<AccessRight>()
        for name in text[text.index(after: equals)...].split(separator: ",") {
            guard let right = AccessRight(rawValue: name.trimmingCharacters(in: .whitespaces)) else {
                throw ValidationError(
                    "--allow \(text): \(name) is not a right; the rights are \(AccessRight.allCases.map(\.rawValue).joined(separator: ", "))"
                )
            }
            rights.insert(right)
        }
        guard !rights.isEmpty else { throw ValidationError("--allow \(text) names no rights") }
        return AccessRule(prefix: prefix, rights: rights)
    }
}
