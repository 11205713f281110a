import Foundation

/// The browser client: one static page (`index.html` beside this file), served at `/`.
public enum WebClientPage {
    /// The page's bytes, or nil if the resource bundle is missing.
    public static let html: [UInt8]? = {
        guard let url = Bundle.module.url(forResource: "index", withExtension: "html"),
            let data = try? Data(contentsOf: url)
        else { return nil }
        return Array(data)
    }()

    /// The `'sha256-…'` sources of the page's inline scripts and styles, hashed from the page
    /// itself so they always match it.
    private static let inlineHashes: (scripts: [String], styles: [String]) = {
        guard let html else { return ([], []) }
        return (
            inlineBlocks(of: "script", in: html).map(hashSource), inlineBlocks(of: "style", in: html).map(hashSource)
        )
    }()

    /// The headers the page is served with: a Content-Security-Policy that lets it run only its
    /// own inline script and style and open WebSockets only to the server that served it
    /// (`host` is the request's `Host`, used when it is a plain host[:port]), and no framing or
    /// content sniffing.
    public static func securityHeaders(host: String?) -> [(name: String, value: String)] {
        var connect = ["'self'"]
        if let host, isPlainAuthority(host) {
            connect += ["ws://\(host)", "wss://\(host)"]
        }
        let policy = [
            "default-src 'none'",
            "script-src " + inlineHashes.scripts.joined(separator: " "),
            "style-src " + inlineHashes.styles.joined(separator: " "),
            "connect-src " + connect.joined(separator: " "),
            "img-src data:",
            "base-uri 'none'",
            "form-action 'none'",
            "frame-ancestors 'none'",
        ].joined(separator: "; ")
        return [
            ("Content-Security-Policy", policy),
            ("X-Frame-Options", "DENY"),
            ("X-Content-Type-Options", "nosniff"),
            ("Referrer-Policy", "no-referrer"),
        ]
    }

    /// A host name, IPv4 address or bracketed IPv6 address with an optional port, nothing else.
    private static func isPlainAuthority(_ text: String) -> Bool {
        !text.isEmpty && text.utf8.count <= 300
            && text.utf8.allSatisfy { byte in
                switch byte {
                case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
                    UInt8(ascii: "0")...UInt8(ascii: "9"):
                    true
                case UInt8(ascii: "."), UInt8(ascii: "-"), UInt8(ascii: ":"), UInt8(ascii: "["), UInt8(ascii: "]"):
                    true
                default:
                    false
                }
            }
    }

    /// The contents of every `<tag>…</tag>` (written without attributes) in `html`.
    static func inlineBlocks(of tag: String, in html: [UInt8]) -> [ArraySlice<UInt8>] {
        let open = Array("<\(tag)>".utf8)
        let close = Array("</\(tag)>".utf8)
        var blocks: [ArraySlice<UInt8>] = []
        var index = html.startIndex
        while let start = firstIndex(of: open, in: html, from: index) {
            let contentStart = start + open.count
            guard let end = firstIndex(of: close, in: html, from: contentStart) else { break }
            blocks.append(html[contentStart..<end])
            index = end + close.count
        }
        return blocks
    }

    private static func firstIndex(of needle: [UInt8], in haystack: [UInt8], from start: Int) -> Int? {
        guard haystack.count >= needle.count, start <= haystack.count - needle.count else { return nil }
        for index in start...(haystack.count - needle.count)
        where haystack[index..<(index + needle.count)].elementsEqual(needle) {
            return index
        }
        return nil
    }

    private static func hashSource(_ block: ArraySlice<UInt8>) -> String {
        "'sha256-\(Data(SHA256.hash(block)).base64EncodedString())'"
    }
}

/// SHA-256 (FIPS 180-4), for the page's CSP hashes only: the server has no crypto library and
/// needs none other.
enum SHA256 {
    private static let k: [UInt32] = [
        0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
        0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
        0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
        0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
        0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
        0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
        0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
        0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
    ]

    static func hash(_ message: some Collection<UInt8>) -> [UInt8] {
        var state: [UInt32] = [
            0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
        ]
        var padded = Array(message)
        let bitLength = UInt64(padded.count) * 8
        padded.append(0x80)
        while padded.count % 64 != 56 { padded.append(0) }
        for shift in stride(from: 56, through: 0, by: -8) {
            padded.append(UInt8(truncatingIfNeeded: bitLength >> UInt64(shift)))
        }
        var w = [UInt32](repeating: 0, count: 64)
        for chunk in stride(from: 0, to: padded.count, by: 64) {
            for i in 0..<16 {
                w[i] = (0..<4).reduce(UInt32(0)) { ($0 << 8) | UInt32(padded[chunk + i * 4 + $1]) }
            }
            for i in 16..<64 {
                let s0 = w[i - 15].rotatedRight(7) ^ w[i - 15].rotatedRight(18) ^ (w[i - 15] >> 3)
                let s1 = w[i - 2].rotatedRight(17) ^ w[i - 2].rotatedRight(19) ^ (w[i - 2] >> 10)
                w[i] = w[i - 16] &+ s0 &+ w[i - 7] &+ s1
            }
            var (a, b, c, d, e, f, g, h) = (
                state[0], state[1], state[2], state[3], state[4], state[5], state[6], state[7]
            )
            for i in 0..<64 {
                let s1 = e.rotatedRight(6) ^ e.rotatedRight(11) ^ e.rotatedRight(25)
                let choice = (e & f) ^ (~e & g)
                let t1 = h &+ s1 &+ choice &+ k[i] &+ w[i]
                let s0 = a.rotatedRight(2) ^ a.rotatedRight(13) ^ a.rotatedRight(22)
                let majority = (a & b) ^ (a & c) ^ (b & c)
                let t2 = s0 &+ majority
                (h, g, f, e, d, c, b, a) = (g, f, e, d &+ t1, c, b, a, t1 &+ t2)
            }
            for (i, value) in [a, b, c, d, e, f, g, h].enumerated() { state[i] = state[i] &+ value }
        }
        return state.flatMap { word in (0..<4).map { UInt8(truncatingIfNeeded: word >> UInt32(24 - $0 * 8)) } }
    }
}

private extension UInt32 {
    func rotatedRight(_ count: UInt32) -> UInt32 { (self >> count) | (self << (32 - count)) }
}
