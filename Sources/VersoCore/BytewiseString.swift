/// A string that is equal, hashed and ordered by its UTF-8 bytes.
///
/// Swift's `String` compares by Unicode canonical equivalence: NFC "é" (U+00E9) and NFD "e"
/// followed by U+0301 are `==` and hash alike, while SQLite, the wire and every other Verso
/// client see two different byte strings. Protocol.md compares keys and member names as UTF-8
/// bytes, so wherever a key or member name is a dictionary key, a set element, or compared,
/// Verso uses this type (or `hasSameBytes(as:)`): the two forms are two keys and two members,
/// and nothing is ever normalized.
public struct BytewiseString: Sendable, Hashable, Comparable, ExpressibleByStringLiteral, CustomStringConvertible {
    /// The string, with its bytes exactly as given.
    public let string: String

    @inlinable
    public init(_ string: String) {
        self.string = string
    }

    @inlinable
    public init(stringLiteral value: String) {
        self.string = value
    }

    public var description: String { string }

    public static func == (lhs: BytewiseString, rhs: BytewiseString) -> Bool {
        lhs.string.hasSameBytes(as: rhs.string)
    }

    public func hash(into hasher: inout Hasher) {
        var string = string
        string.withUTF8 { hasher.combine(bytes: UnsafeRawBufferPointer($0)) }
        // Ends the bytes, so ("ab", "c") and ("a", "bc") hash differently inside a tuple.
        hasher.combine(0xFF as UInt8)
    }

    public static func < (lhs: BytewiseString, rhs: BytewiseString) -> Bool {
        lhs.string.utf8.lexicographicallyPrecedes(rhs.string.utf8)
    }
}

extension String {
    /// Whether the two strings are the same UTF-8 bytes: how Verso compares keys and member
    /// names. (`==` also calls canonically equivalent strings equal, such as NFC "é" and NFD
    /// "e\u{301}", or "K" and the Kelvin sign U+212A.)
    public func hasSameBytes(as other: String) -> Bool {
        let lhs = utf8, rhs = other.utf8
        guard lhs.count == rhs.count else { return false }
        let fast = lhs.withContiguousStorageIfAvailable { left in
            rhs.withContiguousStorageIfAvailable { right in Self.equalBytes(left, right) }
        }
        return (fast ?? nil) ?? lhs.elementsEqual(rhs)
    }

    /// Whether two buffers of the same length hold the same bytes, compared eight at a time:
    /// keys that share a long prefix are compared in every dictionary lookup that probes them,
    /// and a byte-at-a-time loop was a measurable part of the writer's time.
    private static func equalBytes(_ left: UnsafeBufferPointer<UInt8>, _ right: UnsafeBufferPointer<UInt8>) -> Bool {
        let count = left.count
        guard count > 0, let leftStart = left.baseAddress, let rightStart = right.baseAddress else { return true }
        let leftRaw = UnsafeRawPointer(leftStart), rightRaw = UnsafeRawPointer(rightStart)
        var offset = 0
        while offset + 8 <= count {
            guard
                leftRaw.loadUnaligned(fromByteOffset: offset, as: UInt64.self)
                    == rightRaw.loadUnaligned(fromByteOffset: offset, as: UInt64.self)
            else { return false }
            offset += 8
        }
        while offset < count {
            guard leftStart[offset] == rightStart[offset] else { return false }
            offset += 1
        }
        return true
    }

    /// Whether this string sorts before `other` in UTF-8 byte order (the order keys are listed in).
    public func precedesBytewise(_ other: String) -> Bool {
        utf8.lexicographicallyPrecedes(other.utf8)
    }
}

extension Dictionary where Key == BytewiseString {
    /// The value under the name with exactly these UTF-8 bytes.
    public subscript(_ name: String) -> Value? {
        get { self[BytewiseString(name)] }
        set { self[BytewiseString(name)] = newValue }
    }
}

extension Set where Element == BytewiseString {
    /// Whether the set holds a string with exactly these UTF-8 bytes.
    public func contains(_ string: String) -> Bool {
        contains(BytewiseString(string))
    }
}
