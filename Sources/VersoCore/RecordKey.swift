/// Rules for record keys and key prefixes.
public enum RecordKey {
    /// Longest key accepted, in UTF-8 bytes.
    public static let maxBytes = 512

    /// Why `key` is not a valid record key, or `nil` when it is one: 1–512 bytes of UTF-8 with
    /// no control characters (U+0000–U+001F, U+007F–U+009F).
    public static func problem(with key: String) -> String? {
        if key.isEmpty { return "key must not be empty" }
        return prefixProblem(with: key)
    }

    /// Why `prefix` is not a valid key prefix, or `nil`: like a key, but it may be empty
    /// (the empty prefix matches every key).
    public static func prefixProblem(with prefix: String) -> String? {
        if prefix.utf8.count > maxBytes { return "key is longer than \(maxBytes) bytes of UTF-8" }
        for scalar in prefix.unicodeScalars where scalar.value < 0x20 || (scalar.value >= 0x7F && scalar.value <= 0x9F)
        {
            return "key contains the control character U+\(String(scalar.value, radix: 16, uppercase: true))"
        }
        return nil
    }

    /// Whether `key` starts with `prefix`, compared byte by byte (the order keys are listed in).
    public static func key(_ key: String, hasPrefix prefix: String) -> Bool {
        key.utf8.starts(with: prefix.utf8)
    }
}
