import CSQLite

/// An error reported by SQLite: the result code and SQLite's own message.
public struct SQLiteError: Error, Sendable, CustomStringConvertible {
    public let code: Int32
    public let message: String

    public var description: String { "SQLite error \(code): \(message)" }
}

/// SQLite's "copy this buffer now" destructor marker.
private let transientDestructor = unsafeBitCast(-1, to: sqlite3_destructor_type.self)

/// One SQLite connection with a cache of prepared statements.
///
/// Not thread-safe by itself: `SQLiteStore` hands each connection to exactly one serial
/// dispatch queue and only ever uses it from there, which is what makes the
/// `@unchecked Sendable` below safe.
final class SQLiteConnection: @unchecked Sendable {
    private let handle: OpaquePointer
    private var statements: [String: SQLiteStatement] = [:]

    init(path: String, readOnly: Bool) throws(SQLiteError) {
        var handle: OpaquePointer?
        let flags =
            (readOnly ? SQLITE_OPEN_READONLY : (SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE)) | SQLITE_OPEN_NOMUTEX
        let result = sqlite3_open_v2(path, &handle, flags, nil)
        guard result == SQLITE_OK, let handle else {
            let message = handle.map { String(cString: sqlite3_errmsg($0)) } ?? "cannot open database"
            if let handle { sqlite3_close_v2(handle) }
            throw SQLiteError(code: result, message: "\(message) (\(path))")
        }
        self.handle = handle
        sqlite3_busy_timeout(handle, 5_000)
    }

    deinit {
        statements.removeAll()
        sqlite3_close_v2(handle)
    }

    private func error(_ code: Int32) -> SQLiteError {
        SQLiteError(code: code, message: String(cString: sqlite3_errmsg(handle)))
    }

    /// Runs one or more statements that return no rows.
    func execute(_ sql: String) throws(SQLiteError) {
        var message: UnsafeMutablePointer<CChar>?
        let result = sqlite3_exec(handle, sql, nil, nil, &message)
        if result != SQLITE_OK {
            let text = message.map { String(cString: $0) } ?? "unknown error"
            sqlite3_free(message)
            throw SQLiteError(code: result, message: text)
        }
    }

    /// A prepared statement for `sql`, reset and with its bindings cleared, from the cache.
    private func statement(_ sql: String) throws(SQLiteError) -> SQLiteStatement {
        if let cached = statements[sql] {
            cached.reset()
            cached.clearBindings()
            return cached
        }
        let statement = try prepare(sql)
        statements[sql] = statement
        return statement
    }

    /// A new prepared statement for `sql`, for a caller that keeps it for the connection's life
    /// and runs it often (the writer's statements): no cache lookup per use.
    func prepare(_ sql: String) throws(SQLiteError) -> SQLiteStatement {
        var pointer: OpaquePointer?
        let result = sqlite3_prepare_v3(handle, sql, -1, UInt32(SQLITE_PREPARE_PERSISTENT), &pointer, nil)
        guard result == SQLITE_OK, let pointer else { throw error(result) }
        return SQLiteStatement(pointer: pointer, connection: handle)
    }

    /// Runs `body` with the cached statement for `sql` and resets it afterwards, so no statement
    /// is left mid-way holding a read transaction open.
    func withStatement<T>(_ sql: String, _ body: (SQLiteStatement) throws -> T) throws -> T {
        let statement = try statement(sql)
        defer { statement.reset() }
        return try body(statement)
    }

    /// Rows changed by the last INSERT, UPDATE or DELETE.
    var changes: Int { Int(sqlite3_changes(handle)) }

    /// False while a transaction is open on this connection. After SQLITE_FULL, SQLITE_IOERR,
    /// SQLITE_BUSY or SQLITE_NOMEM SQLite may or may not have rolled the transaction back by
    /// itself, so this, not the error, says whether a ROLLBACK is still needed.
    var isAutocommit: Bool { sqlite3_get_autocommit(handle) != 0 }
}

/// A prepared statement. Used only by the connection that made it.
final class SQLiteStatement {
    private let pointer: OpaquePointer
    private let connection: OpaquePointer

    init(pointer: OpaquePointer, connection: OpaquePointer) {
        self.pointer = pointer
        self.connection = connection
    }

    deinit { sqlite3_finalize(pointer) }

    /// Ends a run, so the statement holds no read transaction open; the bindings stay.
    func reset() {
        sqlite3_reset(pointer)
    }

    func clearBindings() {
        sqlite3_clear_bindings(pointer)
    }

    /// Runs `body` with the statement and resets it afterwards, also when `body` throws.
    func use<T>(_ body: (SQLiteStatement) throws -> T) rethrows -> T {
        defer { sqlite3_reset(pointer) }
        return try body(self)
    }

    private func check(_ result: Int32) throws(SQLiteError) {
        guard result == SQLITE_OK else {
            throw SQLiteError(code: result, message: String(cString: sqlite3_errmsg(connection)))
        }
    }

    func bindNull(_ index: Int32) throws(SQLiteError) {
        try check(sqlite3_bind_null(pointer, index))
    }

    func bind(_ index: Int32, _ value: Int64) throws(SQLiteError) {
        try check(sqlite3_bind_int64(pointer, index, value))
    }

