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
        let put = try #require(try operation(#"{"type":"put","key":"k","base":0,"data":{"a":1,"b":"x"}}"#))
        #expect(put.encodedData == Array(#"{"a":1,"b":"x"}"#.utf8))
        let spaced = try #require(try operation(#"{"type":"put","key":"k","base":0,"data":{"b":"x", "a":1}}"#))
        #expect(spaced.encodedData == nil)
        // Equal operations whether or not they carry the bytes.
        #expect(spaced == put)
        let patch = try #require(try operation(#"{"type":"patch","key":"k","base":1,"patch":{"a":2}}"#))
        #expect(patch.encodedData == nil)
        // A member named data elsewhere in the message is not the put's data.
        let nested = try #require(try operation(#"{"type":"patch","key":"k","base":1,"patch":{"data":{"a":1}}}"#))
        #expect(nested.encodedData == nil)
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
