/// A JSON object held as the bytes `JSONWriter` writes for it (compact, members in UTF-8 byte
/// order, no escapes but the five it uses), with no tree built of them: a put's data that came
/// already written so is stored and sent as it came, and parsed only when a merge needs its
/// members.
///
/// Only the parser (which checked the bytes) and `init(_:)` (which writes them) make one, so
/// the bytes are always a valid JSON object in that form.
public struct CanonicalObject: Sendable, Equatable {
    /// The object's encoding.
    public let bytes: [UInt8]

    /// The encoding of `object`.
    public init(_ object: JSONObject) {
        bytes = JSONValue.object(object).encodedBytes
    }

    /// Bytes the parser found to be a canonical object.
    init(checked bytes: [UInt8]) {
        self.bytes = bytes
    }

    /// The object, parsed from its bytes (each call parses them again).
    public var object: JSONObject {
        let parsed = bytes.withUnsafeBufferPointer { bytes in
            Result { () throws(JSONParseError) in try JSONParser.parse(bytes) }
        }
        guard case .success(.object(let members)) = parsed else {
            preconditionFailure("a canonical object's bytes are a JSON object")
        }
        return members
    }
}
