import Foundation
import Testing
import VersoCore

/// A put whose `data` is already written as the server writes data is stored as it came; these
/// tests hold the parser to reporting that only when it is true.
@Suite("Canonical data: a put's data is taken as it came only when it is exactly its encoding")
struct CanonicalDataTests {
    /// Where the member `data` of `envelope` lies and whether the parser calls it canonical.
    private func located(_ envelope: String) throws -> (bytes: [UInt8], range: Range<Int>, isCanonical: Bool) {
        let bytes = Array(envelope.utf8)
        let parsed = try bytes.withUnsafeBufferPointer { try JSONParser.parse($0, locating: "data") }
        let member = try #require(parsed.member, "no data member in \(envelope)")
        return (bytes, member.range, member.isCanonical)
    }

    static let canonical: [String] = [
        #"{}"#,
        #"{"a":1}"#,
        #"{"A":true,"B":null,"a":[1,2.5,-3e7,{"x":"y"}],"b":{"c":{"d":[]}}}"#,
        #"{"s":"quote \" backslash \\ newline \n return \r tab \t slash / é 日本 😀"}"#,
        // Byte order: uppercase before lowercase, "é" (C3 A9) after "z", a prefix first.
        #"{"Z":0,"a":0,"ab":0,"z":0,"é":0}"#,
        #"{"m":1E+2,"n":0.10}"#,
    ]

