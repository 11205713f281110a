import VersoCore

/// The live editor as a pure state machine: `handle` takes an event and returns the work to do;
/// `render` draws the current state. No I/O, no clock: time arrives as `tick` events.
///
/// Keys and field names are told apart by their UTF-8 bytes, as the server does: NFC "é" and
/// NFD "e\u{301}" are two rows (or two columns), never one.
public struct EditorState: Sendable {
    /// An edit the user is typing.
    public struct Edit: Sendable, Equatable {
        public var key: String
        public var field: String
        public var text: String
        /// The version the user was looking at when the edit began.
        public var base: Int64
        /// Someone else changed this field (or deleted the record) since `base`: the save will
        /// not merge.
        public var othersChangedField = false
    }

    /// A save sent and not yet answered.
    public struct PendingSave: Sendable, Equatable {
        public var field: String?
        public var value: JSONValue?
        public var base: Int64
    }

    /// A stale save, shown field by field beside the current record.
    public struct Conflict: Sendable, Equatable {
        public var key: String
        public var field: String
        public var mine: JSONValue
        public var base: Int64
        public var theirs: EditorRecord
        /// Why the server did not merge the save (nil for a save sent without merge).
        public var reason: MergeRefusal?
        /// The paths of the save that clash with someone else's change (with `.clash`).
        public var clashes: [FieldPath] = []

        /// The fields the conflict view shows: only those holding a clash when the server named
        /// them, otherwise every field of the current record and the one saved.
        public var shownFields: [String] {
            if reason == .clash, !clashes.isEmpty, clashes.allSatisfy({ !$0.names.isEmpty }) {
                return Set(clashes.compactMap(\.names.first)).sorted().map(\.string)
            }
            return Set(theirs.data?.keys ?? [:].keys).union([BytewiseString(field)]).sorted().map(\.string)
        }
    }

    /// A record's history, as the `h` view shows it: newest first, one page at a time.
    public struct HistoryView: Sendable, Equatable {
        public var key: String
        public var versions: [RecordVersion] = []
        /// The version under the cursor, by position in `versions`.
        public var selected = 0
        /// The `before` of the next page, while there is one.
        public var next: Int64?
        /// The server no longer keeps this version or any older one.
        public var gone: Int64?
        /// A page was asked for and has not come yet.
        public var loading = true
    }

    /// Where this editor tells the others it is: a record, the field under its cursor, and
    /// whether it is editing that field.
    struct Whereabouts: Equatable {
        var key: String
        var field: String?
        var editing: Bool

        /// The presence `state` the others see.
        var state: JSONObject {
            var state: JSONObject = ["editing": .bool(editing)]
            if let field { state["field"] = .string(field) }
            return state
        }
    }

    public enum Mode: Sendable, Equatable {
        case browse
        case editing(Edit)
        case addingKey(String)
        case addingData(key: String, text: String)
        case confirmDelete(key: String)
        case filtering(String)
        case conflict(Conflict)
        case history(HistoryView)
    }

    public let prefix: String
    public let server: String
    public private(set) var records: [BytewiseString: EditorRecord] = [:]
    public private(set) var mode: Mode = .browse
    public private(set) var filter = ""
    public private(set) var selectedKey: String?
    public private(set) var selectedField = 0
    public private(set) var pending: [BytewiseString: PendingSave] = [:]
    /// Records the server refused to let this user write (`forbidden`): shown dim, and not
    /// offered for editing or deleting again.
    public private(set) var readOnly: Set<BytewiseString> = []
    /// The others' presence on each record, by session (only those with a state).
    public private(set) var others: [BytewiseString: [String: Presence]] = [:]
    /// What this editor last told the others (nil: nothing).
    private var announced: Whereabouts?
    public private(set) var message: (text: String, style: Style)?
    public private(set) var connected = false
    public private(set) var connectionText = "connecting"
    public private(set) var allowsForce = false
    public private(set) var synced = false
    public private(set) var width = 80
    public private(set) var height = 24
    private var now: Double = 0
    private var messageExpiry: Double = .infinity
    /// Cells changed by others, with when the highlight ends.
    private(set) var changedCells: [BytewiseString: Double] = [:]
    /// Rows added or deleted recently, with when the mark ends.
    private(set) var markedRows: [BytewiseString: Double] = [:]
    /// (key, version) pairs this editor wrote, so their updates are not announced as others'.
    private var ownVersions: Set<BytewiseString> = []
    private var scrollRow = 0
    private var scrollField = 0

