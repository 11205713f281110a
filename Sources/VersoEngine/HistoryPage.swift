import VersoCore

/// The versions a `history` page has found so far, newest first, and the one it wants next:
/// a store walks a key's versions from the newest down and appends each the page wants.
public struct HistoryPage: Sendable {
    let limit: Int
    let maxBytes: Int
    /// The next (older) version the page wants; 0 once it has reached version 1.
    public var wanted: Int64
    var versions: [StoredVersion] = []
    var bytes = 0

    public init(limit: Int, maxBytes: Int, wanted: Int64) {
        self.limit = limit
        self.maxBytes = maxBytes
        self.wanted = max(0, wanted)
    }

    /// Whether `version` is the next one the page takes.
    public func wants(_ version: Int64) -> Bool { !isFull && version == wanted }

    /// Full by count (one more than `limit` is read, to tell whether more follow) or by bytes.
    public var isFull: Bool { versions.count > limit || bytes > maxBytes || wanted < 1 }

    public mutating func append(_ version: StoredVersion) {
        versions.append(version)
        bytes += (version.data?.count ?? 0) + 64
        wanted = version.version - 1
    }

    public var result: StoredHistory {
        let page = Array(versions.prefix(limit))
        let more = versions.count > limit || (bytes > maxBytes && wanted >= 1)
        if more { return StoredHistory(versions: page, next: page.last?.version, gone: nil) }
        return StoredHistory(versions: page, next: nil, gone: wanted >= 1 ? wanted : nil)
    }
}

/// Record data as stores keep it: the encoded JSON object.
public enum StoredJSON {
    /// `bytes` parsed; throws when they are not a JSON object.
    public static func object(_ bytes: [UInt8], key: String) throws -> JSONObject {
        let value = try bytes.withUnsafeBufferPointer { try JSONParser.parse($0) }
        guard case .object(let members) = value else {
            throw StoredOutcomeError("stored data for key \"\(key)\" is not a JSON object")
        }
        return members
    }
}