    @Test("data written as the server writes it is canonical, and its range is exactly its bytes", arguments: canonical)
    func canonicalIsFound(_ data: String) throws {
        let found = try located(#"{"type":"put","key":"k","base":0,"data":\#(data)}"#)
        #expect(found.isCanonical)
        #expect(Array(found.bytes[found.range]) == Array(data.utf8))
        let value = try JSONParser.parse(data)
        #expect(value.encodedBytes == Array(data.utf8), "the writer writes it so")
        // Whitespace and member order outside data change nothing.
        let spaced = try located(#" { "data" : \#(data) , "type" : "put" } "#)
        #expect(spaced.isCanonical && Array(spaced.bytes[spaced.range]) == Array(data.utf8))
    }

    static let notCanonical: [String] = [
        #"{ "a":1}"#,
        #"{"a": 1}"#,
        #"{"a":1 }"#,
        #"{"a":[1, 2]}"#,
        #"{"b":1,"a":2}"#,
        #"{"a":{"z":1,"y":2}}"#,
        #"{"é":1,"z":2}"#,
        #"{"s":"\/"}"#,
        #"{"s":"\u0041"}"#,
        #"{"s":"\b\f"}"#,
        #"{"s":"\u00e9"}"#,
        #"{"s":"\ud83d\ude00"}"#,
        // The writer escapes control characters as \u00XX: the parser does not vouch for those.
        #"{"s":"\u0001"}"#,
    ]

    @Test("data written any other way is not canonical", arguments: notCanonical)
    func otherwiseNot(_ data: String) throws {
        #expect(try !located(#"{"type":"put","data":\#(data)}"#).isCanonical)
    }

    @Test("a put request carries its canonical data as it came; other data, patches and txns carry none")
    func requestsCarryIt() throws {
        func operation(_ text: String) throws -> WriteOperation? {
            let envelope = try text.utf8.withContiguousStorageIfAvailable { try Request.parse(utf8: $0) }
            guard case .write(let operation)? = envelope?.request else { return nil }
            return operation
        }
        func encoded(_ operation: WriteOperation) -> [UInt8]? {
            if case .putEncoded(let data) = operation.action { data.bytes } else { nil }
        }
        let put = try #require(try operation(#"{"type":"put","key":"k","base":0,"data":{"a":1,"b":"x"}}"#))
        #expect(encoded(put) == Array(#"{"a":1,"b":"x"}"#.utf8))
        let spaced = try #require(try operation(#"{"type":"put","key":"k","base":0,"data":{"b":"x", "a":1}}"#))
        #expect(encoded(spaced) == nil)
        // Equal operations whether or not they carry the bytes.
        #expect(spaced == put)
        #expect(put.action == .put(["a": .number("1"), "b": .string("x")]))
        let patch = try #require(try operation(#"{"type":"patch","key":"k","base":1,"patch":{"a":2}}"#))
        #expect(encoded(patch) == nil)
        // A member named data elsewhere in the message is not the put's data.
        let nested = try #require(try operation(#"{"type":"patch","key":"k","base":1,"patch":{"data":{"a":1}}}"#))
        #expect(encoded(nested) == nil)
        // A member name with an escape: the quick scan hands it to the parser, which still finds
        // the data canonical.
        let escapedName = try #require(try operation(#"{"type":"put","key":"k","base":0,"data":{"\"q":1}}"#))
        #expect(encoded(escapedName) == Array(#"{"\"q":1}"#.utf8))
    }

    /// Holds `text` parsed with `data` left out of the tree to what the whole parse says: the
    /// same error, or the same tree but for `data`, left out exactly when it is a canonical
    /// object.
    private func expectLeftOutAsWhole(_ bytes: [UInt8], sourceLocation: SourceLocation = #_sourceLocation) {
        let text = String(decoding: bytes, as: UTF8.self)
        let (leaving, whole) = bytes.withUnsafeBufferPointer { bytes in
            (
                Result { () throws(JSONParseError) in try JSONParser.parse(bytes, leavingOut: "data") },
                Result { () throws(JSONParseError) in try JSONParser.parse(bytes, locating: "data") }
            )
        }
        switch (leaving, whole) {
        case (.failure(let leaving), .failure(let whole)):
            #expect(leaving == whole, "\(text)", sourceLocation: sourceLocation)
        case (.success(let leaving), .success(let whole)):
            guard case .object(var members) = whole.value, let member = whole.member,
                case .object = members["data"], member.isCanonical
            else {
                #expect(leaving.leftOut == nil, "\(text)", sourceLocation: sourceLocation)
                #expect(leaving.value == whole.value, "\(text)", sourceLocation: sourceLocation)
                return
            }
            members["data"] = nil
            #expect(leaving.leftOut == member.range, "\(text)", sourceLocation: sourceLocation)
            #expect(leaving.value == .object(members), "\(text)", sourceLocation: sourceLocation)
        case (let leaving, let whole):
            Issue.record("\(text): left out \(leaving), whole \(whole)", sourceLocation: sourceLocation)
        }
    }

    private func expectLeftOutAsWhole(_ text: String, sourceLocation: SourceLocation = #_sourceLocation) {
        expectLeftOutAsWhole(Array(text.utf8), sourceLocation: sourceLocation)
    }

    static let hostile: [String] = [
        // Duplicates of data, left out or not, either first.
        #"{"data":{"a":1},"data":{"a":1}}"#,
        #"{"data":{"a":1},"data":{ "a":1}}"#,
        #"{"data":{ "a":1},"data":{"a":1}}"#,
        #"{"data":{"a":1},"data":5}"#,
        // Duplicate members inside data, and members out of order.
        #"{"data":{"a":1,"a":1}}"#,
        #"{"data":{"b":1,"a":1}}"#,
        #"{"data":{"a":{"x":1,"x":2}}}"#,
        // Invalid inside data: cut, bad escapes, control characters, bad numbers and literals.
        #"{"data":{"a":1"#,
        #"{"data":{"a":"\q"}}"#,
        "{\"data\":{\"a\":\"\u{01}\"}}",
        #"{"data":{"a":01}}"#,
        #"{"data":{"a":1.}}"#,
        #"{"data":{"a":-}}"#,
        #"{"data":{"a":tru}}"#,
        #"{"data":{"a":[1,]}}"#,
        #"{"data":{"a":1,}}"#,
        #"{"data":{,}}"#,
        #"{"data":{"a":1}} x"#,
        // Data that is not an object, or not at the top.
        #"{"data":[1,2]}"#,
        #"{"data":"x"}"#,
        #"{"x":{"data":{"a":1}}}"#,
        #"[{"data":{"a":1}}]"#,
    ]

    @Test("data left out of the tree: the same errors and the same tree as a whole parse", arguments: hostile)
    func leftOutLikeWhole(_ text: String) {
        expectLeftOutAsWhole(text)
    }

    @Test("bytes that are not UTF-8, and nesting up to and past the limit, inside data: as a whole parse")
    func leftOutBadBytesAndDepth() {
        let invalidSequences: [[UInt8]] = [
            [0x80], [0xC0, 0x80], [0xC1, 0xBF], [0xE0, 0x80, 0x80], [0xED, 0xA0, 0x80], [0xF4, 0x90, 0x80, 0x80],
            [0xF5, 0x80, 0x80, 0x80], [0xFF], [0xC3], [0xE6, 0x97], [0xC3, 0x41],
        ]
        for sequence in invalidSequences {
            let bytes = Array(#"{"data":{"a":""#.utf8) + sequence + Array(#""}}"#.utf8)
            let refused = bytes.withUnsafeBufferPointer { buffer in
                (try? JSONParser.parse(buffer, leavingOut: "data")) == nil
            }
            #expect(refused, "\(sequence)")
            expectLeftOutAsWhole(bytes)
        }
        // Well-formed sequences of every length are taken, and left out.
        let wellFormed = #"{"data":{"a":"é 日本 😀 \#u{10FFFF} \#u{D7FF} \#u{E000}"}}"#
        expectLeftOutAsWhole(wellFormed)
        #expect(
            Array(wellFormed.utf8).withUnsafeBufferPointer { try? JSONParser.parse($0, leavingOut: "data") }?.leftOut
                != nil
        )
        for depth in [JSONParser.maxDepth - 3, JSONParser.maxDepth - 2, JSONParser.maxDepth - 1, JSONParser.maxDepth] {
            let nested = String(repeating: "[", count: depth) + String(repeating: "]", count: depth)
            expectLeftOutAsWhole(#"{"data":{"a":\#(nested)}}"#)
        }
    }

    /// Random texts of random values, written with and without the writer's form: whenever the
    /// parser calls the data canonical, its bytes are exactly the value's encoding.
    @Test("over random texts, data called canonical is always exactly its encoding")
    func randomTexts() throws {
        var generator = SeededGenerator(seed: 0x5EED)
        var canonicalSeen = 0
        for _ in 0..<3000 {
            let text = Self.randomObject(depth: 0, using: &generator)
            let envelope = #"{"type":"put","data":\#(text)}"#
            let found = try located(envelope)
            let value = try JSONParser.parse(text)
            if found.isCanonical {
                canonicalSeen += 1
                #expect(Array(found.bytes[found.range]) == value.encodedBytes, "\(text)")
            }
            // The encoding of the value is always called canonical (it has no \u escapes here).
            let encoded = String(decoding: value.encodedBytes, as: UTF8.self)
            #expect(try located(#"{"data":\#(encoded)}"#).isCanonical, "\(encoded)")
            // Left out of the tree exactly when canonical, whether written so or not.
            expectLeftOutAsWhole(envelope)
            expectLeftOutAsWhole(#"{"data":\#(encoded),"type":"put"}"#)
        }
        #expect(canonicalSeen > 100, "the generator writes canonical texts too")
    }

    private static func randomObject(depth: Int, using generator: inout SeededGenerator) -> String {
        let names = ["a", "b", "B", "ab", "é", "z", "data", "\\\"q", "n\\n"]
        let count = Int.random(in: 0...3, using: &generator)
        var chosen = Array(names.shuffled(using: &generator).prefix(count))
        if Bool.random(using: &generator) {
            chosen.sort { Self.unescaped($0).utf8.lexicographicallyPrecedes(Self.unescaped($1).utf8) }
        }
        let space = { (generator: inout SeededGenerator) in Int.random(in: 0..<8, using: &generator) == 0 ? " " : "" }
        let members = chosen.map { name in
            "\"\(name)\":\(space(&generator))\(randomValue(depth: depth + 1, using: &generator))"
        }
        return "{" + space(&generator) + members.joined(separator: ",") + "}"
    }

    private static func randomValue(depth: Int, using generator: inout SeededGenerator) -> String {
        switch Int.random(in: 0..<7, using: &generator) {
        case 0: return ["1", "-2.5", "0", "1e3"].randomElement(using: &generator)!
        case 1: return ["true", "false", "null"].randomElement(using: &generator)!
        case 2:
            return ["\"x\"", "\"a\\\\b\"", "\"t\\tn\"", "\"s\\/\"", "\"\\u0041\"", "\"é\""].randomElement(
                using: &generator
            )!
        case 3 where depth < 4:
            return "["
                + (0..<Int.random(in: 0...2, using: &generator)).map { _ in
                    randomValue(depth: depth + 1, using: &generator)
                }
                .joined(separator: ",") + "]"
        case 4 where depth < 4: return randomObject(depth: depth, using: &generator)
        default: return "\"v\""
        }
    }

    /// A member name as the generator writes it, unescaped (for sorting by its bytes).
    private static func unescaped(_ name: String) -> String {
        name.replacingOccurrences(of: "\\\"", with: "\"").replacingOccurrences(of: "\\n", with: "\n")
    }
}

/// A small deterministic generator (xorshift), so a failure can be replayed.
struct SeededGenerator: RandomNumberGenerator {
    private var state: UInt64

    init(seed: UInt64) { state = seed }

    mutating func next() -> UInt64 {
        state ^= state << 13
        state ^= state >> 7
        state ^= state << 17
        return state
    }
}
