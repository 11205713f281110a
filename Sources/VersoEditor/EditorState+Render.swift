import VersoCore

extension EditorState {
    /// Draws the current state as exactly `height` lines of at most `width` columns.
    public func render() -> Screen {
        var lines: [[Segment]] = []
        var cursor: (row: Int, column: Int)?
        let state = connected ? "connected" : connectionText
        lines.append(
            Self.fit(
                [Segment(" verso edit \(prefix)  ·  \(server)  ·  \(state)", .status)],
                width: width,
                fill: .status
            )
        )
        if case .conflict(let conflict) = mode {
            lines += conflictLines(conflict)
        } else if case .history(let view) = mode {
            lines += historyLines(view)
        } else {
            let table = tableLines()
            lines += table.lines
            cursor = table.cursor
        }
        while lines.count < height - 2 { lines.append([]) }
        lines = Array(lines.prefix(height - 2))
        let bottom = bottomLines()
        lines.append(Self.fit(bottom.message, width: width))
        lines.append(Self.fit(bottom.help, width: width, fill: .status))
        if let inputColumn = bottom.inputCursor { cursor = (height - 2, min(width - 1, inputColumn)) }
        return Screen(lines: lines, cursor: cursor)
    }

    private static func fit(_ segments: [Segment], width: Int, fill: Style? = nil) -> [Segment] {
        var result: [Segment] = []
        var used = 0
        for segment in segments where used < width {
            let text = String(segment.text.prefix(width - used))
            used += text.count
            result.append(Segment(text, segment.style))
        }
        if let fill, used < width { result.append(Segment(String(repeating: " ", count: width - used), fill)) }
        return result
    }

    private static func pad(_ text: String, _ width: Int) -> String {
        let clipped = text.count > width ? String(text.prefix(max(0, width - 1))) + "…" : text
        return clipped + String(repeating: " ", count: max(0, width - clipped.count))
    }

