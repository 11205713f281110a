/// Reads only what the harness needs from a server message, without parsing the JSON: the
/// `type` (always the first member, Protocol.md section 2) and an integer member such as
/// `version`. The harness writes its own record data, whose member names never collide with
/// the names it looks for.
public enum ReplyScan {
    /// The message's `type`, or nil if it does not start with `{"type":"`.
    public static func type(_ message: String) -> Substring? {
        let utf8 = message.utf8
        let opening = #"{"type":""#.utf8
        guard utf8.starts(with: opening) else { return nil }
        let start = utf8.index(utf8.startIndex, offsetBy: opening.count)
        guard let end = utf8[start...].firstIndex(of: UInt8(ascii: "\"")) else { return nil }
        return message[start..<end]
    }

    /// The integer after the first `"name":` in the message, or nil.
    public static func integer(_ name: String, in message: String) -> Int64? {
        let needle = Array("\"\(name)\":".utf8)
        let bytes = message.utf8
        var index = bytes.startIndex
        while index != bytes.endIndex {
            guard let first = bytes[index...].firstIndex(of: needle[0]) else { return nil }
            if bytes[first...].starts(with: needle) {
                var position = bytes.index(first, offsetBy: needle.count)
                var negative = false
                if position != bytes.endIndex, bytes[position] == UInt8(ascii: "-") {
                    negative = true
                    position = bytes.index(after: position)
                }
                var value: Int64 = 0
                var digits = 0
                while position != bytes.endIndex, let digit = Optional(bytes[position]), digit >= 48, digit <= 57 {
                    value = value &* 10 &+ Int64(digit - 48)
                    digits += 1
                    position = bytes.index(after: position)
                }
                return digits == 0 ? nil : (negative ? -value : value)
            }
            index = bytes.index(after: first)
        }
        return nil
    }

    /// The string after the first `"name":"` in the message, up to the next quote (the
    /// harness's own keys hold no escapes), or nil.
    public static func string(_ name: String, in message: String) -> Substring? {
        let needle = Array("\"\(name)\":\"".utf8)
        let bytes = message.utf8
        var index = bytes.startIndex
        while let first = bytes[index...].firstIndex(of: needle[0]) {
            if bytes[first...].starts(with: needle) {
                let start = bytes.index(first, offsetBy: needle.count)
                guard let end = bytes[start...].firstIndex(of: UInt8(ascii: "\"")) else { return nil }
                return message[start..<end]
            }
            index = bytes.index(after: first)
        }
        return nil
    }

    /// Whether the message belongs to a subscription (an `update`, or a `snapshot` with
    /// `sub`, which comes right after `type`, Protocol.md section 5) rather than being the
    /// reply to a request.
    public static func isSubscriptionMessage(_ message: String) -> Bool {
        message.utf8.starts(with: #"{"type":"update""#.utf8)
            || message.utf8.starts(with: #"{"type":"snapshot","sub":"#.utf8)
    }
}
