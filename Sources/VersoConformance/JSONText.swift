import VersoCore

/// `text` as a JSON string literal, quotes and escapes included, for building requests.
func quoted(_ text: String) -> String {
    var writer = JSONWriter()
    writer.string(text)
    return String(decoding: writer.bytes, as: UTF8.self)
}

extension JSONValue {
    /// The `type` member of a message.
    var type: String? { self["type"]?.stringValue }
    /// The value as an integer, when it is a plain JSON integer.
    var int: Int64? { integerValue }
    /// The value as a string, when it is one.
    var str: String? { stringValue }
    /// The elements when this value is an array.
    var array: [JSONValue]? {
        if case .array(let elements) = self { return elements }
        return nil
    }

    /// Parses JSON text the suite itself wrote (a literal in a case), so it cannot fail.
    static func literal(_ text: String) -> JSONValue {
        do { return try JSONParser.parse(text) } catch {
            preconditionFailure("bad JSON literal in the suite: \(text): \(error)")
        }
    }
}

/// Checks the order of object members in JSON text as sent, which parsing forgets.
enum MemberOrder {
    /// The first object inside the value of a member named `member` (at any depth) whose member
    /// names are not in UTF-8 byte order, described; `nil` when all are in order. `text` must be
    /// valid JSON.
    static func firstViolation(in text: String, within member: String) -> String? {
        let bytes = Array(text.utf8)
        let member = Array(member.utf8)
        // One frame per open object or array: whether it lies within `member`, and for objects
        // the last member name and whether the next string is a name.
        struct Frame { var isObject: Bool; var checked: Bool; var lastName: [UInt8]?; var expectingName: Bool }
        var stack: [Frame] = []
        var index = 0
        while index < bytes.count {
            switch bytes[index] {
            case UInt8(ascii: "\""):
                let start = index
                index += 1
                while index < bytes.count, bytes[index] != UInt8(ascii: "\"") {
                    index += bytes[index] == UInt8(ascii: "\\") ? 2 : 1
                }
                if var top = stack.last, top.isObject, top.expectingName {
                    let literal = String(decoding: bytes[start...min(index, bytes.count - 1)], as: UTF8.self)
                    let name = Array(((try? JSONParser.parse(literal))?.stringValue ?? literal).utf8)
                    if top.checked, let last = top.lastName, !last.lexicographicallyPrecedes(name) {
                        return
                            "member \(quoted(String(decoding: name, as: UTF8.self))) comes after \(quoted(String(decoding: last, as: UTF8.self)))"
                    }
                    top.lastName = name
                    top.expectingName = false
                    stack[stack.count - 1] = top
                }
            case UInt8(ascii: "{"), UInt8(ascii: "["):
                let checked = stack.last.map { $0.checked || ($0.isObject && $0.lastName == member) } ?? false
                stack.append(
                    Frame(
                        isObject: bytes[index] == UInt8(ascii: "{"),
                        checked: checked,
                        lastName: nil,
                        expectingName: bytes[index] == UInt8(ascii: "{")
                    )
                )
            case UInt8(ascii: "}"), UInt8(ascii: "]"): _ = stack.popLast()
            case UInt8(ascii: ","):
                if stack.last?.isObject == true { stack[stack.count - 1].expectingName = true }
            default: break
            }
            index += 1
        }
        return nil
    }
}
