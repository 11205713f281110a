import Testing
import VersoCore

@Suite("RFC 7396 JSON merge patch")
struct MergePatchTests {
    /// The examples of RFC 7396 Appendix A: original, patch, result.
    static let rfcExamples: [(String, String, String)] = [
        (#"{"a":"b"}"#, #"{"a":"c"}"#, #"{"a":"c"}"#),
        (#"{"a":"b"}"#, #"{"b":"c"}"#, #"{"a":"b","b":"c"}"#),
        (#"{"a":"b"}"#, #"{"a":null}"#, #"{}"#),
        (#"{"a":"b","b":"c"}"#, #"{"a":null}"#, #"{"b":"c"}"#),
        (#"{"a":["b"]}"#, #"{"a":"c"}"#, #"{"a":"c"}"#),
        (#"{"a":"c"}"#, #"{"a":["b"]}"#, #"{"a":["b"]}"#),
        (#"{"a":{"b":"c"}}"#, #"{"a":{"b":"d","c":null}}"#, #"{"a":{"b":"d"}}"#),
        (#"{"a":[{"b":"c"}]}"#, #"{"a":[1]}"#, #"{"a":[1]}"#),
        (#"["a","b"]"#, #"["c","d"]"#, #"["c","d"]"#),
        (#"{"a":"b"}"#, #"["c"]"#, #"["c"]"#),
        (#"{"a":"foo"}"#, "null", "null"),
        (#"{"a":"foo"}"#, #""bar""#, #""bar""#),
        (#"{"e":null}"#, #"{"a":1}"#, #"{"a":1,"e":null}"#),
        (#"[1,2]"#, #"{"a":"b","c":null}"#, #"{"a":"b"}"#),
        (#"{}"#, #"{"a":{"bb":{"ccc":null}}}"#, #"{"a":{"bb":{}}}"#),
    ]

    @Test("matches every example of RFC 7396 Appendix A", arguments: rfcExamples.indices)
    func rfcExample(_ index: Int) throws {
        let (original, patch, expected) = Self.rfcExamples[index]
        let result = MergePatch.apply(try JSONParser.parse(patch), to: try JSONParser.parse(original))
        #expect(result == (try JSONParser.parse(expected)))
    }

    @Test("treats a missing target as an empty object")
    func missingTarget() throws {
        let result = MergePatch.apply(try JSONParser.parse(#"{"a":1,"b":null}"#), to: nil)
        #expect(result == .object(["a": .number("1")]))
    }
}
