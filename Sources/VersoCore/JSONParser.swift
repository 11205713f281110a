/// Why a text is not acceptable JSON: a position (byte offset) and what was wrong there.
public struct JSONParseError: Error, Sendable, Equatable, CustomStringConvertible {
    /// Byte offset in the UTF-8 input where the problem was found.
    public let offset: Int
    /// What was wrong, in words for a person.
    public let reason: String

    public var description: String { "invalid JSON at byte \(offset): \(reason)" }
}

/// A strict RFC 8259 JSON parser over UTF-8 bytes.
///
/// It rejects trailing garbage, duplicate object members (names with the same UTF-8 bytes:
/// NFC and NFD spellings of a name are two members), lone surrogates and nesting deeper than
/// `maxDepth`, so no input can exhaust the stack.
public struct JSONParser {
    /// Deepest nesting of arrays and objects accepted in a client's message.
    public static let maxDepth = 64
    /// Deepest nesting a client accepts in a server's message: a record nested `maxDepth` deep
    /// sits a few levels deeper inside a `records` reply.
    public static let maxReplyDepth = maxDepth + 8

    /// Parses a whole document, nested at most `maxDepth` levels.
    public static func parse(_ text: String, maxDepth: Int = JSONParser.maxDepth) throws(JSONParseError) -> JSONValue {
        var text = text
        let result: Result<JSONValue, JSONParseError> = text.withUTF8 { bytes in
            do throws(JSONParseError) {
                return .success(try parse(bytes, maxDepth: maxDepth))
            } catch {
                return .failure(error)
            }
        }
        return try result.get()
    }

    /// Parses a whole document from UTF-8 bytes, nested at most `maxDepth` levels.
    public static func parse(
        _ bytes: UnsafeBufferPointer<UInt8>,
        maxDepth: Int = JSONParser.maxDepth
    ) throws(JSONParseError) -> JSONValue {
        var parser = JSONParser(bytes: bytes, maxDepth: maxDepth)
        return try parser.parseDocument()
    }

    /// Parses a whole document as `parse(_:maxDepth:)`, and says where the value of the
    /// outermost object's member `name` lies in `bytes` (nil when there is no such member) and
    /// whether it is written exactly as `JSONWriter` writes it: compact, object members in
    /// UTF-8 byte order, no escapes but `\"`, `\\`, `\n`, `\r` and `\t`. (A value written
    /// otherwise may still encode to the same bytes; it is only never reported as canonical
    /// when it does not.)
    public static func parse(
        _ bytes: UnsafeBufferPointer<UInt8>,
        maxDepth: Int = JSONParser.maxDepth,
        locating name: StaticString
    ) throws(JSONParseError) -> (value: JSONValue, member: (range: Range<Int>, isCanonical: Bool)?) {
        var parser = JSONParser(bytes: bytes, maxDepth: maxDepth, locating: name)
        return (try parser.parseDocument(), parser.location)
    }

    /// Parses a whole document as `parse(_:maxDepth:)`, except for the outermost object's
    /// member `name` when its value is an object written exactly as `JSONWriter` writes it (as
    /// `parse(_:maxDepth:locating:)` defines it): that value is checked as strictly as any
    /// other (it is valid JSON, and with its members in strict byte order it has no duplicate
    /// names) but no tree is built of it. It is left out of `value`, and `leftOut` says where
    /// its bytes lie. A value of `name` written any other way stays in the tree (`leftOut` nil).
    public static func parse(
        _ bytes: UnsafeBufferPointer<UInt8>,
        maxDepth: Int = JSONParser.maxDepth,
        leavingOut name: StaticString
    ) throws(JSONParseError) -> (value: JSONValue, leftOut: Range<Int>?) {
        var parser = JSONParser(bytes: bytes, maxDepth: maxDepth, locating: name)
        parser.leavesOut = true
        return (try parser.parseDocument(), parser.leftOut ? parser.location?.range : nil)
    }