    func bind(_ index: Int32, _ text: String) throws(SQLiteError) {
        var text = text
        let result = text.withUTF8 { bytes in bindText(index, bytes, copied: true) }
        try check(result)
    }

    /// Binds `value`, or NULL when nil.
    func bind(_ index: Int32, _ value: Int64?) throws(SQLiteError) {
        if let value { try bind(index, value) } else { try bindNull(index) }
    }

    /// Binds `text` (copied), or NULL when nil.
    func bind(_ index: Int32, _ text: String?) throws(SQLiteError) {
        if let text { try bind(index, text) } else { try bindNull(index) }
    }

    /// Binds `bytes` as TEXT (NULL when nil) without SQLite copying them, for the length of
    /// `body` only: then the statement is reset and the binding replaced by NULL, before the
    /// bytes can go away, so read what a step returned inside `body`. The writer's hot
    /// statements bind keys and records this way (a copy and a malloc fewer per binding).
    func withText<T>(_ index: Int32, _ bytes: [UInt8]?, _ body: () throws -> T) throws -> T {
        guard let bytes else {
            try check(sqlite3_bind_null(pointer, index))
            return try body()
        }
        return try bytes.withUnsafeBufferPointer { buffer in try withText(index, buffer, body) }
    }

    /// Binds `string`'s UTF-8 bytes as TEXT without a copy, for the length of `body` only.
    func withText<T>(_ index: Int32, _ string: String, _ body: () throws -> T) throws -> T {
        var string = string
        return try string.withUTF8 { buffer in try withText(index, buffer, body) }
    }

    /// Binds slices of `bytes` as TEXT without a copy (a nil range: NULL), each at its
    /// parameter, for the length of `body` only, as `withText` does for one.
    func withTexts<T>(
        _ slices: [(index: Int32, range: Range<Int>?)],
        of bytes: [UInt8],
        _ body: () throws -> T
    ) throws -> T {
        try bytes.withUnsafeBufferPointer { buffer in
            defer {
                sqlite3_reset(pointer)
                for slice in slices { sqlite3_bind_null(pointer, slice.index) }
            }
            for slice in slices {
                guard let range = slice.range else {
                    try check(sqlite3_bind_null(pointer, slice.index))
                    continue
                }
                try check(bindText(slice.index, UnsafeBufferPointer(rebasing: buffer[range]), copied: false))
            }
            return try body()
        }
    }

    private func withText<T>(_ index: Int32, _ bytes: UnsafeBufferPointer<UInt8>, _ body: () throws -> T) throws -> T {
        try check(bindText(index, bytes, copied: false))
        defer {
            // A running statement cannot be rebound: reset first.
            sqlite3_reset(pointer)
            sqlite3_bind_null(pointer, index)
        }
        return try body()
    }

    /// Binds UTF-8 bytes as TEXT (never NULL, also when empty). `copied`: SQLite copies them
    /// (SQLITE_TRANSIENT); otherwise it uses them where they are (SQLITE_STATIC, no destructor),
    /// and they must outlive the binding.
    private func bindText(_ index: Int32, _ bytes: UnsafeBufferPointer<UInt8>, copied: Bool) -> Int32 {
        guard let base = bytes.baseAddress, !bytes.isEmpty else {
            return sqlite3_bind_text(pointer, index, "", 0, transientDestructor)
        }
        return base.withMemoryRebound(to: CChar.self, capacity: bytes.count) {
            sqlite3_bind_text(pointer, index, $0, Int32(bytes.count), copied ? transientDestructor : nil)
        }
    }

    /// Steps once: `true` when a row is ready, `false` when done.
    func step() throws(SQLiteError) -> Bool {
        let result = sqlite3_step(pointer)
        switch result {
        case SQLITE_ROW: return true
        case SQLITE_DONE: return false
        default: throw SQLiteError(code: result, message: String(cString: sqlite3_errmsg(connection)))
        }
    }

    /// Runs a statement that returns no rows.
    func run() throws(SQLiteError) {
        while try step() {}
    }

    func int64(_ column: Int32) -> Int64 { sqlite3_column_int64(pointer, column) }

    func isNull(_ column: Int32) -> Bool { sqlite3_column_type(pointer, column) == SQLITE_NULL }

    /// The column's integer, or nil for NULL.
    func optionalInt64(_ column: Int32) -> Int64? { isNull(column) ? nil : int64(column) }

    /// The column's TEXT, or nil for NULL.
    func optionalText(_ column: Int32) -> String? { isNull(column) ? nil : text(column) }

    func text(_ column: Int32) -> String {
        guard let bytes = sqlite3_column_text(pointer, column) else { return "" }
        let count = Int(sqlite3_column_bytes(pointer, column))
        return String(decoding: UnsafeBufferPointer(start: bytes, count: count), as: UTF8.self)
    }

    /// The column's TEXT as bytes, or nil for NULL.
    func bytes(_ column: Int32) -> [UInt8]? {
        guard sqlite3_column_type(pointer, column) != SQLITE_NULL, let bytes = sqlite3_column_text(pointer, column)
        else { return nil }
        let count = Int(sqlite3_column_bytes(pointer, column))
        return Array(UnsafeBufferPointer(start: bytes, count: count))
    }
}
