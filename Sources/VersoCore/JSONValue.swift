/// A JSON value as Verso stores and sends it.
///
/// Numbers keep the exact text the client sent (already checked against the JSON grammar),
/// so a number round-trips byte for byte and never loses precision. Objects are kept as
/// dictionaries keyed by member names compared as UTF-8 bytes (NFC and NFD spellings of a name
/// are two members) and always encoded with their names in UTF-8 byte order, so the same value
/// always encodes to the same bytes. Equality compares strings by their bytes too.
public enum JSONValue: Sendable, Equatable {
    case null
    case bool(Bool)
    case number(String)
    case string(String)
    case array([JSONValue])
    case object(JSONObject)

    /// The members when this value is an object.
    public var objectValue: JSONObject? {
        if case .object(let members) = self { return members }
        return nil
    }

    /// The string when this value is a string.
    public var stringValue: String? {
        if case .string(let text) = self { return text }
        return nil
    }

    /// The value as a signed 64-bit integer when it is a JSON number written as a plain integer
    /// (no fraction, no exponent) that fits.
    public var integerValue: Int64? {
        guard case .number(let text) = self else { return nil }
        return Int64(text)
    }

    /// Builds a number from an integer.
    public static func integer(_ value: Int64) -> JSONValue { .number(String(value)) }

    /// Equal when of the same kind with the same bytes: strings and numbers compare their UTF-8
    /// bytes (not Unicode equivalence), objects their members by name bytes.
    public static func == (lhs: JSONValue, rhs: JSONValue) -> Bool {
        switch (lhs, rhs) {
        case (.null, .null): true
        case (.bool(let left), .bool(let right)): left == right
        case (.number(let left), .number(let right)): left.hasSameBytes(as: right)
        case (.string(let left), .string(let right)): left.hasSameBytes(as: right)
        case (.array(let left), .array(let right)): left == right
        case (.object(let left), .object(let right)): left == right
        default: false
        }
    }
}

/// The members of a JSON object, by name. Names are compared as UTF-8 bytes, so an object may
/// hold both NFC "é" and NFD "e\u{301}" as two members, as Protocol.md section 2 requires.
public typealias JSONObject = [BytewiseString: JSONValue]

extension JSONValue {
    /// Subscript into an object; `nil` for a missing member or a non-object.
    public subscript(member: String) -> JSONValue? {
        objectValue?[member]
    }
}
