import VersoCore

/// Where each top-level member lies in a record's encoding, so that a patch re-encodes only
/// the members it names and copies the rest as they are.
///
/// The encoding is the canonical one (`JSONValue.encodedBytes`): members in UTF-8 byte order
/// of their names (compared as bytes: NFC and NFD spellings are two members), `{"a":1,"b":2}`. Built by `encode` and kept with a cached record.
struct MemberIndex {
    /// Member names in encoding order.
    private(set) var names: [BytewiseString] = []
    /// Each member's `"name":value` bytes in the encoding (no comma).
    private(set) var ranges: [Range<Int>] = []

    /// Encodes `object` exactly as `JSONValue.object(object).encodedBytes` does, with its index.
    static func encode(_ object: JSONObject) -> (bytes: [UInt8], index: MemberIndex) {
        var writer = JSONWriter()
        var index = MemberIndex()
        index.names.reserveCapacity(object.count)
        index.ranges.reserveCapacity(object.count)
        writer.raw("{")
        for name in object.keys.sorted() {
            index.member(name, in: &writer) { $0.value(object[name]!) }
        }
        writer.raw("}")
        return (writer.bytes, index)
    }

    /// The encoding of `merged`, the object `encoded` (indexed by `self`) became when a merge
    /// patch naming the top-level members `touched` was applied to it: the members the patch
    /// names are encoded again, the runs of members between them copied. Nil when the result
    /// would not match `merged` member for member (the caller then encodes it whole).
    func patched(
        _ encoded: [UInt8],
        merged: JSONObject,
        touched: some Sequence<BytewiseString>
    ) -> (bytes: [UInt8], index: MemberIndex)? {
        var writer = JSONWriter(capacity: encoded.count + 256)
        var index = MemberIndex()
        index.names.reserveCapacity(merged.count)
        index.ranges.reserveCapacity(merged.count)
        writer.raw("{")
        var next = 0
        for name in Set(touched).sorted() {
            let position = firstPosition(notBefore: name)
            index.copy(from: self, next..<position, of: encoded, into: &writer)
            if let value = merged[name] {
                index.member(name, in: &writer) { $0.value(value) }
            }
            next = position < names.count && names[position] == name ? position + 1 : position
        }
        index.copy(from: self, next..<names.count, of: encoded, into: &writer)
        writer.raw("}")
        guard index.names.count == merged.count else { return nil }
        return (writer.bytes, index)
    }

    /// The position of the first name that does not sort before `name`.
    private func firstPosition(notBefore name: BytewiseString) -> Int {
        var low = 0
        var high = names.count
        while low < high {
            let middle = (low + high) / 2
            if names[middle] < name { low = middle + 1 } else { high = middle }
        }
        return low
    }

    /// Appends one member, `"name":` and what `value` writes, and indexes it.
    private mutating func member(_ name: BytewiseString, in writer: inout JSONWriter, value: (inout JSONWriter) -> Void)
    {
        if !names.isEmpty { writer.raw(",") }
        let start = writer.bytes.count
        writer.string(name.string)
        writer.raw(":")
        value(&writer)
        names.append(name)
        ranges.append(start..<writer.bytes.count)
    }

    /// Appends the members at `positions` of `source` (indexing `encoded`) with one copy, and
    /// indexes them.
    private mutating func copy(
        from source: MemberIndex,
        _ positions: Range<Int>,
        of encoded: [UInt8],
        into writer: inout JSONWriter
    ) {
        guard let first = positions.first, let last = positions.last else { return }
        if !names.isEmpty { writer.raw(",") }
        let start = writer.bytes.count
        let from = source.ranges[first].lowerBound
        writer.bytes.append(contentsOf: encoded[from..<source.ranges[last].upperBound])
        let shift = start - from
        names.append(contentsOf: source.names[positions])
        ranges.append(
            contentsOf: source.ranges[positions].lazy.map { ($0.lowerBound + shift)..<($0.upperBound + shift) }
        )
    }
}