    private let bytes: UnsafeBufferPointer<UInt8>
    private let depthLimit: Int
    private var index = 0
    /// How many times the input departed from `JSONWriter`'s form (whitespace, members out of
    /// byte order, an escape the writer does not use).
    private var departures = 0
    /// The outermost member whose value `location` reports.
    private let located: UnsafeBufferPointer<UInt8>?
    private var location: (range: Range<Int>, isCanonical: Bool)?
    /// Whether the located member's value is left out of the tree when it is a canonical object.
    private var leavesOut = false
    /// Whether it was.
    private var leftOut = false

    private init(bytes: UnsafeBufferPointer<UInt8>, maxDepth: Int, locating name: StaticString? = nil) {
        self.bytes = bytes
        self.depthLimit = maxDepth
        self.located = name.map { UnsafeBufferPointer(start: $0.utf8Start, count: $0.utf8CodeUnitCount) }
    }

    /// The whole input as one value, with nothing but whitespace around it.
    private mutating func parseDocument() throws(JSONParseError) -> JSONValue {
        skipWhitespace()
        let value = try parseValue(depth: 0)
        skipWhitespace()
        guard index == bytes.count else { throw error("unexpected data after the JSON value") }
        return value
    }

    private func error(_ reason: String) -> JSONParseError {
        JSONParseError(offset: index, reason: reason)
    }

    private mutating func skipWhitespace() {
        let start = index
        defer { if index != start { departures += 1 } }
        while index < bytes.count {
            switch bytes[index] {
            case 0x20, 0x0A, 0x0D, 0x09: index += 1
            default: return
            }
        }
    }

    private mutating func parseValue(depth: Int) throws(JSONParseError) -> JSONValue {
        guard index < bytes.count else { throw error("unexpected end of input") }
        switch bytes[index] {
        case UInt8(ascii: "{"): return try parseObject(depth: depth + 1)
        case UInt8(ascii: "["): return try parseArray(depth: depth + 1)
        case UInt8(ascii: "\""): return .string(try parseString())
        case UInt8(ascii: "t"): try expectLiteral("true"); return .bool(true)
        case UInt8(ascii: "f"): try expectLiteral("false"); return .bool(false)
        case UInt8(ascii: "n"): try expectLiteral("null"); return .null
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return try parseNumber()
        default: throw error("unexpected character")
        }
    }

    private mutating func expectLiteral(_ literal: StaticString) throws(JSONParseError) {
        let count = literal.utf8CodeUnitCount
        guard index + count <= bytes.count else { throw error("unexpected end of input") }
        let start = literal.utf8Start
        for offset in 0..<count where bytes[index + offset] != start[offset] {
            throw error("invalid literal")
        }
        index += count
    }

    private mutating func parseObject(depth: Int) throws(JSONParseError) -> JSONValue {
        guard depth <= depthLimit else { throw error("nesting deeper than \(depthLimit) levels") }
        index += 1
        var members: JSONObject = [:]
        // The outermost object is usually a request of four to six members: room for them at
        // once instead of growing the table three times.
        if depth == 1 { members.reserveCapacity(8) }
        skipWhitespace()
        if index < bytes.count, bytes[index] == UInt8(ascii: "}") {
            index += 1
            return .object(members)
        }
        var previous: BytewiseString?
        while true {
            skipWhitespace()
            guard index < bytes.count, bytes[index] == UInt8(ascii: "\"") else {
                throw error("expected a member name in double quotes")
            }
            let name = BytewiseString(try parseString())
            if let previous, !(previous < name) { departures += 1 }
            previous = name
            skipWhitespace()
            guard index < bytes.count, bytes[index] == UInt8(ascii: ":") else { throw error("expected ':'") }
            index += 1
            skipWhitespace()
            let start = index
            let departuresBefore = departures
            let isLocated = depth == 1 && located.map { name.string.utf8.elementsEqual($0) } ?? false
            // Only the first member of that name is left out: a second one is then a duplicate.
            let mayLeaveOut = isLocated && leavesOut && location == nil
            if mayLeaveOut, scanCanonicalObject(depth: depth + 1) {
                location = (start..<index, true)
                leftOut = true
            } else {
                // Not a canonical object, or not one the scan vouches for (a member name with an
                // escape in it): parsed, which also finds what is wrong with it, if anything.
                let value = try parseValue(depth: depth)
                let isCanonical = departures == departuresBefore
                if isLocated {
                    if leftOut { throw error("duplicate member \"\(name.string)\"") }
                    location = (start..<index, isCanonical)
                }
                if mayLeaveOut, isCanonical, case .object = value {
                    leftOut = true
                } else if members.updateValue(value, forKey: name) != nil {
                    throw error("duplicate member \"\(name.string)\"")
                }
            }
            skipWhitespace()
            guard index < bytes.count else { throw error("unexpected end of input in an object") }
            switch bytes[index] {
            case UInt8(ascii: ","): index += 1
            case UInt8(ascii: "}"): index += 1; return .object(members)
            default: throw error("expected ',' or '}'")
            }
        }
    }

