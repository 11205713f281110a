import Testing
import VersoCore

@Suite("JSON parsing and encoding")
struct JSONTests {
    @Test("parses every kind of value and encodes it canonically")
    func roundTrip() throws {
        let value = try JSONParser.parse(
            #" { "b" : [1, -2.5e3, true, false, null], "a": "x\ny\u00e9\ud83d\ude00", "c": {} } "#
        )
        #expect(value["a"] == .string("x\nyé😀"))
        #expect(value["b"] == .array([.number("1"), .number("-2.5e3"), .bool(true), .bool(false), .null]))
        #expect(value.encodedString == #"{"a":"x\nyé😀","b":[1,-2.5e3,true,false,null],"c":{}}"#)
        #expect(try JSONParser.parse(value.encodedString) == value)
    }

    @Test("a string's bytes are taken exactly when they are valid UTF-8 (Swift's own check is the oracle)")
    func utf8AgainstTheStandardLibrary() throws {
        var generator = SeededGenerator(seed: 0x0DF8)
        // Mostly bytes 0x80 and up, where UTF-8's rules are; some ASCII between them.
        let pool: [UInt8] = Array(0x80...0xFF) + Array(0x80...0xFF) + [0x41, 0x7E, 0xC3, 0xE2, 0xF0, 0xF4]
        var accepted = 0
        for _ in 0..<20_000 {
            let content = (0..<Int.random(in: 1...6, using: &generator)).map { _ in
                pool.randomElement(using: &generator)!
            }
            let valid = String(validating: content, as: UTF8.self) != nil
            for (prefix, suffix) in [(#"""#, #"""#), (#"{"data":{"a":""#, #""}}"#), (#"{"s":""#, #"\n"}"#)] {
                let bytes = Array(prefix.utf8) + content + Array(suffix.utf8)
                let parsed = bytes.withUnsafeBufferPointer { (try? JSONParser.parse($0, leavingOut: "data")) != nil }
                #expect(parsed == valid, "\(content) in \(prefix)")
            }
            if valid { accepted += 1 }
        }
        #expect(accepted > 500, "the generator makes valid sequences too")
    }

    @Test("escapes control characters, quotes and backslashes")
    func escaping() throws {
        let value = JSONValue.string("q\"b\\t\u{01}")
        #expect(value.encodedString == #""q\"b\\t\u0001""#)
        #expect(try JSONParser.parse(value.encodedString) == value)
    }

    @Test(
        "rejects invalid documents",
        arguments: [
            "", "{", "[1,]", "{\"a\":1,}", "01", "1.", "-", "1e", "tru", "\"abc", "\"\\x\"", "{\"a\" 1}",
            "{\"a\":1}x", "\"\u{01}\"", "\"\\ud800\"", "\"\\udc00\"", "{\"a\":1,\"a\":2}", "[1 2]", "NaN",
        ]
    )
    func rejects(_ text: String) {
        #expect(throws: JSONParseError.self) { try JSONParser.parse(text) }
    }

    @Test("limits nesting depth so no input can exhaust the stack")
    func depthLimit() throws {
        let ok = String(repeating: "[", count: JSONParser.maxDepth) + String(repeating: "]", count: JSONParser.maxDepth)
        _ = try JSONParser.parse(ok)
        let deep = String(repeating: "[", count: 100_000)
        #expect(throws: JSONParseError.self) { try JSONParser.parse(deep) }
    }

    @Test("encodes object members in UTF-8 byte order of their names")
    func canonicalOrder() {
        let value = JSONValue.object(["b": .null, "a": .null, "é": .null, "Z": .null])
        #expect(value.encodedString == #"{"Z":null,"a":null,"b":null,"é":null}"#)
    }

    @Test("keeps number text exactly")
    func numbers() throws {
        let value = try JSONParser.parse("[123456789012345678901234567890, 1.0, -0, 1E+2]")
        #expect(value.encodedString == "[123456789012345678901234567890,1.0,-0,1E+2]")
    }
}