    private func tableLines() -> (lines: [[Segment]], cursor: (row: Int, column: Int)?) {
        let keys = visibleKeys
        let columns = columns
        let keyWidth = min(28, max(4, (keys.map(\.count).max() ?? 3) + 1))
        let versionWidth = 5
        let fieldWidths = columns.map { column in
            let widest = keys.compactMap { records[$0]?.data?[column] }.map { CellText.display($0).count }.max() ?? 0
            return min(24, max(4, max(column.count, widest) + 1))
        }
        // Choose the first visible column so the selected one fits.
        let available = width - keyWidth - versionWidth - 2
        var first = min(selectedField, max(0, columns.count - 1))
        var span = 0
        while first > 0, span + fieldWidths[first] + 1 <= available {
            span += fieldWidths[first] + 1
            first -= 1
        }
        if span + (columns.isEmpty ? 0 : fieldWidths[first]) + 1 > available, first < selectedField { first += 1 }
        var visibleColumns: [Int] = []
        var used = 0
        for index in columns.indices.dropFirst(first) {
            if used + fieldWidths[index] + 1 > available, !visibleColumns.isEmpty { break }
            visibleColumns.append(index)
            used += fieldWidths[index] + 1
        }

        var header = [
            Segment(" " + Self.pad("key", keyWidth), .header), Segment(Self.pad("ver", versionWidth), .header),
        ]
        for index in visibleColumns {
            header.append(
                Segment(
                    " " + Self.pad(columns[index], fieldWidths[index]),
                    index == selectedField ? .selected : .header
                )
            )
        }
        var lines = [Self.fit(header, width: width, fill: .header)]
        if keys.isEmpty {
            lines.append([
                Segment(
                    synced
                        ? "  no records under \(prefix)\(filter.isEmpty ? "" : " matching \"\(filter)\"") — press a to add one"
                        : "  loading…",
                    .dim
                )
            ])
            return (lines, nil)
        }
        let rows = max(1, height - 4)
        let selectedIndex = selectedKey.flatMap(Self.position(in: keys)) ?? 0
        let top =
            min(max(0, selectedIndex - rows + 1), max(0, keys.count - rows)) > 0 ? max(0, selectedIndex - rows + 1) : 0
        var cursor: (row: Int, column: Int)?
        for key in keys.dropFirst(top).prefix(rows) {
            guard let record = records[key] else { continue }
            let isSelected = selectedKey?.hasSameBytes(as: key) == true
            let rowStyle: Style =
                record.isDeleted
                ? .deleted
                : markedRows[key] != nil ? .added : pending[key] != nil || readOnly.contains(key) ? .dim : .normal
            var line = [
                Segment(isSelected ? ">" : " ", isSelected ? .selected : rowStyle),
                Segment(Self.pad(key, keyWidth), isSelected ? .selected : rowStyle),
                Segment(Self.pad(record.isDeleted ? "del" : String(record.version), versionWidth), rowStyle),
            ]
            var column = 1 + keyWidth + versionWidth
            for index in visibleColumns {
                let field = columns[index]
                var text = CellText.display(record.data?[field])
                var style = rowStyle
                if isChanged(key, field) { style = .changed }
                if isSelected, index == selectedField { style = .selected }
                if case .editing(let edit) = mode, edit.key.hasSameBytes(as: key), edit.field.hasSameBytes(as: field) {
                    text = edit.text
                    style = .input
                    cursor = (lines.count + 1, column + 1 + min(text.count, fieldWidths[index] - 1))
                }
                line.append(Segment(" " + Self.pad(text, fieldWidths[index]), style))
                column += fieldWidths[index] + 1
            }
            if let others = othersText(on: key) { line.append(Segment("  ◂ " + others, .changed)) }
            lines.append(Self.fit(line, width: width))
        }
        return (lines, cursor)
    }

    private func conflictLines(_ conflict: Conflict) -> [[Segment]] {
        let theirs = conflict.theirs
        let now =
            theirs.isDeleted ? "it was deleted (version \(theirs.version))" : "it is now at version \(theirs.version)"
        var lines: [[Segment]] = [
            [Segment(" Conflict on \(conflict.key): you edited version \(conflict.base); \(now).", .error)]
        ]
        switch conflict.reason {
        case .clash?:
            let names = conflict.clashes.map(Self.name).joined(separator: ", ")
            lines.append([
                Segment(" Not merged: someone else changed \(names.isEmpty ? "the same field" : names) too.", .error)
            ])
        case let reason?:
            lines.append([Segment(" Not merged (\(reason.rawValue)): \(Self.explain(reason)).", .error)])
        case nil:
            lines.append([])
        }
        lines.append([
            Segment(
                " " + Self.pad("field", 16) + " " + Self.pad("yours", 28) + " " + Self.pad("theirs", 28),
                .header
            )
        ])
        let fields = conflict.shownFields
        for field in fields {
            let isMine = field.hasSameBytes(as: conflict.field)
            let mine = isMine ? CellText.display(conflict.mine) : CellText.display(theirs.data?[field])
            let current = theirs.isDeleted ? "(deleted)" : CellText.display(theirs.data?[field])
            lines.append([
                Segment(" " + Self.pad(field, 16) + " ", isMine ? .selected : .normal),
                Segment(Self.pad(mine, 28), isMine ? .mine : .dim),
                Segment(" " + Self.pad(current, 28), isMine ? .theirs : .dim),
            ])
        }
        lines.append([])
        var options = [Segment(" [r] reapply mine on top of theirs   [t] keep theirs", .normal)]
        if allowsForce { options.append(Segment("   [f] force mine", .normal)) }
        lines.append(options)
        return lines.map { Self.fit($0, width: width) }
    }

    private func historyLines(_ view: HistoryView) -> [[Segment]] {
        var lines: [[Segment]] = [
            [Segment(" History of \(view.key), newest first", .header)],
            [
                Segment(
                    " " + Self.pad("ver", 6) + " " + Self.pad("when (UTC)", 20) + " " + Self.pad("by", 10) + " data",
                    .header
                )
            ],
        ]
        let rows = max(1, height - 6)
        let top = max(0, min(view.selected - rows + 1, view.versions.count - rows))
        for (index, version) in view.versions.enumerated().dropFirst(top).prefix(rows) {
            let isSelected = index == view.selected
            let when = version.at.map(Self.utc) ?? "unknown"
            let data = version.data.map { JSONValue.object($0).encodedString } ?? "(deleted)"
            let current = records[view.key]?.version == version.version ? "(current) " : ""
            lines.append([
                Segment(isSelected ? ">" : " ", isSelected ? .selected : .normal),
                Segment(Self.pad("v\(version.version)", 6), isSelected ? .selected : .normal),
                Segment(" " + Self.pad(when, 20) + " " + Self.pad(version.by ?? "", 10) + " ", .dim),
                Segment(current + data, version.data == nil ? .deleted : .normal),
            ])
        }
        if view.loading {
            lines.append([Segment("  loading…", .dim)])
        } else if let gone = view.gone {
            lines.append([
                Segment(
                    "  " + (gone == 1 ? "version 1 is" : "versions 1–\(gone) are") + " no longer kept by the server",
                    .dim
                )
            ])
        } else if view.next == nil {
            lines.append([Segment("  (the first version)", .dim)])
        }
        return lines.map { Self.fit($0, width: width) }
    }

    /// `milliseconds` since the Unix epoch as "YYYY-MM-DD hh:mm:ss" in UTC.
    static func utc(_ milliseconds: Int64) -> String {
        let seconds = milliseconds >= 0 ? milliseconds / 1000 : (milliseconds - 999) / 1000
        var days = seconds >= 0 ? seconds / 86_400 : (seconds - 86_399) / 86_400
        let time = seconds - days * 86_400
        // Days to a civil date (Howard Hinnant's algorithm).
        days += 719_468
        let era = (days >= 0 ? days : days - 146_096) / 146_097
        let dayOfEra = days - era * 146_097
        let yearOfEra = (dayOfEra - dayOfEra / 1460 + dayOfEra / 36_524 - dayOfEra / 146_096) / 365
        let dayOfYear = dayOfEra - (365 * yearOfEra + yearOfEra / 4 - yearOfEra / 100)
        let monthIndex = (5 * dayOfYear + 2) / 153
        let day = dayOfYear - (153 * monthIndex + 2) / 5 + 1
        let month = monthIndex < 10 ? monthIndex + 3 : monthIndex - 9
        let year = yearOfEra + era * 400 + (month <= 2 ? 1 : 0)
        func two(_ value: Int64) -> String { value < 10 ? "0\(value)" : "\(value)" }
        return "\(year)-\(two(month))-\(two(day)) \(two(time / 3600)):\(two(time / 60 % 60)):\(two(time % 60))"
    }

    private func bottomLines() -> (message: [Segment], help: [Segment], inputCursor: Int?) {
        func prompt(_ label: String, _ text: String) -> ([Segment], Int) {
            ([Segment(" \(label) ", .message), Segment(text, .input)], label.count + 2 + text.count)
        }
        let messageLine = message.map { [Segment(" " + $0.text, $0.style)] } ?? []
        switch mode {
        case .browse:
            let here = selectedKey.flatMap { key in othersText(on: key).map { " also on \(key): \($0)" } }
            return (
                message == nil ? here.map { [Segment($0, .changed)] } ?? [] : messageLine,
                [Segment(" ↑↓←→ move  e/Enter edit  a add  d delete  h history  / filter  q quit", .status)], nil
            )
        case .history:
            return (messageLine, [Segment(" ↑↓ move  Enter/r restore this version  Esc/h back", .status)], nil)
        case .editing(let edit):
            return (
                message == nil
                    ? [Segment(" editing \(edit.key).\(edit.field) from version \(edit.base)", .message)] : messageLine,
                [Segment(" Enter save  Esc cancel  (values are JSON when they parse, text otherwise)", .status)], nil
            )
        case .addingKey(let text):
            let (line, column) = prompt("new key:", text)
            return (line, [Segment(" Enter next  Esc cancel", .status)], column)
        case .addingData(let key, let text):
            let (line, column) = prompt("data for \(key):", text)
            return (line, [Segment(" a JSON object  Enter create  Esc cancel", .status)], column)
        case .confirmDelete(let key):
            return (
                [Segment(" delete \(key) at version \(records[key]?.version ?? 0)? y/n", .error)],
                [Segment(" y delete  any other key cancels", .status)], nil
            )
        case .filtering(let text):
            let (line, column) = prompt("filter:", text)
            return (line, [Segment(" Enter keep  Esc clear", .status)], column)
        case .conflict:
            return (
                messageLine,
                [Segment(" r reapply mine  t/Esc keep theirs" + (allowsForce ? "  f force" : ""), .status)], nil
            )
        }
    }
}

extension EditorState {
    /// Whether a cell was recently changed by someone else.
    public func isChanged(_ key: String, _ field: String) -> Bool {
        changedCells[Self.cell(key, field)] != nil
    }
}
