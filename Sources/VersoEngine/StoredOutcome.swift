import VersoCore

/// A stored idempotency outcome that cannot be read back, or an outcome that is not kept.
public struct StoredOutcomeError: Error, Sendable, CustomStringConvertible {
    public let description: String
    init(_ description: String) { self.description = description }
}

/// The form in which a store keeps an applied outcome with its idempotency key, shared by
/// every store so that a key's replay reads the same whichever wrote it.
public enum StoredOutcome {
    /// The bytes in lowercase hex; the writer keeps the first 16 bytes of a fingerprint (128
    /// bits tell two requests under one key apart as surely as 256).
    public static func hex(_ bytes: some Collection<UInt8>) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var text: [UInt8] = []
        text.reserveCapacity(bytes.count * 2)
        for byte in bytes {
            text.append(digits[Int(byte >> 4)])
            text.append(digits[Int(byte & 0xF)])
        }
        return String(decoding: text, as: UTF8.self)
    }

    /// The stored form of an outcome that is kept with its key: an applied write or txn
    /// (`{"seq":S,"versions":[["key",version,merged],…]}`, its changes left out) or a batch
    /// (`{"batch":[…]}`, each op's outcome: applied as above, a conflict as its details with
    /// the data as it was, a not-found as its key and state). Nil for an outcome that applied
    /// nothing, which keeps no key.
    public static func encode(_ outcome: CommandOutcome) throws -> String? {
        switch outcome {
        case .applied, .batch: return try value(of: outcome).encodedString
        default: return nil
        }
    }

    private static func value(of outcome: CommandOutcome) throws -> JSONValue {
        switch outcome {
        case .applied(let seq, _, let versions):
            let entries: [JSONValue] = versions.map {
                .array([.string($0.key), .integer($0.version), .bool($0.merged)])
            }
            return .object(["seq": .integer(seq), "versions": .array(entries)])
        case .batch(let outcomes):
            return .object(["batch": .array(try outcomes.map(value(of:)))])
        case .conflict(let details):
            return .object(["conflict": .array(try details.map(value(of:)))])
        case .notFound(let key, let current):
            return .object([
                "notFound": .object([
                    "key": .string(key), "version": current.map { .integer($0.version) } ?? .null,
                    "deleted": .bool(current?.isDeleted == true),
                ])
            ])
        case .replayed, .keyReused:
            throw StoredOutcomeError("\(outcome) is not kept with an idempotency key")
        }
    }

    private static func value(of detail: ConflictDetail) throws -> JSONValue {
        var fields: JSONObject = [
            "key": .string(detail.key), "base": .integer(detail.base), "version": .integer(detail.version),
            "data": try detail.data.map { try $0.withUnsafeBufferPointer { try JSONParser.parse($0) } } ?? .null,
            "deleted": .bool(detail.deleted),
        ]
        if let merge = detail.merge {
            fields["reason"] = .string(merge.reason.rawValue)
            fields["clashes"] = .array(merge.clashes.map { .array($0.names.map { .string($0.string) }) })
        }
        if let changed = detail.changed {
            fields["changed"] = .array(changed.map { .array($0.names.map { .string($0.string) }) })
        }
        fields["at"] = detail.at.map { .integer($0) }
        fields["by"] = detail.by.map { .string($0) }
        return .object(fields)
    }

    public static func decode(_ text: String) throws -> CommandOutcome {
        try outcome(from: try JSONParser.parse(text), text: text)
    }

    private static func outcome(from value: JSONValue, text: String) throws -> CommandOutcome {
        let corrupt = StoredOutcomeError("a stored idempotency outcome is not readable: \(text)")
        guard case .object(let fields) = value else { throw corrupt }
        if case .array(let outcomes)? = fields["batch"] {
            return .batch(try outcomes.map { try outcome(from: $0, text: text) })
        }
        if case .array(let details)? = fields["conflict"] {
            return .conflict(try details.map { try detail(from: $0, corrupt: corrupt) })
        }
        if case .object(let notFound)? = fields["notFound"] {
            guard case .string(let key)? = notFound["key"], case .bool(let deleted)? = notFound["deleted"] else {
                throw corrupt
            }
            let current = notFound["version"]?.integerValue.map { RecordState(version: $0, data: deleted ? nil : [:]) }
            return .notFound(key: key, current: current)
        }
        guard let seq = fields["seq"]?.integerValue, case .array(let entries)? = fields["versions"] else {
            throw corrupt
        }
        var versions: [KeyVersion] = []
        for entry in entries {
            guard case .array(let parts) = entry, parts.count == 3, case .string(let key) = parts[0],
                let version = parts[1].integerValue, case .bool(let merged) = parts[2]
            else { throw corrupt }
            versions.append(KeyVersion(key: key, version: version, merged: merged))
        }
        return .applied(seq: seq, changes: [], versions: versions)
    }

    private static func detail(from value: JSONValue, corrupt: StoredOutcomeError) throws -> ConflictDetail {
        guard case .object(let fields) = value, case .string(let key)? = fields["key"],
            let base = fields["base"]?.integerValue, let version = fields["version"]?.integerValue,
            case .bool(let deleted)? = fields["deleted"], let data = fields["data"]
        else { throw corrupt }
        var detail = ConflictDetail(
            key: key,
            base: base,
            version: version,
            data: data == .null ? nil : data.encodedBytes,
            deleted: deleted
        )
        func paths(_ name: String) throws -> [FieldPath]? {
            guard case .array(let list)? = fields[name] else { return nil }
            return try list.map { entry in
                guard case .array(let names) = entry else { throw corrupt }
                return FieldPath(
                    try names.map { name in
                        guard case .string(let text) = name else { throw corrupt }
                        return BytewiseString(text)
                    }
                )
            }
        }
        if case .string(let reasonName)? = fields["reason"] {
            guard let reason = MergeRefusal(rawValue: reasonName) else { throw corrupt }
            detail.merge = MergeConflict(reason: reason, clashes: try paths("clashes") ?? [])
        }
        detail.changed = try paths("changed")
        detail.at = fields["at"]?.integerValue
        detail.by = fields["by"]?.stringValue
        return detail
    }
}
