/// What an identity may do with a key.
public enum AccessRight: String, Sendable, CaseIterable, Comparable {
    /// `get`, `list`, `subscribe`, and a txn's `check` op; also a conflict's current data.
    case read
    /// `put`, `patch` and `delete`, alone or as txn ops.
    case write
    /// A write with `"force": true` (which also needs `write`, and a server started with
    /// `--allow-force`).
    case force
    /// Presence on the key (reserved: no request uses it yet).
    case presence

    public static func < (lhs: AccessRight, rhs: AccessRight) -> Bool {
        allCases.firstIndex(of: lhs)! < allCases.firstIndex(of: rhs)!
    }
}

/// One rule: the rights it grants on every key that starts with `prefix` (compared as UTF-8
/// bytes; `""` covers every key).
public struct AccessRule: Sendable, Equatable {
    public var prefix: String
    public var rights: Set<AccessRight>

    public init(prefix: String, rights: Set<AccessRight>) {
        self.prefix = prefix
        self.rights = rights
    }
}

/// An identity's access rules (Protocol.md section 2.1): nothing is allowed unless a rule
/// allows it, and the rights on a key are those of every rule whose prefix the key starts
/// with. Pure: no I/O.
public struct AccessRules: Sendable, Equatable {
    public var rules: [AccessRule]

    public init(_ rules: [AccessRule]) {
        self.rules = rules
    }

    /// Every right on every key: what a connection has on a server without authentication.
    public static let everything = AccessRules([AccessRule(prefix: "", rights: Set(AccessRight.allCases))])

    /// Whether `right` is allowed on `key`.
    public func allows(_ right: AccessRight, on key: String) -> Bool {
        rules.contains { $0.rights.contains(right) && RecordKey.key(key, hasPrefix: $0.prefix) }
    }

    /// Whether `right` is allowed on every key that starts with `prefix`, present or future:
    /// one rule must cover the whole prefix (its own prefix is a prefix of `prefix`).
    public func allows(_ right: AccessRight, onEveryKeyWithPrefix prefix: String) -> Bool {
        rules.contains { $0.rights.contains(right) && RecordKey.key(prefix, hasPrefix: $0.prefix) }
    }

    /// The first right `operation` needs on its key and is not allowed, or nil when it is
    /// allowed: `read` for a check, `write` for any other write, and `force` too when forced.
    public func missingRight(for operation: WriteOperation) -> AccessRight? {
        let first: AccessRight = if case .check = operation.action { .read } else { .write }
        if !allows(first, on: operation.key) { return first }
        if operation.precondition == .force, !allows(.force, on: operation.key) { return .force }
        return nil
    }
}

extension AccessRules {
    /// Reads rules from their JSON form, an array of `{"prefix": "notes/", "allow": ["read",
    /// "write"]}`; `context` names where they come from in errors.
    public init(json: JSONValue, context: String) throws(AccessRulesError) {
        guard case .array(let items) = json else {
            throw AccessRulesError("\(context): the rules must be a JSON array of {\"prefix\", \"allow\"} objects")
        }
        var rules: [AccessRule] = []
        for (index, item) in items.enumerated() {
            let at = "\(context) rule \(index + 1)"
            guard case .object(let fields) = item else {
                throw AccessRulesError("\(at): a rule must be an object {\"prefix\": …, \"allow\": […]}")
            }
            for name in fields.keys where name != "prefix" && name != "allow" {
                throw AccessRulesError("\(at): unknown member \"\(name.string)\" (a rule has \"prefix\" and \"allow\")")
            }
            guard case .string(let prefix)? = fields["prefix"] else {
                throw AccessRulesError("\(at): \"prefix\" must be a string (\"\" for every key)")
            }
            if let problem = RecordKey.prefixProblem(with: prefix) { throw AccessRulesError("\(at): \(problem)") }
            guard case .array(let names)? = fields["allow"], !names.isEmpty else {
                throw AccessRulesError("\(at): \"allow\" must be a non-empty array of rights (\(Self.rightNames))")
            }
            var rights = Set<AccessRight>()
            for name in names {
                guard case .string(let text) = name, let right = AccessRight(rawValue: text) else {
                    throw AccessRulesError(
                        "\(at): \(name.encodedString) is not a right; the rights are \(Self.rightNames)"
                    )
                }
                rights.insert(right)
            }
            rules.append(AccessRule(prefix: prefix, rights: rights))
        }
        self.init(rules)
    }

    private static var rightNames: String { AccessRight.allCases.map(\.rawValue).joined(separator: ", ") }
}

/// Access rules that cannot be read, with what is wrong and where.
public struct AccessRulesError: Error, Sendable, Equatable, CustomStringConvertible {
    public var description: String

    public init(_ description: String) {
        self.description = description
    }
}
