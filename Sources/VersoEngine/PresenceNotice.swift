import VersoCore

/// A presence change as one server tells the others that share its store: the text of one
/// broadcast is a JSON array of them, `{"w":server,"k":key,"s":session,"c":client,"u":user,
/// "st":state}` each (`st` null for a clear; `c` and `u` left out when absent).
struct PresenceNotice: Equatable, Sendable {
    /// The writer id of the server whose connection set it.
    var server: Int64
    var key: String
    var presence: PresenceState

    /// Most bytes of one broadcast's text (PostgreSQL's NOTIFY takes under 8000).
    static let maxBroadcastBytes = 7000

    private var value: JSONValue {
        var fields: JSONObject = [
            "w": .integer(server), "k": .string(key), "s": .string(presence.session),
            "st": presence.state.flatMap { try? $0.withUnsafeBufferPointer { try JSONParser.parse($0) } } ?? .null,
        ]
        if let client = presence.client { fields["c"] = .string(client) }
        if let user = presence.user { fields["u"] = .string(user) }
        return .object(fields)
    }

    /// `notices` as broadcast texts, each at most `maxBroadcastBytes` (a notice larger than
    /// that alone, which the presence limits rule out, is left out).
    static func broadcasts(_ notices: [PresenceNotice]) -> [String] {
        var texts: [String] = []
        var members: [String] = []
        var bytes = 2
        for notice in notices {
            let member = notice.value.encodedString
            guard member.utf8.count + 2 <= maxBroadcastBytes else { continue }
            if bytes + member.utf8.count + 1 > maxBroadcastBytes {
                texts.append("[" + members.joined(separator: ",") + "]")
                members = []
                bytes = 2
            }
            members.append(member)
            bytes += member.utf8.count + 1
        }
        if !members.isEmpty { texts.append("[" + members.joined(separator: ",") + "]") }
        return texts
    }

    /// The notices of a broadcast's text; what does not read as one is left out.
    static func notices(in text: String) -> [PresenceNotice] {
        guard case .array(let entries)? = try? JSONParser.parse(text) else { return [] }
        return entries.compactMap { entry in
            guard let server = entry["w"]?.integerValue, let key = entry["k"]?.stringValue,
                let session = entry["s"]?.stringValue, let state = entry["st"]
            else { return nil }
            let data: [UInt8]?
            switch state {
            case .null: data = nil
            case .object: data = state.encodedBytes
            default: return nil
            }
            return PresenceNotice(
                server: server,
                key: key,
                presence: PresenceState(
                    session: session,
                    client: entry["c"]?.stringValue,
                    user: entry["u"]?.stringValue,
                    state: data
                )
            )
        }
    }
}
