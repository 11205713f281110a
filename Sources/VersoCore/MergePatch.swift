/// RFC 7396 JSON Merge Patch.
public enum MergePatch {
    /// Applies `patch` to `target` as RFC 7396 section 2 defines: an object patch merges member
    /// by member (a `null` member removes that member), anything else replaces the target.
    /// Members are matched by the UTF-8 bytes of their names: `{"é":null}` in NFC removes the
    /// NFC member only, never an NFD "e\u{301}" one.
    public static func apply(_ patch: JSONValue, to target: JSONValue?) -> JSONValue {
        guard case .object(let patchMembers) = patch else { return patch }
        var result: JSONObject
        if case .object(let targetMembers)? = target {
            result = targetMembers
        } else {
            result = [:]
        }
        for (name, value) in patchMembers {
            if value == .null {
                result.removeValue(forKey: name)
            } else {
                result[name] = apply(value, to: result[name])
            }
        }
        return .object(result)
    }
}