    private mutating func parseArray(depth: Int) throws(JSONParseError) -> JSONValue {
        guard depth <= depthLimit else { throw error("nesting deeper than \(depthLimit) levels") }
        index += 1
        var elements: [JSONValue] = []
        skipWhitespace()
        if index < bytes.count, bytes[index] == UInt8(ascii: "]") {
            index += 1
            return .array(elements)
        }
        while true {
            skipWhitespace()
            elements.append(try parseValue(depth: depth))
            skipWhitespace()
            guard index < bytes.count else { throw error("unexpected end of input in an array") }
            switch bytes[index] {
            case UInt8(ascii: ","): index += 1
            case UInt8(ascii: "]"): index += 1; return .array(elements)
            default: throw error("expected ',' or ']'")
            }
        }
    }

    private mutating func parseNumber() throws(JSONParseError) -> JSONValue {
        let start = index
        try scanNumber()
        return .number(String(decoding: UnsafeBufferPointer(rebasing: bytes[start..<index]), as: UTF8.self))
    }

    /// Moves past a number (RFC 8259's grammar).
    private mutating func scanNumber() throws(JSONParseError) {
        if bytes[index] == UInt8(ascii: "-") { index += 1 }
        guard index < bytes.count else { throw error("unexpected end of input in a number") }
        if bytes[index] == UInt8(ascii: "0") {
            index += 1
        } else if isDigit(bytes[index]) {
            while index < bytes.count, isDigit(bytes[index]) { index += 1 }
        } else {
            throw error("expected a digit")
        }
        if index < bytes.count, bytes[index] == UInt8(ascii: ".") {
            index += 1
            guard index < bytes.count, isDigit(bytes[index]) else { throw error("expected a digit after '.'") }
            while index < bytes.count, isDigit(bytes[index]) { index += 1 }
        }
        if index < bytes.count, bytes[index] == UInt8(ascii: "e") || bytes[index] == UInt8(ascii: "E") {
            index += 1
            if index < bytes.count, bytes[index] == UInt8(ascii: "+") || bytes[index] == UInt8(ascii: "-") {
                index += 1
            }
            guard index < bytes.count, isDigit(bytes[index]) else { throw error("expected a digit in the exponent") }
            while index < bytes.count, isDigit(bytes[index]) { index += 1 }
        }
    }

