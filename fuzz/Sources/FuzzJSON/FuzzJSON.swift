import FuzzSupport
import VersoCore

// JSONParser (the strict RFC 8259 parser every client message goes through) and JSONWriter.
//
// Invariants, for any bytes:
// - a refusal names a byte offset inside the input and a reason;
// - the bytes API and the String API agree (same value, or the same refusal), and an accepted
//   document is valid UTF-8 (checked by the standard library);
// - an accepted value encodes to valid UTF-8 that parses back to the same value, and encoding
//   that again gives the same bytes (the encoding is canonical);
// - located as an object's member, a value reported as written canonically is exactly its
//   encoding, and an encoding with no \u escape is reported so;
// - parsed with the member `data` left out of the tree (as a put's data is), the input and the
//   input as `data` give the same refusal or the same tree as a whole parse, `data` being left
//   out exactly when it is an object reported canonical;
// - nesting is cut at exactly `JSONParser.maxDepth`: the value wrapped in one more array parses
//   back to that array when it is still within the limit, and is refused when it is not.

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzJSON(_ start: UnsafeRawPointer, _ count: Int) -> CInt {
    let input = fuzzInput(start, count)
    let parsed: Result<JSONValue, JSONParseError>
    do throws(JSONParseError) {
        parsed = .success(try JSONParser.parse(input))
    } catch {
        invariant(
            error.offset >= 0 && error.offset <= input.count,
            "refusal offset \(error.offset) outside \(input.count) bytes"
        )
        invariant(!error.reason.isEmpty, "refusal without a reason")
        parsed = .failure(error)
    }

    if let text = String(validating: input, as: UTF8.self) {
        let viaString: Result<JSONValue, JSONParseError>
        do throws(JSONParseError) {
            viaString = .success(try JSONParser.parse(text))
        } catch {
            viaString = .failure(error)
        }
        invariant(viaString == parsed, "String and byte parsing disagree: \(viaString) vs \(parsed)")
    }

    checkLeavingOut(Array(input))
    checkLeavingOut(Array(#"{"type":"put","data":"#.utf8) + input + [UInt8(ascii: "}")])

    guard case .success(let value) = parsed else { return 0 }
    // ASCII around strings whose bytes were checked: an accepted document is valid UTF-8.
    invariant(String(validating: input, as: UTF8.self) != nil, "accepted a document that is not valid UTF-8")
    let encoded = value.encodedBytes
    invariant(String(validating: encoded, as: UTF8.self) != nil, "encoding is not valid UTF-8")
    let reparsed = encoded.withUnsafeBufferPointer { bytes in
        Result { () throws(JSONParseError) in try JSONParser.parse(bytes) }
    }
    guard case .success(let again) = reparsed else {
        fatalError(
            "invariant broken: the encoding of an accepted value is refused: \(reparsed), encoding \(String(decoding: encoded, as: UTF8.self))"
        )
    }
    invariant(again == value, "parse(encode(v)) != v for \(String(decoding: encoded, as: UTF8.self))")
    invariant(again.encodedBytes == encoded, "encoding is not canonical")

    // Located as the member `data`, a value reported as written canonically is exactly its
    // encoding (a put's data is then stored as it came); the encoding itself is reported so
    // unless it escapes a control character as \u00XX (which the parser does not vouch for).
    func locate(_ value: some Sequence<UInt8>) -> (bytes: [UInt8], member: (range: Range<Int>, isCanonical: Bool)?)? {
        let envelope = Array(#"{"data":"#.utf8) + value + [UInt8(ascii: "}")]
        let located = envelope.withUnsafeBufferPointer { bytes in
            Result { () throws(JSONParseError) in try JSONParser.parse(bytes, locating: "data") }
        }
        guard case .success(let found) = located else { return nil }
        return (envelope, found.member)
    }
    if case let (envelope, member?)? = locate(input), member.isCanonical {
        invariant(Array(envelope[member.range]) == encoded, "a value reported canonical is not its encoding")
    }
    if !String(decoding: encoded, as: UTF8.self).contains("\\u"), case let (envelope, member)? = locate(encoded) {
        invariant(member?.isCanonical == true, "the encoding of a value is not reported canonical")
        invariant(member.map { Array(envelope[$0.range]) } == encoded, "the located range is not the value")
    }

    let wrapped = [UInt8(ascii: "[")] + encoded + [UInt8(ascii: "]")]
    let wrappedResult = wrapped.withUnsafeBufferPointer { bytes in
        Result { () throws(JSONParseError) in try JSONParser.parse(bytes) }
    }
    if depth(of: value) + 1 <= JSONParser.maxDepth {
        invariant(
            wrappedResult == .success(.array([value])),
            "[v] within the nesting limit is not the array of v: \(wrappedResult)"
        )
    } else {
        guard case .failure = wrappedResult else {
            fatalError(
                "invariant broken: a value nested \(depth(of: value) + 1) deep was accepted (limit \(JSONParser.maxDepth))"
            )
        }
    }
    return 0
}

/// `JSONParser.parse(_:leavingOut:)` on `bytes` against the whole parse: the same refusal, or
/// the same tree but for `data`, left out exactly when it is an object written canonically.
private func checkLeavingOut(_ bytes: [UInt8]) {
    let (leaving, whole) = bytes.withUnsafeBufferPointer { bytes in
        (
            Result { () throws(JSONParseError) in try JSONParser.parse(bytes, leavingOut: "data") },
            Result { () throws(JSONParseError) in try JSONParser.parse(bytes, locating: "data") }
        )
    }
    switch (leaving, whole) {
    case (.failure(let left), .failure(let all)):
        invariant(left == all, "leaving data out refuses otherwise: \(left) vs \(all)")
    case (.success(let left), .success(let all)):
        guard case .object(var members) = all.value, let member = all.member, member.isCanonical,
            case .object = members["data"]
        else {
            invariant(left.leftOut == nil && left.value == all.value, "data left out when it is not canonical")
            return
        }
        members["data"] = nil
        invariant(left.leftOut == member.range, "canonical data not left out, or its range differs")
        invariant(left.value == .object(members), "the tree with data left out differs")
    default:
        fatalError("invariant broken: leaving data out accepts or refuses otherwise: \(leaving) vs \(whole)")
    }
}

/// Levels of arrays and objects: 0 for a scalar, as `JSONParser.maxDepth` counts them.
private func depth(of value: JSONValue) -> Int {
    switch value {
    case .null, .bool, .number, .string: 0
    case .array(let elements): 1 + (elements.map(depth(of:)).max() ?? 0)
    case .object(let members): 1 + (members.values.map(depth(of:)).max() ?? 0)
    }
}
