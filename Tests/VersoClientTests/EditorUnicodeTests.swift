import Testing
import VersoCore
import VersoEditor

/// NFC "é" and NFD "e" + U+0301: equal as Swift Strings, different bytes, so different keys.
private let nfc = "\u{E9}"
private let nfd = "e\u{301}"

private func bytes(_ text: String?) -> [UInt8]? { text.map { Array($0.utf8) } }

@Suite("Live editor: keys and field names that differ only by Unicode normalization are distinct")
struct EditorUnicodeTests {
    private func editor(_ records: [EditorRecord]) -> EditorState {
        var state = EditorState(prefix: "notes/", server: "ws://test")
        _ = state.handle(.resize(width: 80, height: 24))
        _ = state.handle(.started(reset: false))
        for record in records { _ = state.handle(.snapshot(record)) }
        _ = state.handle(.synced)
        return state
    }

    @Test("both spellings of a key are two rows, and the cursor moves through both")
    func twoRows() {
        var state = editor([
            EditorRecord(key: "notes/\(nfc)", version: 1, data: ["form": .string("nfc")]),
            EditorRecord(key: "notes/\(nfd)", version: 2, data: ["form": .string("nfd")]),
            EditorRecord(key: "notes/z", version: 3, data: ["form": .string("z")]),
        ])
        #expect(state.records.count == 3)
        // In byte order: "e" (65) < "z" (7A) < "é" (C3 A9).
        #expect(
            state.visibleKeys.map { bytes($0) } == [bytes("notes/\(nfd)"), bytes("notes/z"), bytes("notes/\(nfc)")]
        )
        _ = state.handle(.key(.end))
        #expect(bytes(state.selectedKey) == bytes("notes/\(nfc)"))
        _ = state.handle(.key(.up))
        #expect(bytes(state.selectedKey) == bytes("notes/z"))
        _ = state.handle(.key(.up))
        #expect(bytes(state.selectedKey) == bytes("notes/\(nfd)"))
    }

    @Test("an update to one spelling changes that record only")
    func updateOne() {
        var state = editor([
            EditorRecord(key: "notes/\(nfc)", version: 1, data: ["form": .string("nfc")]),
            EditorRecord(key: "notes/\(nfd)", version: 2, data: ["form": .string("nfd")]),
        ])
        _ = state.handle(.update(EditorRecord(key: "notes/\(nfd)", version: 3, data: ["form": .string("nfd again")])))
        #expect(state.records["notes/\(nfc)"]?.version == 1)
        #expect(state.records["notes/\(nfd)"]?.version == 3)
        #expect(state.records.count == 2)
    }

    @Test("both spellings of a field name are two columns, and an edit saves the one selected")
    func twoColumns() {
        var state = editor([
            EditorRecord(
                key: "notes/1",
                version: 4,
                data: [BytewiseString(nfc): .string("composed"), BytewiseString(nfd): .string("decomposed")]
            )
        ])
        #expect(state.columns.map { bytes($0) } == [bytes(nfd), bytes(nfc)])
        _ = state.handle(.key(.right))
        _ = state.handle(.key(.enter))
        for character in "!" { _ = state.handle(.key(.character(character))) }
        let effects = state.handle(.key(.enter)).filter {
            if case .setPresence = $0 { false } else { true }
        }
        #expect(
            effects == [
                .patch(key: "notes/1", base: 4, patch: [BytewiseString(nfc): .string("composed!")], merge: true)
            ]
        )
        #expect(state.render().text.contains { $0.contains("composed") && $0.contains("decomposed") })
    }
}
