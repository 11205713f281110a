import Testing
import VersoCore
@testable import VersoSQLite

@Suite("Member index: a patch re-encodes only the members it names, byte for byte as a full encode")
struct MemberIndexTests {
    /// Applies `patch` to `object` through the index and checks the bytes and the index
    /// against a full encode; returns the merged object and its index for the next patch.
    @discardableResult
    func check(
        _ object: JSONObject,
        _ encoded: [UInt8],
        _ index: MemberIndex,
        patch: JSONObject
    ) -> (JSONObject, [UInt8], MemberIndex) {
        guard case .object(let merged) = MergePatch.apply(.object(patch), to: .object(object)) else {
            preconditionFailure()
        }
        let full = JSONValue.object(merged).encodedBytes
        guard let (bytes, next) = index.patched(encoded, merged: merged, touched: patch.keys) else {
            Issue.record("no incremental encoding for \(JSONValue.object(patch).encodedString)")
            return (merged, full, MemberIndex.encode(merged).index)
        }
        #expect(bytes == full, "patch \(JSONValue.object(patch).encodedString)")
        let fresh = MemberIndex.encode(merged)
        #expect(fresh.bytes == full)
        #expect(next.names == fresh.index.names && next.ranges == fresh.index.ranges)
        return (merged, bytes, next)
    }

    @Test("encode matches the canonical encoding")
    func encodeMatches() throws {
        let text = #"{"b":[1,{"z":null}],"a":"x\"y\n","é":{"k":true},"":0,"\u0001":1.5e3}"#
        guard case .object(let object) = try JSONParser.parse(text) else { preconditionFailure() }
        #expect(MemberIndex.encode(object).bytes == JSONValue.object(object).encodedBytes)
        #expect(MemberIndex.encode([:]).bytes == Array("{}".utf8))
    }

    @Test("replacing, adding before, between and after, removing, nested merges, emptying")
    func patches() throws {
        guard case .object(let object) = try JSONParser.parse(#"{"b":1,"d":{"x":1,"y":2},"f":"s","h":[1]}"#) else {
            preconditionFailure()
        }
        let (encoded, index) = MemberIndex.encode(object)
        check(object, encoded, index, patch: ["b": .number("2")])
        check(object, encoded, index, patch: ["a": .number("0")])
        check(object, encoded, index, patch: ["c": .string("new"), "g": .bool(false)])
        check(object, encoded, index, patch: ["z": .null, "i": .array([])])
        check(object, encoded, index, patch: ["b": .null, "h": .null])
        check(object, encoded, index, patch: ["d": .object(["x": .null, "w": .number("3")])])
        check(object, encoded, index, patch: ["nothing": .null])
        check(object, encoded, index, patch: ["b": .null, "d": .null, "f": .null, "h": .null])
        let (emptied, bytes, after) = check(
            object,
            encoded,
            index,
            patch: ["b": .null, "d": .null, "f": .null, "h": .null]
        )
        check(emptied, bytes, after, patch: ["q": .string("back")])
    }

    @Test("a long run of random patches, each on the last result, stays byte for byte right")
    func randomRun() {
        var generator = SplitMix(seed: 7)
        // NFC "é" and NFD "e\u{301}" are two members (names compare as bytes).
        let names: [BytewiseString] = [
            "a", "b", "é", "e\u{301}", "e\u{301}x", "\"q", "a\nb", "zz", "Z", "m", "m1", "m10", "m2", "", "ß", "日本",
            "k\\", "n", "o", "p", "r",
        ]
        func value(_ depth: Int) -> JSONValue {
            switch Int.random(in: 0..<6, using: &generator) {
            case 0: return .null
            case 1: return .number(String(Int.random(in: -99...99, using: &generator)))
            case 2: return .string(String(repeating: "v", count: Int.random(in: 0...5, using: &generator)))
            case 3 where depth < 2:
                return .object(
                    Dictionary(
                        uniqueKeysWithValues: names.shuffled(using: &generator).prefix(2).map { ($0, value(depth + 1)) }
                    )
                )
            case 4: return .array([.bool(true), .number("1")])
            default: return .bool(false)
            }
        }
        var object: JSONObject = [:]
        for name in names where Bool.random(using: &generator) { object[name] = .number("1") }
        var (encoded, index) = MemberIndex.encode(object)
        for _ in 0..<300 {
            let patch = Dictionary(
                uniqueKeysWithValues: names.shuffled(using: &generator).prefix(Int.random(in: 1...4, using: &generator))
                    .map { ($0, value(0)) }
            )
            (object, encoded, index) = check(object, encoded, index, patch: patch)
        }
    }
}

/// A seeded generator, so a failing run can be repeated.
struct SplitMix: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
