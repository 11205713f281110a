import VersoCore

/// A key press, decoded from the terminal.
public enum Key: Sendable, Equatable {
    case up, down, left, right
    case enter, escape, backspace, tab
    case pageUp, pageDown, home, end
    case controlC
    case character(Character)
}

/// What the editor knows about one record.
public struct EditorRecord: Sendable, Equatable {
    public var key: String
    public var version: Int64
    /// The fields; nil once the record is deleted.
    public var data: JSONObject?

    public init(key: String, version: Int64, data: JSONObject?) {
        self.key = key
        self.version = version
        self.data = data
    }

    public var isDeleted: Bool { data == nil }
}

/// Everything that can happen to the editor.
public enum EditorEvent: Sendable, Equatable {
    case key(Key)
    case resize(width: Int, height: Int)
    /// The subscription (re)started; on `reset` the records held so far are stale.
    case started(reset: Bool)
    case snapshot(EditorRecord)
    case synced
    /// A change to a record (data nil: deleted).
    case update(EditorRecord)
    /// Connection status for the status line.
    case connection(connected: Bool, text: String)
    /// What the server allows, from its `welcome`.
    case serverInfo(allowsForce: Bool)
    /// A save this editor sent was accepted; `merged`: into a newer version than its base, beside
    /// someone else's change (Protocol.md 3.3).
    case saved(key: String, version: Int64, merged: Bool = false)
    /// A save this editor sent was stale and not merged: the record's current state, and why the
    /// server did not merge it (nil for a save sent without merge), with the paths that clash.
    case conflict(current: EditorRecord, reason: MergeRefusal? = nil, clashes: [FieldPath] = [])
    /// A save was refused because the user's token may not write the key (`forbidden`,
    /// Protocol.md 2.1): the record is read-only from then on.
    case refused(key: String, message: String)
    /// A save failed for another reason.
    case failed(key: String, message: String)
    /// The clock, in seconds; expires highlights and messages.
    case tick(now: Double)
    /// Another connection's presence on a record changed (`state` nil: it left) (Protocol.md 5.1).
    case presence(Presence)
    /// A page of a record's history, as `loadHistory` asked for it (Protocol.md 3.9).
    case history(RecordHistory)
}

/// Work the editor asks its host to do.
public enum EditorEffect: Sendable, Equatable {
    /// Merge-patch `key` on `base` (nil: a forced write); with `merge`, sent with
    /// `"merge": "fields"`, so a stale base is merged unless the fields it sets changed since.
    case patch(key: String, base: Int64?, patch: JSONObject, merge: Bool = false)
    /// Create `key` (base 0).
    case create(key: String, data: JSONObject)
    case delete(key: String, base: Int64)
    /// Show this editor's presence on `key` to the others (`state` nil: leave the key).
    case setPresence(key: String, state: JSONObject?)
    /// Read a page of `key`'s versions below `before` (from the newest when nil).
    case loadHistory(key: String, before: Int64?)
    /// Write an old version's `data` back as `key`'s next version, on `base` (the version the
    /// user saw): a put that conflicts if someone wrote first.
    case restore(key: String, base: Int64, data: JSONObject)
    case quit
}

/// How a piece of the screen is drawn.
public enum Style: Sendable, Equatable {
    case normal, dim, header, selected, changed, added, deleted, status, message, error, input, mine, theirs
}

/// A run of text in one style.
public struct Segment: Sendable, Equatable {
    public var text: String
    public var style: Style

    public init(_ text: String, _ style: Style = .normal) {
        self.text = text
        self.style = style
    }
}

/// What the terminal should show: exactly `height` lines of at most `width` columns each.
public struct Screen: Sendable, Equatable {
    public var lines: [[Segment]]
    /// Where the text cursor goes (row, column), when input is being typed.
    public var cursor: (row: Int, column: Int)?

    public static func == (lhs: Screen, rhs: Screen) -> Bool {
        lhs.lines == rhs.lines && lhs.cursor?.row == rhs.cursor?.row && lhs.cursor?.column == rhs.cursor?.column
    }

    /// The screen as plain text, one string per line (for tests).
    public var text: [String] { lines.map { $0.map(\.text).joined() } }
}

/// Values as the editor shows and reads them.
public enum CellText {
    /// A string shows as its text; anything else as compact JSON; a missing field as "".
    public static func display(_ value: JSONValue?) -> String {
        switch value {
        case nil: ""
        case .string(let text)?: text
        case let value?: value.encodedString
        }
    }

    /// What the user typed: JSON when it parses as JSON, otherwise the text as a string
    /// (type `"42"` with quotes for the string 42).
    public static func parse(_ text: String) -> JSONValue {
        (try? JSONParser.parse(text)) ?? .string(text)
    }
}
