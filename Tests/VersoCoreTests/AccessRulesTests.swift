import Testing
import VersoCore

@Suite("Access rules: nothing is allowed unless a rule allows it (Protocol.md 2.1)")
struct AccessRulesTests {
    let rules = AccessRules([
        AccessRule(prefix: "notes/ann/", rights: [.read, .write]),
        AccessRule(prefix: "notes/", rights: [.read]),
        AccessRule(prefix: "inbox/", rights: [.write]),
        AccessRule(prefix: "admin/", rights: [.read, .write, .force]),
    ])

    @Test(
        "a key has the rights of every rule whose prefix it starts with, and no others",
        arguments: [
            ("notes/ann/1", AccessRight.read, true), ("notes/ann/1", .write, true), ("notes/ann/1", .force, false),
            ("notes/bob/1", .read, true), ("notes/bob/1", .write, false),
            ("notes", .read, false), ("notesx", .read, false), ("other/1", .read, false),
            ("inbox/1", .write, true), ("inbox/1", .read, false),
            ("admin/x", .force, true), ("admin/x", .presence, false),
        ]
    )
    func rightsOnKeys(key: String, right: AccessRight, allowed: Bool) {
        #expect(rules.allows(right, on: key) == allowed)
    }

    @Test("no rules allow nothing; the open server's rules allow everything")
    func emptyAndEverything() {
        for right in AccessRight.allCases {
            #expect(!AccessRules([]).allows(right, on: "a"))
            #expect(AccessRules.everything.allows(right, on: "a"))
            #expect(AccessRules.everything.allows(right, onEveryKeyWithPrefix: ""))
        }
    }

    @Test("a whole prefix is allowed only when one rule covers all of it")
    func wholePrefix() {
        #expect(rules.allows(.read, onEveryKeyWithPrefix: "notes/"))
        #expect(rules.allows(.read, onEveryKeyWithPrefix: "notes/ann/"))
        #expect(rules.allows(.read, onEveryKeyWithPrefix: "notes/b"))
        // "note" also covers keys such as "notebook", which no rule allows.
        #expect(!rules.allows(.read, onEveryKeyWithPrefix: "note"))
        #expect(!rules.allows(.read, onEveryKeyWithPrefix: ""))
        #expect(!rules.allows(.write, onEveryKeyWithPrefix: "notes/"))
    }

    @Test("prefixes compare as UTF-8 bytes: the NFD form of a key is not under the NFC prefix")
    func bytewisePrefixes() {
        let nfc = AccessRules([AccessRule(prefix: "caf\u{E9}/", rights: [.read])])
        #expect(nfc.allows(.read, on: "caf\u{E9}/1"))
        #expect(!nfc.allows(.read, on: "cafe\u{301}/1"))
        #expect(!nfc.allows(.read, onEveryKeyWithPrefix: "cafe\u{301}/"))
    }

    @Test("each write operation needs its rights: write, read for a check, and force on top for a forced write")
    func operationRights() {
        func op(_ key: String, _ action: WriteAction, force: Bool = false) -> WriteOperation {
            WriteOperation(key: key, action: action, precondition: force ? .force : .base(1))
        }
        #expect(rules.missingRight(for: op("notes/ann/1", .put([:]))) == nil)
        #expect(rules.missingRight(for: op("notes/ann/1", .delete)) == nil)
        #expect(rules.missingRight(for: op("notes/bob/1", .patch([:]))) == .write)
        #expect(rules.missingRight(for: op("notes/bob/1", .check)) == nil)
        #expect(rules.missingRight(for: op("inbox/1", .check)) == .read)
        #expect(rules.missingRight(for: op("notes/ann/1", .put([:]), force: true)) == .force)
        #expect(rules.missingRight(for: op("admin/1", .put([:]), force: true)) == nil)
    }

    @Test("rules are read from JSON, and every mistake is named with where it is")
    func parsing() throws {
        let json = try JSONParser.parse(
            #"[{"prefix":"notes/","allow":["read","write"]},{"prefix":"","allow":["read"]}]"#
        )
        let parsed = try AccessRules(json: json, context: "ann")
        #expect(
            parsed
                == AccessRules([
                    AccessRule(prefix: "notes/", rights: [.read, .write]), AccessRule(prefix: "", rights: [.read]),
                ])
        )
        let mistakes = [
            (#"{"prefix":""}"#, "must be a JSON array"),
            (#"[{"allow":["read"]}]"#, "ann rule 1: \"prefix\" must be a string"),
            (#"[{"prefix":"a/","allow":[]}]"#, "\"allow\" must be a non-empty array"),
            (#"[{"prefix":"a/","allow":["reed"]}]"#, "\"reed\" is not a right"),
            (#"[{"prefix":"a/","allow":["read"],"deny":["write"]}]"#, "unknown member \"deny\""),
        ]
        for (text, expected) in mistakes {
            do {
                _ = try AccessRules(json: try JSONParser.parse(text), context: "ann")
                Issue.record("\(text) was accepted")
            } catch {
                #expect("\(error)".contains(expected), "\(text): \(error)")
            }
        }
    }
}
