import Foundation
import VersoCore
import VersoEngine

/// How the SQLite writer keeps idempotency keys: the stored form of an applied outcome, and
/// when keys past their retention are pruned. Used by the writer alone, on its queue.
struct IdempotencyClaims {
    /// Keys are kept at least this long.
    let retention: Duration
    /// Pruning runs at most this often.
    static let pruneInterval: Int64 = 60_000
    private var lastPrune: Int64 = 0

    init(retention: Duration) {
        self.retention = retention
    }

    /// Milliseconds since the Unix epoch.
    func now() -> Int64 { Int64((Date().timeIntervalSince1970 * 1000).rounded(.down)) }

    /// The time before which keys are pruned, when a prune is due; nil otherwise.
    mutating func cutoffIfDue() -> Int64? {
        let now = now()
        guard now - lastPrune >= Self.pruneInterval else { return nil }
        lastPrune = now
        let (seconds, attoseconds) = retention.components
        return now - seconds * 1000 - attoseconds / 1_000_000_000_000_000
    }

    static func hex(_ bytes: [UInt8]) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var text: [UInt8] = []
        text.reserveCapacity(bytes.count * 2)
        for byte in bytes {
            text.append(digits[Int(byte >> 4)])
            text.append(digits[Int(byte & 0xF)])
        }
        return String(decoding: text, as: UTF8.self)
    }

    /// `{"seq":S,"versions":[["key",version,merged],…]}`.
    static func encode(seq: Int64, versions: [KeyVersion]) -> String {
        let entries: [JSONValue] = versions.map { .array([.string($0.key), .integer($0.version), .bool($0.merged)]) }
        return JSONValue.object(["seq": .integer(seq), "versions": .array(entries)]).encodedString
    }

    static func decode(_ text: String) throws -> CommandOutcome {
        let corrupt = SQLiteStoreError("a stored idempotency outcome is not readable: \(text)")
        guard case .object(let fields) = try JSONParser.parse(text), let seq = fields["seq"]?.integerValue,
            case .array(let entries)? = fields["versions"]
        else { throw corrupt }
        var versions: [KeyVersion] = []
        for entry in entries {
            guard case .array(let parts) = entry, parts.count == 3, case .string(let key) = parts[0],
                let version = parts[1].integerValue, case .bool(let merged) = parts[2]
            else { throw corrupt }
            versions.append(KeyVersion(key: key, version: version, merged: merged))
        }
        return .replayed(seq: seq, versions: versions)
    }
}