    /// How long a changed cell stays highlighted, in seconds.
    public static let highlightSeconds = 2.0

    public init(prefix: String, server: String) {
        self.prefix = prefix
        self.server = server
    }

    // MARK: Derived views

    /// Keys shown, in key order: live records plus recently deleted ones, narrowed by the filter.
    public var visibleKeys: [String] {
        records.values
            .filter { !$0.isDeleted || markedRows[$0.key] != nil || isInUse($0.key) }
            .filter { matchesFilter($0) }
            .map(\.key)
            .sorted { $0.utf8.lexicographicallyPrecedes($1.utf8) }
    }

    /// Field names shown as columns: every field of every shown record, sorted.
    public var columns: [String] {
        var names = Set<BytewiseString>()
        for key in visibleKeys { names.formUnion(records[key]?.data?.keys ?? [:].keys) }
        if case .editing(let edit) = mode { names.insert(BytewiseString(edit.field)) }
        return names.sorted().map(\.string)
    }

    /// The field under the cursor.
    public var selectedColumn: String? {
        let columns = columns
        return columns.isEmpty ? nil : columns[min(selectedField, columns.count - 1)]
    }

    private func isInUse(_ key: String) -> Bool {
        switch mode {
        case .editing(let edit): edit.key.hasSameBytes(as: key)
        case .confirmDelete(let target): target.hasSameBytes(as: key)
        case .conflict(let conflict): conflict.key.hasSameBytes(as: key)
        default: selectedKey?.hasSameBytes(as: key) == true
        }
    }

    private func matchesFilter(_ record: EditorRecord) -> Bool {
        let needle = (mode.filterText ?? filter).lowercased()
        guard !needle.isEmpty else { return true }
        if record.key.lowercased().contains(needle) { return true }
        return record.data?.values.contains { CellText.display($0).lowercased().contains(needle) } ?? false
    }

    /// Says so and returns true when the server refused this user a write to `key` before.
    private mutating func refuseReadOnly(_ key: String) -> Bool {
        guard readOnly.contains(BytewiseString(key)) else { return false }
        say("\(key) is read-only for you: your token may not write it", .error)
        return true
    }

    private mutating func say(_ text: String, _ style: Style = .message, seconds: Double = 6) {
        message = (text, style)
        messageExpiry = now + seconds
    }

    // MARK: Events

    /// Applies `event` and returns the effects the host must carry out, among them telling the
    /// others where this editor now is when that changed.
    public mutating func handle(_ event: EditorEvent) -> [EditorEffect] {
        let effects = apply(event)
        if effects.contains(.quit) { return effects }
        return effects + announce()
    }

