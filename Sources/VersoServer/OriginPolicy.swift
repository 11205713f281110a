import Foundation
import VersoCore

/// A web origin (RFC 6454 section 4): scheme, host and port, as a browser sends it in the
/// `Origin` header of a WebSocket handshake and as `--allow-origin` takes it.
///
/// Scheme and host compare case-insensitively (both are kept lowercased), an IPv6 host in its
/// canonical form, and a port equal to the scheme's default (80 for http, 443 for https) is the
/// same as none: `HTTP://LocalHost:80` and `http://localhost` are one origin.
public struct WebOrigin: Hashable, Sendable, CustomStringConvertible {
    /// Lowercased.
    public let scheme: String
    /// Lowercased; an IPv6 address in brackets, canonical (`[::1]`).
    public let host: String
    /// The port, the scheme's default when the text named none; nil for a scheme without a
    /// default that named none.
    public let port: Int?

    /// Parses `scheme://host[:port]`, nothing more: no user, path, query or fragment.
    public init(parsing text: String) throws(OriginError) {
        guard let separator = text.range(of: "://") else { throw OriginError(.noScheme) }
        let scheme = String(text[..<separator.lowerBound])
        // RFC 3986 section 3.1: a letter, then letters, digits, "+", "-" or ".".
        guard let first = scheme.unicodeScalars.first, Self.isLetter(first),
            scheme.unicodeScalars.allSatisfy({
                Self.isLetter($0) || ("0"..."9").contains($0) || "+-.".unicodeScalars.contains($0)
            })
        else {
            throw OriginError(.badScheme)
        }
        try self.init(scheme: scheme, authority: String(text[separator.upperBound...]))
    }

    /// The origin `scheme://authority`, where `authority` is `host[:port]` as in a `Host` header.
    public init(scheme: String, authority: String) throws(OriginError) {
        if let extra = authority.firstIndex(where: { "/?#".contains($0) }) {
            throw authority[extra] == "/" ? OriginError(.path) : OriginError(.queryOrFragment)
        }
        guard !authority.contains("@") else { throw OriginError(.userInfo) }
        let hostText: Substring
        let portText: Substring?
        if authority.hasPrefix("[") {
            guard let close = authority.firstIndex(of: "]") else { throw OriginError(.badHost) }
            hostText = authority[authority.index(after: authority.startIndex)..<close]
            let rest = authority[authority.index(after: close)...]
            guard rest.isEmpty || rest.hasPrefix(":") else { throw OriginError(.badHost) }
            portText = rest.isEmpty ? nil : rest.dropFirst()
        } else {
            let parts = authority.split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false)
            guard parts.count <= 2 else { throw OriginError(.badHost) }
            hostText = parts[0]
            portText = parts.count == 2 ? parts[1] : nil
        }
        let host: String
        if authority.hasPrefix("[") {
            guard let canonical = HostAddress.canonicalIPv6(String(hostText)) else { throw OriginError(.badHost) }
            host = "[\(canonical)]"
        } else {
            guard !hostText.isEmpty, hostText.utf8.count <= 253,
                hostText.unicodeScalars.allSatisfy(Self.isHostCharacter)
            else {
                throw OriginError(.badHost)
            }
            host = hostText.lowercased()
        }
        let scheme = scheme.lowercased()
        var port = Self.defaultPort(scheme: scheme)
        if let portText {
            guard (1...5).contains(portText.count), portText.allSatisfy(\.isASCII), let number = Int(portText),
                (1...65535).contains(number)
            else {
                throw OriginError(.badPort)
            }
            port = number
        }
        self.scheme = scheme
        self.host = host
        self.port = port
    }

    /// `scheme://host`, with `:port` unless it is the scheme's default.
    public var description: String {
        guard let port, port != Self.defaultPort(scheme: scheme) else { return "\(scheme)://\(host)" }
        return "\(scheme)://\(host):\(port)"
    }

    static func defaultPort(scheme: String) -> Int? {
        switch scheme {
        case "http": 80
        case "https": 443
        default: nil
        }
    }

    private static func isLetter(_ scalar: Unicode.Scalar) -> Bool {
        ("a"..."z").contains(scalar) || ("A"..."Z").contains(scalar)
    }

    private static func isHostCharacter(_ scalar: Unicode.Scalar) -> Bool {
        switch scalar {
        case "a"..."z", "A"..."Z", "0"..."9", ".", "-", "_": true
        default: false
        }
    }
}

/// Why a text is not an origin (`scheme://host[:port]`).
public struct OriginError: Error, Sendable, Equatable, CustomStringConvertible {
    fileprivate enum Kind: Equatable {
        case noScheme, badScheme, path, queryOrFragment, userInfo, badHost, badPort
    }

    fileprivate let kind: Kind

    fileprivate init(_ kind: Kind) { self.kind = kind }

    public var description: String {
        switch kind {
        case .noScheme: "it has no scheme (give http:// or https:// first)"
        case .badScheme: "its scheme is not letters, digits, + - or ."
        case .path: "it has a path (an origin ends after the host and port: drop everything from the /)"
        case .queryOrFragment: "it has a query or fragment"
        case .userInfo: "it has a user name (an origin has none)"
        case .badHost: "its host is not a name, an IPv4 address or an IPv6 address in brackets"
        case .badPort: "its port is not a number from 1 to 65535"
        }
    }
}

