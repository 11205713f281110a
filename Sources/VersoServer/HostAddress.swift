#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// What a host given as text is: an IP address (and whether it is loopback) or a name.
/// Pure; no name is ever resolved.
enum HostAddress {
    /// Whether `host` is this machine only: `localhost`, an IPv4 address in 127.0.0.0/8, or
    /// the IPv6 loopback `::1` (also written in full, in brackets, or as the IPv4-mapped
    /// `::ffff:127.x.y.z`). Any other name is not, even one that resolves to loopback: what a
    /// name resolves to can change.
    static func isLoopback(_ host: String) -> Bool {
        let host = unbracketed(host)
        if host.lowercased() == "localhost" { return true }
        if let bytes = ipv4Bytes(host) { return bytes[0] == 127 }
        if let bytes = ipv6Bytes(host) {
            if bytes == [UInt8](repeating: 0, count: 15) + [1] { return true }
            let mappedPrefix = [UInt8](repeating: 0, count: 10) + [0xFF, 0xFF]
            return Array(bytes.prefix(12)) == mappedPrefix && bytes[12] == 127
        }
        return false
    }

    /// Whether `host` is an IPv4 address, or an IPv6 address in brackets as URLs write it.
    static func isIPLiteral(_ host: String) -> Bool {
        if ipv4Bytes(host) != nil { return true }
        return host.hasPrefix("[") && host.hasSuffix("]") && ipv6Bytes(unbracketed(host)) != nil
    }

    /// The four bytes of a dotted-quad IPv4 address, or nil.
    static func ipv4Bytes(_ text: String) -> [UInt8]? {
        var address = in_addr()
        guard inet_pton(AF_INET, text, &address) == 1 else { return nil }
        return withUnsafeBytes(of: &address) { Array($0) }
    }

    /// The sixteen bytes of an IPv6 address (without brackets), or nil.
    static func ipv6Bytes(_ text: String) -> [UInt8]? {
        var address = in6_addr()
        guard inet_pton(AF_INET6, text, &address) == 1 else { return nil }
        return withUnsafeBytes(of: &address) { Array($0) }
    }

    /// The canonical text of an IPv6 address (RFC 5952: lowercase, longest zero run as `::`),
    /// or nil when `text` is not one.
    static func canonicalIPv6(_ text: String) -> String? {
        var address = in6_addr()
        guard inet_pton(AF_INET6, text, &address) == 1 else { return nil }
        var buffer = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
        guard inet_ntop(AF_INET6, &address, &buffer, socklen_t(buffer.count)) != nil else { return nil }
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    private static func unbracketed(_ host: String) -> String {
        host.hasPrefix("[") && host.hasSuffix("]") ? String(host.dropFirst().dropLast()) : host
    }
}
