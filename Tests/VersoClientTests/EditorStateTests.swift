import Testing
import VersoCore
import VersoEditor

/// Drives an editor with events, collecting its effects.
private struct Driver {
    var state = EditorState(prefix: "notes/", server: "ws://test")
    var effects: [EditorEffect] = []
    /// The presence effects, kept apart: most tests are about saves.
    var presence: [EditorEffect] = []

    init(_ records: [EditorRecord]) {
        send(.resize(width: 80, height: 24))
        send(.connection(connected: true, text: "connected"))
        send(.started(reset: false))
        for record in records { send(.snapshot(record)) }
        send(.synced)
    }

    mutating func send(_ events: EditorEvent...) {
        for event in events {
            for effect in state.handle(event) {
                if case .setPresence = effect { presence.append(effect) } else { effects.append(effect) }
            }
        }
    }

    mutating func takePresence() -> [EditorEffect] {
        defer { presence = [] }
        return presence
    }

    mutating func keys(_ keys: Key...) {
        for key in keys { send(.key(key)) }
    }

    mutating func type(_ text: String) {
        for character in text { send(.key(.character(character))) }
    }

    mutating func takeEffects() -> [EditorEffect] {
        defer { effects = [] }
        return effects
    }

    var screen: String { state.render().text.joined(separator: "\n") }

    /// The message line's whole text (the screen clips it to its width).
    var message: String { state.message?.text ?? "" }
}

private let note = EditorRecord(
    key: "notes/1",
    version: 3,
    data: ["body": .string("hello"), "title": .string("Groceries")]
)

@Suite("Live editor state machine")
struct EditorStateTests {
    @Test("shows the records as a table at 80×24, with key, version and fields as columns")
    func table() {
        let driver = Driver([note, EditorRecord(key: "notes/2", version: 1, data: ["title": .string("Other")])])
        let lines = driver.state.render().text
        #expect(lines.count == 24)
        #expect(lines.allSatisfy { $0.count <= 80 })
        #expect(lines[1].contains("key") && lines[1].contains("body") && lines[1].contains("title"))
        #expect(lines[2].contains("notes/1") && lines[2].contains("Groceries") && lines[2].contains("3"))
        #expect(lines[3].contains("notes/2") && lines[3].contains("Other"))
    }