/// Which web pages may open a WebSocket: the rule behind the `403` of Protocol.md section 1.
///
/// Browsers let any page open a WebSocket to any server and only say where the page came from,
/// in `Origin`. So a handshake that carries `Origin` is accepted when it names:
/// - the server's own origin: the origin of the page it serves at `/`, loaded from the address
///   the request came to. That page connects back to the host it was loaded from, so its origin
///   is `http://` + the request's `Host` (`http://127.0.0.1:7070`, `http://localhost:7070` or
///   `http://[::1]:7070`, whichever the browser was given; the three are different origins and
///   each matches only itself). This holds only when that host is an IP address or
///   `localhost`: under any other name the page could be an attacker's whose name was
///   re-pointed at this server (DNS rebinding), so a page served under a name must be listed;
/// - an origin listed with `--allow-origin`;
/// - anything at all, with `--allow-any-origin`.
///
/// A handshake without `Origin` does not come from a web page (the Python client, verso-load)
/// and is not affected; nor is one whose `Origin` has the scheme `ws` or `wss`, which no browser
/// sends (a page's origin is `http`, `https`, `null`, …) but swift-websocket's client does,
/// with its own URL's `ws://host` (VersoClient, the terminal client, the conformance suite).
/// A browser does not let a page set `Origin`, so neither lets a page in.
public struct OriginPolicy: Sendable, Equatable {
    /// What the policy says of one handshake.
    public enum Verdict: Sendable, Equatable {
        /// No `Origin`: not a browser; origins do not apply.
        case noOrigin
        /// An `Origin` of scheme `ws` or `wss`: a WebSocket client library, not a browser.
        case webSocketClient
        /// The page the server serves at `/`.
        case ownOrigin
        /// An origin given with `--allow-origin`.
        case listed
        /// Accepted because of `--allow-any-origin`.
        case anyOrigin
        /// Any other origin, or an `Origin` that is not one: answered `403`.
        case refused

        public var isAccepted: Bool { self != .refused }
    }

    /// The origins given with `--allow-origin`.
    public let listed: Set<WebOrigin>
    /// `--allow-any-origin`: every origin is accepted.
    public let allowsAnyOrigin: Bool
    /// The server serves its page over TLS (`https://`), which is then its own origin's scheme.
    public let servesTLS: Bool

    public init(listed: Set<WebOrigin> = [], allowsAnyOrigin: Bool = false, servesTLS: Bool = false) {
        self.listed = listed
        self.allowsAnyOrigin = allowsAnyOrigin
        self.servesTLS = servesTLS
    }

    /// The policy for `--allow-origin` values (each `scheme://host[:port]`) and
    /// `--allow-any-origin`. `*` is taken only together with `--allow-any-origin`: alone it
    /// would open the server to every web page by a typo-sized flag.
    public init(allowing values: [String], allowAnyOrigin: Bool, servesTLS: Bool = false) throws(ConfigurationError) {
        var listed: Set<WebOrigin> = []
        for value in values {
            if value == "*" {
                guard allowAnyOrigin else {
                    throw ConfigurationError(
                        "--allow-origin '*' would let every web page the user opens read, overwrite and delete the records: "
                            + "list the origins that may connect, or, to accept any origin on purpose, give --allow-any-origin (VERSO_ALLOW_ANY_ORIGIN=1)"
                    )
                }
                continue
            }
            do {
                listed.insert(try WebOrigin(parsing: value))
            } catch {
                throw ConfigurationError(
                    "--allow-origin \(value) is not an origin: \(error); give scheme://host[:port], such as http://localhost:8000 or https://app.example.com"
                )
            }
        }
        self.init(listed: listed, allowsAnyOrigin: allowAnyOrigin, servesTLS: servesTLS)
    }

    /// The verdict on a handshake with these `Origin` and `Host` header values (nil: absent).
    public func verdict(origin: String?, host: String?) -> Verdict {
        guard let origin else { return .noOrigin }
        let lowercased = origin.lowercased()
        if lowercased.hasPrefix("ws://") || lowercased.hasPrefix("wss://") { return .webSocketClient }
        if allowsAnyOrigin { return .anyOrigin }
        guard let parsed = try? WebOrigin(parsing: origin) else { return .refused }
        if let own = Self.ownOrigin(host: host, servesTLS: servesTLS), parsed == own { return .ownOrigin }
        return listed.contains(parsed) ? .listed : .refused
    }

    /// The origin of the page the server serves at `/` to a request with this `Host`. Over
    /// plain HTTP: `http://` and the host, when that host is an IP address or `localhost` (see
    /// the type's comment). Over TLS: `https://` and any host, since a page of another site
    /// whose name was made to resolve to this server (DNS rebinding) cannot pass the TLS
    /// handshake without this server's certificate for that name.
    public static func ownOrigin(host: String?, servesTLS: Bool = false) -> WebOrigin? {
        guard let host, let origin = try? WebOrigin(scheme: servesTLS ? "https" : "http", authority: host) else {
            return nil
        }
        guard servesTLS || origin.host == "localhost" || HostAddress.isIPLiteral(origin.host) else { return nil }
        return origin
    }

    /// An `Origin` value fit for a log line or an error message: the origin as parsed, or, for
    /// a value that is not one, at most 100 of its printable ASCII characters.
    public static func displayable(_ origin: String) -> String {
        if let parsed = try? WebOrigin(parsing: origin) { return parsed.description }
        let printable = origin.unicodeScalars.filter { $0.isASCII && $0.value >= 0x20 && $0.value < 0x7F }
        let text = String(String.UnicodeScalarView(printable.prefix(100)))
        return printable.count > 100 ? text + "…" : text
    }
}