    private func isDigit(_ byte: UInt8) -> Bool { byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9") }

    private mutating func parseString() throws(JSONParseError) -> String {
        index += 1  // opening quote
        let start = index
        // Fast path: no escapes.
        while index < bytes.count {
            let byte = bytes[index]
            if byte == UInt8(ascii: "\"") {
                let text = try decodeUTF8(start..<index)
                index += 1
                return text
            }
            if byte == UInt8(ascii: "\\") { break }
            if byte < 0x20 { throw error("control character in a string") }
            index += 1
        }
        var scalars: [UInt8] = Array(UnsafeBufferPointer(rebasing: bytes[start..<index]))
        while index < bytes.count {
            let byte = bytes[index]
            switch byte {
            case UInt8(ascii: "\""):
                index += 1
                guard let text = String(validating: scalars, as: UTF8.self) else {
                    throw error("string is not valid UTF-8")
                }
                return text
            case UInt8(ascii: "\\"):
                index += 1
                guard index < bytes.count else { throw error("unexpected end of input in an escape") }
                let escape = bytes[index]
                index += 1
                switch escape {
                case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "n"), UInt8(ascii: "r"), UInt8(ascii: "t"):
                    break
                default:
                    // JSONWriter writes the character itself (or \u00XX for a control character).
                    departures += 1
                }
                switch escape {
                case UInt8(ascii: "\""): scalars.append(0x22)
                case UInt8(ascii: "\\"): scalars.append(0x5C)
                case UInt8(ascii: "/"): scalars.append(0x2F)
                case UInt8(ascii: "b"): scalars.append(0x08)
                case UInt8(ascii: "f"): scalars.append(0x0C)
                case UInt8(ascii: "n"): scalars.append(0x0A)
                case UInt8(ascii: "r"): scalars.append(0x0D)
                case UInt8(ascii: "t"): scalars.append(0x09)
                case UInt8(ascii: "u"):
                    var code = try parseHex4()
                    if code >= 0xD800 && code < 0xDC00 {
                        guard index + 1 < bytes.count, bytes[index] == UInt8(ascii: "\\"),
                            bytes[index + 1] == UInt8(ascii: "u")
                        else {
                            throw error("lone high surrogate in \\u escape")
                        }
                        index += 2
                        let low = try parseHex4()
                        guard low >= 0xDC00 && low < 0xE000 else { throw error("invalid low surrogate in \\u escape") }
                        code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)
                    } else if code >= 0xDC00 && code < 0xE000 {
                        throw error("lone low surrogate in \\u escape")
                    }
                    guard let scalar = Unicode.Scalar(code) else { throw error("invalid \\u escape") }
                    scalars.append(contentsOf: UTF8.encode(scalar)!)
                default:
                    throw error("invalid escape")
                }
            default:
                if byte < 0x20 { throw error("control character in a string") }
                scalars.append(byte)
                index += 1
            }
        }
        throw error("unterminated string")
    }

    private mutating func parseHex4() throws(JSONParseError) -> UInt32 {
        guard index + 4 <= bytes.count else { throw error("unexpected end of input in \\u escape") }
        var value: UInt32 = 0
        for _ in 0..<4 {
            let byte = bytes[index]
            let digit: UInt32
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = UInt32(byte - UInt8(ascii: "0"))
            case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = UInt32(byte - UInt8(ascii: "a") + 10)
            case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = UInt32(byte - UInt8(ascii: "A") + 10)
            default: throw error("invalid hex digit in \\u escape")
            }
            value = value << 4 | digit
            index += 1
        }
        return value
    }

    /// The bytes in `range` (a string's, between its quotes, with no escape) as a `String`,
    /// checked to be well-formed UTF-8 first. (`String(validating:as:)` is generic and not
    /// inlined: it looked up type metadata at run time for every string of every request.)
    private func decodeUTF8(_ range: Range<Int>) throws(JSONParseError) -> String {
        var index = range.lowerBound
        while index < range.upperBound {
            if bytes[index] < 0x80 {
                index += 1
            } else if let length = wellFormedUTF8Sequence(at: index), index + length <= range.upperBound {
                index += length
            } else {
                throw error("string is not valid UTF-8")
            }
        }
        return String(decoding: UnsafeBufferPointer(rebasing: bytes[range]), as: UTF8.self)
    }

    // MARK: The canonical scan: validation of a value written as `JSONWriter` writes it, with no
    // tree built. Each function says false for anything else (invalid, or valid but written
    // otherwise), after which the caller parses the value from where it began.

    /// Scans an object at `index` (nested `depth` levels) and says whether it is valid and
    /// canonical: compact, members in strictly increasing UTF-8 byte order (so no duplicates),
    /// strings as `scanString` accepts them. Moves `index` past it when it is; puts
    /// `index` back otherwise.
    private mutating func scanCanonicalObject(depth: Int) -> Bool {
        let start = index
        if scanObject(depth: depth) { return true }
        index = start
        return false
    }

    private mutating func scanObject(depth: Int) -> Bool {
        guard depth <= depthLimit, index < bytes.count, bytes[index] == UInt8(ascii: "{") else { return false }
        index += 1
        guard index < bytes.count else { return false }
        if bytes[index] == UInt8(ascii: "}") {
            index += 1
            return true
        }
        var previous: Range<Int>?
        while true {
            guard index < bytes.count, bytes[index] == UInt8(ascii: "\""),
                let name = scanString(), !name.escaped
            else { return false }
            // Without escapes a name's bytes are its UTF-8, the order `BytewiseString` keeps.
            if let previous,
                !UnsafeBufferPointer(rebasing: bytes[previous]).lexicographicallyPrecedes(
                    UnsafeBufferPointer(rebasing: bytes[name.range])
                )
            {
                return false
            }
            previous = name.range
            guard index < bytes.count, bytes[index] == UInt8(ascii: ":") else { return false }
            index += 1
            guard scanValue(depth: depth) else { return false }
            guard index < bytes.count else { return false }
            switch bytes[index] {
            case UInt8(ascii: ","): index += 1
            case UInt8(ascii: "}"): index += 1; return true
            default: return false
            }
        }
    }

    private mutating func scanValue(depth: Int) -> Bool {
        guard index < bytes.count else { return false }
        switch bytes[index] {
        case UInt8(ascii: "{"): return scanObject(depth: depth + 1)
        case UInt8(ascii: "["): return scanArray(depth: depth + 1)
        case UInt8(ascii: "\""): return scanString() != nil
        case UInt8(ascii: "t"): return (try? expectLiteral("true")) != nil
        case UInt8(ascii: "f"): return (try? expectLiteral("false")) != nil
        case UInt8(ascii: "n"): return (try? expectLiteral("null")) != nil
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return (try? scanNumber()) != nil
        default: return false
        }
    }

    private mutating func scanArray(depth: Int) -> Bool {
        guard depth <= depthLimit else { return false }
        index += 1
        guard index < bytes.count else { return false }
        if bytes[index] == UInt8(ascii: "]") {
            index += 1
            return true
        }
        while true {
            guard scanValue(depth: depth), index < bytes.count else { return false }
            switch bytes[index] {
            case UInt8(ascii: ","): index += 1
            case UInt8(ascii: "]"): index += 1; return true
            default: return false
            }
        }
    }

    /// Scans a string at `index` whose only escapes are the five `JSONWriter` writes (`\"`,
    /// `\\`, `\n`, `\r`, `\t`) and whose other bytes are well-formed UTF-8 with no control
    /// character; nil for any other. `range` is what lies between the quotes.
    private mutating func scanString() -> (range: Range<Int>, escaped: Bool)? {
        index += 1  // opening quote
        let start = index
        var escaped = false
        while index < bytes.count {
            let byte = bytes[index]
            if byte == UInt8(ascii: "\"") {
                index += 1
                return (start..<index - 1, escaped)
            }
            if byte == UInt8(ascii: "\\") {
                guard index + 1 < bytes.count else { return nil }
                switch bytes[index + 1] {
                case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "n"), UInt8(ascii: "r"), UInt8(ascii: "t"):
                    escaped = true
                    index += 2
                default:
                    return nil
                }
            } else if byte < 0x20 {
                return nil
            } else if byte < 0x80 {
                index += 1
            } else {
                guard let length = wellFormedUTF8Sequence(at: index) else { return nil }
                index += length
            }
        }
        return nil
    }

    /// The length of the well-formed UTF-8 sequence that starts at `start` with a byte of
    /// 0x80 or more (Unicode's table 3-7: no overlong forms, surrogates or code points past
    /// U+10FFFF); nil when it is not one.
    private func wellFormedUTF8Sequence(at start: Int) -> Int? {
        let lead = bytes[start]
        let length: Int
        var second: ClosedRange<UInt8> = 0x80...0xBF
        switch lead {
        case 0xC2...0xDF: length = 2
        case 0xE0: length = 3; second = 0xA0...0xBF
        case 0xE1...0xEC, 0xEE...0xEF: length = 3
        case 0xED: length = 3; second = 0x80...0x9F
        case 0xF0: length = 4; second = 0x90...0xBF
        case 0xF1...0xF3: length = 4
        case 0xF4: length = 4; second = 0x80...0x8F
        default: return nil
        }
        guard start + length <= bytes.count, second.contains(bytes[start + 1]) else { return nil }
        for offset in 2..<length where !(0x80...0xBF).contains(bytes[start + offset]) { return nil }
        return length
    }
}
