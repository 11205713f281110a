/// A JSON value as Verso stores and sends it.
///
/// Numbers keep the exact text the client sent (already checked against the JSON grammar),
/// so a number round-trips byte for byte and never loses precision. Objects are kept as
/// dictionaries and always encoded with their keys in sorted (UTF-8 byte) order, so the same
/// value always encodes to the same bytes.
public enum JSONValue: Sendable, Equatable {
    case null
    case bool(Bool)
    case number(String)
    case string(String)
    case array([JSONValue])
    case object([String: JSONValue])

    /// The dictionary when this value is an object.
    public var objectValue: [String: JSONValue]? {
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
}

extension JSONValue {
    /// Subscript into an object; `nil` for a missing member or a non-object.
    public subscript(member: String) -> JSONValue? {
        objectValue?[member]
    }
}