    @Test(
        "a save carries the version the user was looking at and asks to merge; a clash shows only the clashing field, and rebase reapplies the edit on the new version and is acknowledged"
    )
    func conflictRebaseAck() {
        var driver = Driver([note])
        driver.keys(.right, .enter)  // edit title
        for _ in 0..<"Groceries".count { driver.keys(.backspace) }
        driver.type("Shopping")
        driver.keys(.enter)
        #expect(
            driver.takeEffects() == [
                .patch(key: "notes/1", base: 3, patch: ["title": .string("Shopping")], merge: true)
            ]
        )
        let theirs = EditorRecord(
            key: "notes/1",
            version: 4,
            data: ["body": .string("changed by them"), "title": .string("Groceries!")]
        )
        driver.send(.conflict(current: theirs, reason: .clash, clashes: [FieldPath(["title"])]))
        guard case .conflict(let conflict) = driver.state.mode else {
            Issue.record("expected the conflict view"); return
        }
        #expect(conflict.mine == .string("Shopping"))
        #expect(conflict.theirs == theirs)
        #expect(conflict.shownFields == ["title"])
        #expect(driver.screen.contains("Shopping") && driver.screen.contains("Groceries!"))
        #expect(driver.screen.contains("someone else changed title too"))
        #expect(!driver.screen.contains("changed by them"), "a field that does not clash is not shown")
        #expect(!driver.screen.contains("[f]"), "force is offered only when the server allows it")
        driver.keys(.character("r"))
        #expect(
            driver.takeEffects() == [
                .patch(key: "notes/1", base: 4, patch: ["title": .string("Shopping")], merge: true)
            ]
        )
        driver.send(.saved(key: "notes/1", version: 5))
        driver.send(
            .update(
                EditorRecord(
                    key: "notes/1",
                    version: 5,
                    data: ["body": .string("changed by them"), "title": .string("Shopping")]
                )
            )
        )
        #expect(driver.state.mode == .browse)
        #expect(driver.state.records["notes/1"]?.version == 5)
        #expect(driver.state.pending.isEmpty)
        #expect(driver.screen.contains("saved notes/1"), "the user's own change is not announced as someone else's")
    }

    @Test(
        "a save the server refuses as forbidden makes the record read-only: it is not offered for editing or deleting again, and others stay editable"
    )
    func forbiddenMakesReadOnly() {
        let other = EditorRecord(key: "notes/2", version: 1, data: ["title": .string("Other")])
        var driver = Driver([note, other])
        driver.keys(.right, .enter)
        driver.type("!")
        driver.keys(.enter)
        #expect(
            driver.takeEffects() == [
                .patch(key: "notes/1", base: 3, patch: ["title": .string("Groceries!")], merge: true)
            ]
        )
        driver.send(.refused(key: "notes/1", message: "this token may not write notes/1"))
        #expect(driver.state.mode == .browse)
        #expect(driver.state.pending.isEmpty)
        #expect(driver.state.readOnly.contains("notes/1"))
        #expect(driver.screen.contains("notes/1 is read-only for you"))
        driver.keys(.enter)
        #expect(driver.state.mode == .browse, "no editor opens on a read-only record")
        driver.keys(.character("d"))
        #expect(driver.state.mode == .browse, "no delete is offered for a read-only record")
        #expect(driver.takeEffects().isEmpty)
        // Live updates still show, and another record can still be edited.
        driver.send(
            .update(
                EditorRecord(
                    key: "notes/1",
                    version: 4,
                    data: ["body": .string("hello"), "title": .string("By someone else")]
                )
            )
        )
        #expect(driver.screen.contains("By someone else"))
        driver.keys(.down, .enter)
        #expect(driver.state.mode != .browse, "another record opens for editing")
    }

    @Test("keep theirs drops the edit; force is offered and sent without a base when the server allows it")
    func keepTheirsAndForce() {
        var driver = Driver([note])
        driver.send(.serverInfo(allowsForce: true))
        driver.keys(.enter)
        driver.type("!")
        driver.keys(.enter)
        _ = driver.takeEffects()
        let theirs = EditorRecord(key: "notes/1", version: 4, data: ["body": .string("theirs")])
        driver.send(.conflict(current: theirs))
        driver.keys(.character("t"))
        #expect(driver.state.mode == .browse)
        #expect(driver.takeEffects().isEmpty)
        driver.keys(.enter)
        driver.type("?")
        driver.keys(.enter)
        #expect(
            driver.takeEffects() == [.patch(key: "notes/1", base: 4, patch: ["body": .string("theirs?")], merge: true)]
        )
        driver.send(.conflict(current: EditorRecord(key: "notes/1", version: 5, data: ["body": .string("again")])))
        #expect(driver.screen.contains("[f] force"))
        driver.keys(.character("f"))
        #expect(
            driver.takeEffects() == [.patch(key: "notes/1", base: nil, patch: ["body": .string("theirs?")])],
            "a forced write is never sent with merge"
        )
    }

    @Test(
        "a live update while editing a different field shows at once and leaves the edit in progress; its save is merged with it, without a conflict"
    )
    func liveUpdateWhileEditing() {
        var driver = Driver([note])
        driver.keys(.enter)  // edit body
        driver.type(" world")
        driver.send(.tick(now: 10))
        driver.send(
            .update(
                EditorRecord(key: "notes/1", version: 4, data: ["body": .string("hello"), "title": .string("Errands")])
            )
        )
        guard case .editing(let edit) = driver.state.mode else { Issue.record("the edit must go on"); return }
        #expect(edit.text == "hello world")
        #expect(edit.base == 3)
        #expect(driver.screen.contains("Errands"), "the other field updates live")
        #expect(driver.state.isChanged("notes/1", "title"), "the changed cell is highlighted")
        #expect(
            driver.message == "someone else changed title: your save of body will be merged with it",
            "the editor says the save will not conflict"
        )
        driver.send(.tick(now: 10 + EditorState.highlightSeconds + 0.1))
        #expect(!driver.state.isChanged("notes/1", "title"), "briefly")
        driver.keys(.enter)
        #expect(
            driver.takeEffects() == [
                .patch(key: "notes/1", base: 3, patch: ["body": .string("hello world")], merge: true)
            ]
        )
        driver.send(.saved(key: "notes/1", version: 5, merged: true))
        driver.send(
            .update(
                EditorRecord(
                    key: "notes/1",
                    version: 5,
                    data: ["body": .string("hello world"), "title": .string("Errands")]
                )
            )
        )
        #expect(driver.state.mode == .browse, "no conflict view")
        #expect(driver.state.pending.isEmpty)
        #expect(driver.message == "saved notes/1 (version 5), merged with someone else's change")
        #expect(driver.screen.contains("saved notes/1 (version 5), merged with someone else's change"))
        #expect(driver.screen.contains("hello world") && driver.screen.contains("Errands"))
    }

    @Test(
        "an update to the field being edited warns that saving will show both values; the clash names the field and shows only it"
    )
    func sameFieldWhileEditing() {
        let wide = EditorRecord(
            key: "notes/1",
            version: 3,
            data: ["body": .string("hello"), "tags": .string("home"), "title": .string("Groceries")]
        )
        var driver = Driver([wide])
        driver.keys(.right, .right, .enter)  // edit title
        driver.type("!")
        var theirs = wide
        theirs.version = 4
        theirs.data?["title"] = .string("Errands")
        driver.send(.update(theirs))
        #expect(driver.message == "someone else changed title too: saving will show both values")
        // A later change to another field does not take the warning back.
        theirs.version = 5
        theirs.data?["body"] = .string("bye")
        driver.send(.update(theirs))
        #expect(driver.message == "someone else changed title too: saving will show both values")
        driver.keys(.enter)
        #expect(
            driver.takeEffects() == [
                .patch(key: "notes/1", base: 3, patch: ["title": .string("Groceries!")], merge: true)
            ]
        )
        driver.send(.conflict(current: theirs, reason: .clash, clashes: [FieldPath(["title"])]))
        let screen = driver.screen
        #expect(screen.contains("Not merged: someone else changed title too"))
        #expect(screen.contains("Groceries!") && screen.contains("Errands"))
        #expect(!screen.contains("bye") && !screen.contains("home"), "only the clashing field is shown: \(screen)")
        driver.keys(.character("t"))
        #expect(driver.state.mode == .browse)
    }

    @Test("a clash inside an object field shows that field and names the path inside it")
    func nestedClash() {
        let record = EditorRecord(
            key: "notes/1",
            version: 3,
            data: ["meta": .object(["x": .integer(1), "y": .integer(1)]), "title": .string("Plan")]
        )
        var driver = Driver([record])
        driver.keys(.enter)  // edit meta
        for _ in 0..<CellText.display(record.data?["meta"]).count { driver.keys(.backspace) }
        driver.type(#"{"x":2}"#)
        driver.keys(.enter)
        #expect(
            driver.takeEffects() == [
                .patch(key: "notes/1", base: 3, patch: ["meta": .object(["x": .integer(2)])], merge: true)
            ]
        )
        var theirs = record
        theirs.version = 4
        theirs.data?["meta"] = .object(["x": .integer(5), "y": .integer(1)])
        theirs.data?["title"] = .string("Plan B")
        driver.send(.conflict(current: theirs, reason: .clash, clashes: [FieldPath(["meta", "x"])]))
        let screen = driver.screen
        #expect(screen.contains("someone else changed meta › x too"))
        #expect(!screen.contains("Plan B"), "title does not clash: \(screen)")
    }

    @Test(
        "a save not merged for another reason (deleted, recreated, history gone, unknown base) keeps the whole record in the conflict view and says why",
        arguments: [
            (MergeRefusal.recreated, "the record was deleted and created again"),
            (.historyGone, "the changes since your version are no longer kept"),
            (.unknownBase, "your version is newer than the server's"),
        ]
    )
    func otherReasons(reason: MergeRefusal, explanation: String) {
        var driver = Driver([note])
        driver.keys(.right, .enter)
        driver.type("!")
        driver.keys(.enter)
        _ = driver.takeEffects()
        let theirs = EditorRecord(
            key: "notes/1",
            version: 9,
            data: ["body": .string("other body"), "title": .string("Groceries")]
        )
        driver.send(.conflict(current: theirs, reason: reason))
        guard case .conflict(let conflict) = driver.state.mode else {
            Issue.record("expected the conflict view"); return
        }
        #expect(conflict.reason == reason)
        #expect(conflict.shownFields == ["body", "title"])
        let screen = driver.screen
        #expect(screen.contains("Not merged (\(reason.rawValue)): \(explanation)"), "\(screen)")
        #expect(screen.contains("other body") && screen.contains("Groceries!"))
        #expect(driver.message.contains("(not merged: \(explanation))"), "the message line says why too")
        driver.keys(.character("r"))
        #expect(
            driver.takeEffects() == [
                .patch(key: "notes/1", base: 9, patch: ["title": .string("Groceries!")], merge: true)
            ]
        )
    }

    @Test(
        "a delete by someone else while editing keeps the edit; saving shows the conflict with the record deleted, and rebase recreates it"
    )
    func deletedWhileEditing() {
        var driver = Driver([note])
        driver.keys(.enter)
        driver.type("!")
        driver.send(.update(EditorRecord(key: "notes/1", version: 4, data: nil)))
        #expect(driver.screen.contains("notes/1"), "the deleted row stays visible while it is being edited")
        #expect(driver.screen.contains("deleted notes/1"))
        #expect(driver.message == "someone else deleted notes/1 while you edit it: saving will show the conflict")
        driver.keys(.enter)
        #expect(
            driver.takeEffects() == [.patch(key: "notes/1", base: 3, patch: ["body": .string("hello!")], merge: true)]
        )
        driver.send(.conflict(current: EditorRecord(key: "notes/1", version: 4, data: nil), reason: .deleted))
        #expect(driver.screen.contains("it was deleted (version 4)"))
        #expect(driver.screen.contains("Not merged (deleted): the record was deleted"))
        driver.keys(.character("r"))
        #expect(
            driver.takeEffects() == [.patch(key: "notes/1", base: 4, patch: ["body": .string("hello!")], merge: true)]
        )
    }

    @Test("add, delete with confirmation, filter and quit")
    func otherKeys() {
        var driver = Driver([note, EditorRecord(key: "notes/2", version: 1, data: ["title": .string("Other")])])
        driver.keys(.character("a"))
        driver.type("3")
        driver.keys(.enter)
        driver.keys(.backspace, .backspace)
        driver.type("{\"title\":\"New\"}")
        driver.keys(.enter)
        #expect(driver.takeEffects() == [.create(key: "notes/3", data: ["title": .string("New")])])
        driver.send(
            .saved(key: "notes/3", version: 1),
            .update(EditorRecord(key: "notes/3", version: 1, data: ["title": .string("New")]))
        )
        #expect(driver.state.selectedKey == "notes/3")
        driver.keys(.up, .character("d"))
        #expect(driver.screen.contains("delete notes/2"))
        driver.keys(.character("n"))
        #expect(driver.takeEffects().isEmpty)
        driver.keys(.character("d"), .character("y"))
        #expect(driver.takeEffects() == [.delete(key: "notes/2", base: 1)])
        driver.keys(.character("/"))
        driver.type("groc")
        driver.keys(.enter)
        #expect(driver.state.visibleKeys == ["notes/1"])
        driver.keys(.character("q"))
        #expect(driver.takeEffects() == [.quit])
        driver.keys(.controlC)
        #expect(driver.takeEffects() == [.quit])
    }

    @Test("a reset after reconnecting replaces the records; resizing keeps every line within the screen")
    func resetAndResize() {
        var driver = Driver([note])
        driver.send(.started(reset: true), .snapshot(EditorRecord(key: "notes/9", version: 1, data: [:])), .synced)
        #expect(driver.state.visibleKeys == ["notes/9"])
        driver.send(.resize(width: 40, height: 10))
        let lines = driver.state.render().text
        #expect(lines.count == 10)
        #expect(lines.allSatisfy { $0.count <= 40 })
    }

    @Test("typed values are JSON when they parse, text otherwise")
    func values() {
        #expect(CellText.parse("42") == .number("42"))
        #expect(CellText.parse("true") == .bool(true))
        #expect(CellText.parse("hello") == .string("hello"))
        #expect(CellText.parse("\"42\"") == .string("42"))
        #expect(CellText.display(.string("x")) == "x")
        #expect(CellText.display(.array([.number("1")])) == "[1]")
    }

    @Test(
        "tells the others where it is: the record and field under the cursor, and whether it edits it; leaves a record it moves off; nothing before the records are loaded"
    )
    func announcesPresence() {
        var driver = Driver([])
        #expect(driver.takePresence().isEmpty, "no records, nowhere to be")
        driver = Driver([note, EditorRecord(key: "notes/2", version: 1, data: ["title": .string("Other")])])
        #expect(
            driver.takePresence() == [
                .setPresence(key: "notes/1", state: ["field": .string("body"), "editing": .bool(false)])
            ]
        )
        driver.keys(.right)
        #expect(
            driver.takePresence() == [
                .setPresence(key: "notes/1", state: ["field": .string("title"), "editing": .bool(false)])
            ]
        )
        driver.keys(.enter)
        #expect(
            driver.takePresence() == [
                .setPresence(key: "notes/1", state: ["field": .string("title"), "editing": .bool(true)])
            ]
        )
        driver.keys(.escape, .down)
        #expect(
            driver.takePresence() == [
                .setPresence(key: "notes/1", state: ["field": .string("title"), "editing": .bool(false)]),
                .setPresence(key: "notes/1", state: nil),
                .setPresence(key: "notes/2", state: ["field": .string("title"), "editing": .bool(false)]),
            ]
        )
        driver.send(.tick(now: 1))
        #expect(driver.takePresence().isEmpty, "said once, not at every event")
    }

    @Test(
        "shows the others beside the record they have open, with the field they are on or editing; forgets one that leaves"
    )
    func showsOthers() {
        var driver = Driver([note, EditorRecord(key: "notes/2", version: 1, data: ["title": .string("Other")])])
        driver.send(
            .presence(
                Presence(
                    sub: 1,
                    key: "notes/2",
                    session: "s-bob",
                    client: "bob",
                    state: ["field": .string("title"), "editing": .bool(true)]
                )
            ),
            .presence(Presence(sub: 1, key: "notes/1", session: "s-cy", user: "cy", state: ["field": .string("body")]))
        )
        let lines = driver.state.render().text
        #expect(lines[2].contains("cy (body)") && lines[3].contains("bob (editing title)"), "\(driver.screen)")
        #expect(lines.allSatisfy { $0.count <= 80 })
        #expect(driver.screen.contains("also on notes/1: cy (body)"))
        driver.send(.presence(Presence(sub: 1, key: "notes/2", session: "s-bob", client: "bob", state: nil)))
        #expect(!driver.screen.contains("bob"))
        #expect(driver.state.othersText(on: "notes/2") == nil)
    }

    @Test(
        "h shows a record's history newest first with when and who; Enter restores the chosen version on the version shown, and its ack or conflict is reported"
    )
    func historyAndRestore() {
        var driver = Driver([note])
        driver.keys(.character("h"))
        #expect(driver.takeEffects() == [.loadHistory(key: "notes/1", before: nil)])
        #expect(driver.screen.contains("History of notes/1") && driver.screen.contains("loading"))
        let older: JSONObject = ["title": .string("Shopping")]
        driver.send(
            .history(
                RecordHistory(
                    key: "notes/1",
                    versions: [
                        RecordVersion(version: 3, seq: 9, at: 1_796_339_004_230, by: "ann", data: note.data),
                        RecordVersion(version: 2, seq: 5, at: 951_782_400_000, data: nil),
                    ],
                    next: 2,
                    gone: nil
                )
            )
        )
        #expect(driver.screen.contains("2026-12-03 23:03:24") && driver.screen.contains("ann"))
        #expect(driver.screen.contains("2000-02-29 00:00:00") && driver.screen.contains("(deleted)"))
        #expect(driver.screen.contains("(current)"))
        driver.keys(.enter)
        #expect(driver.takeEffects().isEmpty && driver.message.contains("current version"))
        // Moving to the last version shown asks for the next page.
        driver.keys(.down)
        #expect(driver.takeEffects() == [.loadHistory(key: "notes/1", before: 2)])
        driver.keys(.enter)
        #expect(driver.takeEffects().isEmpty && driver.message.contains("deletion"))
        driver.send(
            .history(
                RecordHistory(
                    key: "notes/1",
                    versions: [RecordVersion(version: 1, seq: 2, at: 0, data: older)],
                    next: nil,
                    gone: nil
                )
            )
        )
        driver.keys(.down)
        #expect(driver.takeEffects().isEmpty, "no page after the last")
        #expect(driver.screen.contains("the first version"))
        driver.keys(.enter)
        #expect(driver.takeEffects() == [.restore(key: "notes/1", base: 3, data: older)])
        #expect(driver.screen.contains("restoring notes/1 to version 1"))
        driver.send(.saved(key: "notes/1", version: 4))
        #expect(driver.message.contains("saved notes/1 (version 4)"))

        // A restore someone else beats is reported, and changes nothing.
        driver.keys(.character("h"))
        _ = driver.takeEffects()
        driver.send(
            .history(
                RecordHistory(
                    key: "notes/1",
                    versions: [RecordVersion(version: 2, seq: 5, data: older)],
                    next: nil,
                    gone: 1
                )
            )
        )
        #expect(driver.screen.contains("version 1 is no longer kept"))
        driver.keys(.enter)
        #expect(driver.takeEffects() == [.restore(key: "notes/1", base: 3, data: older)])
        driver.send(.conflict(current: EditorRecord(key: "notes/1", version: 5, data: ["title": .string("Theirs")])))
        #expect(driver.message.contains("changed since version 3"))
    }
}