    private mutating func apply(_ event: EditorEvent) -> [EditorEffect] {
        switch event {
        case .key(let key):
            return handleKey(key)
        case .resize(let width, let height):
            self.width = max(20, width)
            self.height = max(6, height)
        case .started(let reset):
            if reset {
                records = [:]
                say("resynchronised after reconnecting: showing the current records")
            }
            synced = false
        case .snapshot(let record):
            records[record.key] = record
            if selectedKey == nil { selectedKey = record.key }
        case .synced:
            synced = true
            if selectedKey == nil { selectedKey = visibleKeys.first }
        case .update(let record):
            applyUpdate(record)
        case .connection(let connected, let text):
            self.connected = connected
            connectionText = text
        case .serverInfo(let allowsForce):
            self.allowsForce = allowsForce
        case .saved(let key, let version, let merged):
            pending[key] = nil
            ownVersions.insert(BytewiseString("\(key)@\(version)"))
            say("saved \(key) (version \(version))\(merged ? ", merged with someone else's change" : "")")
        case .conflict(let current, let reason, let clashes):
            return handleConflict(current, reason: reason, clashes: clashes)
        case .refused(let key, let message):
            pending[key] = nil
            readOnly.insert(BytewiseString(key))
            if case .conflict(let conflict) = mode, conflict.key.hasSameBytes(as: key) { mode = .browse }
            say("\(key) is read-only for you: \(message)", .error)
        case .failed(let key, let message):
            pending[key] = nil
            if case .history(var view) = mode, view.key.hasSameBytes(as: key) {
                view.loading = false
                mode = .history(view)
            }
            say("\(key): \(message)", .error)
        case .tick(let now):
            self.now = now
            changedCells = changedCells.filter { $0.value > now }
            markedRows = markedRows.filter { $0.value > now }
            if now >= messageExpiry { message = nil; messageExpiry = .infinity }
        case .presence(let presence):
            let key = BytewiseString(presence.key)
            if presence.state == nil {
                others[key]?[presence.session] = nil
                if others[key]?.isEmpty == true { others[key] = nil }
            } else {
                others[key, default: [:]][presence.session] = presence
            }
        case .history(let page):
            guard case .history(var view) = mode, view.key.hasSameBytes(as: page.key) else { return [] }
            let known = view.versions.last?.version ?? .max
            view.versions += page.versions.filter { $0.version < known }
            view.next = page.next
            view.gone = page.gone
            view.loading = false
            view.selected = min(view.selected, max(0, view.versions.count - 1))
            mode = .history(view)
        }
        return []
    }

    /// Where the editor is now, as the others should see it: nothing until the records are
    /// loaded, or on a record that is not live.
    private var whereabouts: Whereabouts? {
        guard synced else { return nil }
        switch mode {
        case .editing(let edit): return Whereabouts(key: edit.key, field: edit.field, editing: true)
        case .conflict(let conflict): return Whereabouts(key: conflict.key, field: conflict.field, editing: true)
        case .history(let view): return Whereabouts(key: view.key, field: nil, editing: false)
        default:
            guard let key = selectedKey, records[key]?.isDeleted == false else { return nil }
            return Whereabouts(key: key, field: selectedColumn, editing: false)
        }
    }

    /// The presence effects that tell the others where the editor now is, when that changed:
    /// leaving the record it was on, then showing itself on the new one.
    private mutating func announce() -> [EditorEffect] {
        let now = whereabouts
        guard now != announced else { return [] }
        var effects: [EditorEffect] = []
        if let old = announced, old.key.hasSameBytes(as: now?.key ?? "") == false || now == nil {
            effects.append(.setPresence(key: old.key, state: nil))
        }
        if let now { effects.append(.setPresence(key: now.key, state: now.state)) }
        announced = now
        return effects
    }

    /// The others on `key`, as the editor names them: "ann (editing title)", "bob (body)".
    public func othersText(on key: String) -> String? {
        guard let present = others[BytewiseString(key)], !present.isEmpty else { return nil }
        let names = present.values.sorted { $0.session < $1.session }.map { presence -> String in
            let name = presence.user ?? presence.client ?? String(presence.session.prefix(8))
            let field = presence.state?["field"]?.stringValue
            let editing = presence.state?["editing"] == .bool(true)
            switch (field, editing) {
            case (let field?, true): return "\(name) (editing \(field))"
            case (let field?, false): return "\(name) (\(field))"
            case (nil, _): return name
            }
        }
        return names.joined(separator: ", ")
    }

    private mutating func applyUpdate(_ record: EditorRecord) {
        let previous = records[record.key]
        records[record.key] = record
        let own = ownVersions.remove(BytewiseString("\(record.key)@\(record.version)")) != nil
        var changedFields: [String] = []
        if let data = record.data {
            let old = previous?.data ?? [:]
            changedFields = Set(data.keys).union(old.keys).filter { data[$0] != old[$0] }.sorted().map(\.string)
            for field in changedFields { changedCells[Self.cell(record.key, field)] = now + Self.highlightSeconds }
            if previous?.data == nil { markedRows[record.key] = now + Self.highlightSeconds }
        } else {
            markedRows[record.key] = now + Self.highlightSeconds + 1
        }
        if selectedKey == nil { selectedKey = record.key }
        if !own {
            let what =
                record.isDeleted
                ? "deleted \(record.key)"
                : previous?.data == nil
                    ? "created \(record.key)"
                    : "changed \(record.key) (\(changedFields.joined(separator: ", ")))"
            say("someone else \(what): now version \(record.version)")
        }
        // An edit in progress keeps the version the user started from, and its save asks the
        // server to merge: a change to other fields is kept beside it, while a change to the same
        // field (or a delete) comes back as a conflict, shown beside the new state, rather than
        // being silently overwritten.
        if case .editing(var edit) = mode, edit.key.hasSameBytes(as: record.key), !own {
            if record.isDeleted || changedFields.contains(where: { $0.hasSameBytes(as: edit.field) }) {
                edit.othersChangedField = true
                mode = .editing(edit)
            }
            if record.isDeleted {
                say("someone else deleted \(record.key) while you edit it: saving will show the conflict", .error)
            } else if edit.othersChangedField {
                say("someone else changed \(edit.field) too: saving will show both values", .error)
            } else {
                say(
                    "someone else changed \(changedFields.joined(separator: ", ")): your save of \(edit.field) will be merged with it"
                )
            }
        }
    }

    private mutating func handleConflict(
        _ current: EditorRecord,
        reason: MergeRefusal?,
        clashes: [FieldPath]
    ) -> [EditorEffect] {
        let key = current.key
        records[key] = current
        guard let save = pending.removeValue(forKey: BytewiseString(key)) else { return [] }
        let why = reason.map { " (not merged: \(Self.explain($0)))" } ?? ""
        if let field = save.field, let value = save.value {
            mode = .conflict(
                Conflict(
                    key: key,
                    field: field,
                    mine: value,
                    base: save.base,
                    theirs: current,
                    reason: reason,
                    clashes: clashes
                )
            )
            say("\(key) changed since version \(save.base)\(why): choose how to resolve", .error, seconds: .infinity)
        } else {
            say(
                "\(key) changed since version \(save.base) (now \(current.isDeleted ? "deleted" : "version \(current.version)"))\(why): nothing was changed",
                .error
            )
        }
        return []
    }

    /// Why the server did not merge a save, in words.
    static func explain(_ reason: MergeRefusal) -> String {
        switch reason {
        case .clash: "someone else changed the same field"
        case .deleted: "the record was deleted"
        case .recreated: "the record was deleted and created again"
        case .historyGone: "the changes since your version are no longer kept"
        case .unknownBase: "your version is newer than the server's"
        }
    }

    /// A path as the editor names it: `title`, or `meta › x` inside an object field.
    static func name(_ path: FieldPath) -> String {
        path.names.isEmpty ? "(the whole record)" : path.names.map(\.string).joined(separator: " › ")
    }

    // MARK: Keys

    private mutating func handleKey(_ key: Key) -> [EditorEffect] {
        if key == .controlC { return [.quit] }
        switch mode {
        case .browse: return browseKey(key)
        case .editing(var edit):
            switch key {
            case .escape: mode = .browse
            case .enter:
                mode = .browse
                let value = CellText.parse(edit.text)
                guard records[edit.key]?.data?[edit.field] != value else { return [] }
                pending[edit.key] = PendingSave(field: edit.field, value: value, base: edit.base)
                say("saving \(edit.key).\(edit.field)…")
                return [.patch(key: edit.key, base: edit.base, patch: [BytewiseString(edit.field): value], merge: true)]
            default:
                edit.text = Self.edited(edit.text, key)
                mode = .editing(edit)
            }
        case .addingKey(let text):
            switch key {
            case .escape: mode = .browse
            case .enter:
                if let problem = RecordKey.problem(with: text) {
                    say(problem, .error)
                } else if let existing = records[text], !existing.isDeleted {
                    say("\(text) already exists", .error)
                } else {
                    mode = .addingData(key: text, text: "{}")
                }
            default: mode = .addingKey(Self.edited(text, key))
            }
        case .addingData(let newKey, let text):
            switch key {
            case .escape: mode = .browse
            case .enter:
                guard case .object(let data)? = try? JSONParser.parse(text) else {
                    say("the data must be a JSON object, like {\"title\":\"…\"}", .error)
                    return []
                }
                mode = .browse
                selectedKey = newKey
                if let tombstone = records[newKey], tombstone.isDeleted {
                    pending[newKey] = PendingSave(field: nil, value: nil, base: tombstone.version)
                    say("creating \(newKey)…")
                    return [.patch(key: newKey, base: tombstone.version, patch: data)]
                }
                pending[newKey] = PendingSave(field: nil, value: nil, base: 0)
                say("creating \(newKey)…")
                return [.create(key: newKey, data: data)]
            default: mode = .addingData(key: newKey, text: Self.edited(text, key))
            }
        case .confirmDelete(let target):
            mode = .browse
            if key == .character("y"), let record = records[target], !record.isDeleted {
                pending[target] = PendingSave(field: nil, value: nil, base: record.version)
                say("deleting \(target)…")
                return [.delete(key: target, base: record.version)]
            }
            say("not deleted")
        case .filtering(let text):
            switch key {
            case .escape:
                filter = ""
                mode = .browse
            case .enter:
                filter = text
                mode = .browse
            default: mode = .filtering(Self.edited(text, key))
            }
            keepSelectionVisible()
        case .conflict(let conflict):
            return conflictKey(key, conflict)
        case .history(let view):
            return historyKey(key, view)
        }
        return []
    }

    private mutating func historyKey(_ key: Key, _ view: HistoryView) -> [EditorEffect] {
        var view = view
        switch key {
        case .escape, .character("h"), .character("q"):
            mode = .browse
            return []
        case .up:
            view.selected = max(0, view.selected - 1)
        case .down, .pageDown:
            let step = key == .down ? 1 : max(1, tableRows - 2)
            view.selected = min(max(0, view.versions.count - 1), view.selected + step)
            // At the end of what came: ask for the next page.
            if view.selected >= view.versions.count - 1, let next = view.next, !view.loading {
                view.loading = true
                mode = .history(view)
                return [.loadHistory(key: view.key, before: next)]
            }
        case .pageUp:
            view.selected = max(0, view.selected - max(1, tableRows - 2))
        case .enter, .character("r"):
            guard view.versions.indices.contains(view.selected) else { return [] }
            let chosen = view.versions[view.selected]
            guard let current = records[view.key] else { return [] }
            guard let data = chosen.data else {
                say("version \(chosen.version) is a deletion: to delete the record, press d in the table", .error)
                return []
            }
            if chosen.version == current.version {
                say("version \(chosen.version) is the current version", .error)
                return []
            }
            if refuseReadOnly(view.key) { return [] }
            if pending[view.key] != nil {
                say("\(view.key) is still being saved", .error)
                return []
            }
            mode = .browse
            pending[view.key] = PendingSave(field: nil, value: nil, base: current.version)
            say("restoring \(view.key) to version \(chosen.version)…")
            return [.restore(key: view.key, base: current.version, data: data)]
        default:
            break
        }
        mode = .history(view)
        return []
    }

    private mutating func conflictKey(_ key: Key, _ conflict: Conflict) -> [EditorEffect] {
        let patch: JSONObject = [BytewiseString(conflict.field): conflict.mine]
        switch key {
        case .character("t"), .escape:
            mode = .browse
            say("kept their version of \(conflict.key)")
        case .character("r"):
            mode = .browse
            let base = records[conflict.key]?.version ?? conflict.theirs.version
            pending[conflict.key] = PendingSave(field: conflict.field, value: conflict.mine, base: base)
            say("reapplying your \(conflict.field) on version \(base)…")
            return [.patch(key: conflict.key, base: base, patch: patch, merge: true)]
        case .character("f") where allowsForce:
            mode = .browse
            pending[conflict.key] = PendingSave(
                field: conflict.field,
                value: conflict.mine,
                base: conflict.theirs.version
            )
            say("forcing your \(conflict.field)…")
            return [.patch(key: conflict.key, base: nil, patch: patch)]
        default:
            break
        }
        return []
    }

    private mutating func browseKey(_ key: Key) -> [EditorEffect] {
        let keys = visibleKeys
        let index = selectedKey.flatMap(Self.position(in: keys))
        let pageRows = max(1, tableRows - 1)
        func select(_ position: Int) {
            guard !keys.isEmpty else { return }
            selectedKey = keys[min(max(position, 0), keys.count - 1)]
        }
        switch key {
        case .up: select((index ?? 0) - 1)
        case .down: select((index ?? -1) + 1)
        case .pageUp: select((index ?? 0) - pageRows)
        case .pageDown: select((index ?? 0) + pageRows)
        case .home: select(0)
        case .end: select(keys.count - 1)
        case .left: selectedField = max(0, selectedField - 1)
        case .right, .tab: selectedField = min(max(0, columns.count - 1), selectedField + 1)
        case .character("q"): return [.quit]
        case .character("/"): mode = .filtering(filter)
        case .character("a"): mode = .addingKey(prefix)
        case .character("h"):
            guard let selectedKey, records[selectedKey] != nil else {
                say("select a record to see its history", .error)
                return []
            }
            mode = .history(HistoryView(key: selectedKey))
            return [.loadHistory(key: selectedKey, before: nil)]
        case .character("d"):
            if let selectedKey, let record = records[selectedKey], !record.isDeleted {
                if refuseReadOnly(selectedKey) { return [] }
                mode = .confirmDelete(key: selectedKey)
            }
        case .enter, .character("e"):
            guard let selectedKey, let record = records[selectedKey], let data = record.data, let field = selectedColumn
            else {
                say("select a record and a field to edit", .error)
                return []
            }
            if refuseReadOnly(selectedKey) { return [] }
            if pending[selectedKey] != nil {
                say("\(selectedKey) is still being saved", .error)
                return []
            }
            message = nil
            mode = .editing(
                Edit(key: selectedKey, field: field, text: CellText.display(data[field]), base: record.version)
            )
        default:
            break
        }
        keepSelectionVisible()
        return []
    }

    /// Finds a key in `keys` by its bytes.
    static func position(in keys: [String]) -> (String) -> Int? {
        { key in keys.firstIndex { $0.hasSameBytes(as: key) } }
    }

    /// The `changedCells` entry of one field of one record (a key holds no U+0000).
    static func cell(_ key: String, _ field: String) -> BytewiseString {
        BytewiseString("\(key)\u{0}\(field)")
    }

    private static func edited(_ text: String, _ key: Key) -> String {
        switch key {
        case .backspace: String(text.dropLast())
        case .character(let character): text + String(character)
        default: text
        }
    }

    // MARK: Layout

    /// Rows available for records (the screen less title, header, message and help lines).
    private var tableRows: Int { max(1, height - 4) }

    private mutating func keepSelectionVisible() {
        let keys = visibleKeys
        if let selectedKey, let index = Self.position(in: keys)(selectedKey) {
            if index < scrollRow { scrollRow = index }
            if index >= scrollRow + tableRows { scrollRow = index - tableRows + 1 }
        } else {
            selectedKey = keys.first
            scrollRow = 0
        }
        scrollRow = max(0, min(scrollRow, max(0, keys.count - tableRows)))
        selectedField = min(selectedField, max(0, columns.count - 1))
        if selectedField < scrollField { scrollField = selectedField }
    }
}

extension EditorState.Mode {
    /// The filter being typed, while filtering.
    var filterText: String? {
        if case .filtering(let text) = self { return text }
        return nil
    }
}
