import ArgumentParser
import Foundation
import VersoClient
import VersoCore

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

struct Import: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write records from a file of JSON lines, many to a batch.",
        discussion: """
            Each line is an object {"key":K,"data":{...}} with one of: "base":N (the version the data starts from; 0 \
            creates), "base":N with "merge":true (on a stale base, merged into the current record unless a value it \
            changes was changed since: Protocol.md 3.3), or "force":true (only on a server started with \
            --allow-force). A line with neither "base" nor "force" creates its record (base 0), so the lines of \
            verso export, whose "version" is ignored, recreate their records on a server that lacks them. Other \
            members are ignored and blank lines skipped. Each line is a put of its own, decided on its own: a \
            conflict or error on one line changes nothing for the others.

            A malformed line is reported on standard error with its line number and counted as an error, and the \
            import goes on (with --strict it stops there: the lines before it are imported, none after). Progress \
            goes to standard error after each batch; at the end one line goes to standard output, \
            {"conflicts":C,"errors":E,"merged":M,"written":W}, where "written" counts every record acknowledged, \
            the M merged ones included. Exit status: 0 when every record was written, 3 when some conflicted and \
            none failed, 1 when any failed (a malformed line, an error, or a batch the server refused), 5 when the \
            server cannot be reached.
            """
    )
    @OptionGroup var connection: ConnectionOptions

    @Option(help: "Most records in one batch message (1–1000).")
    var batchSize = 500

    @Option(
        help: """
            Most bytes in one batch message: a batch is sent early rather than grow past it, and a line longer than \
            it is an error. Keep it at most the server's --max-message-bytes (default 1 MiB).
            """
    )
    var maxBatchBytes = 1 << 20

    @Option(
        help: """
            Write each conflict to this file (created or replaced) as a JSON line: {"line","key","base","version",\
            "data","deleted"}, with "reason", "clashes" and "changed" for a merge line; "version" and "data" are \
            the record's current ones. Without it, each conflict is a message on standard error.
            """
    )
    var conflicts: String?

    @Flag(help: "Stop at the first malformed line (the lines before it are imported).")
    var strict = false

    @Option(
        help: """
            Send batch n with the idempotency key KEY-n instead of a new UUID, so that running the same import \
            again (same file, same options, same KEY) applies no batch twice: a batch that had been committed gets \
            its first results again (Protocol.md 3.7).
            """
    )
    var idempotencyKey: String?

    @Argument(help: "The file of JSON lines, or - for standard input.")
    var file: String

    func validate() throws {
        guard (1...RequestLimits.maxTxnOps).contains(batchSize) else {
            throw ValidationError("--batch-size must be 1–\(RequestLimits.maxTxnOps)")
        }
        guard (1 << 10...64 << 20).contains(maxBatchBytes) else {
            throw ValidationError("--max-batch-bytes must be 1 KiB to 64 MiB (as the server's --max-message-bytes)")
        }
        if let idempotencyKey, !(1...Importer.maxKeyPrefixBytes).contains(idempotencyKey.utf8.count) {
            throw ValidationError("--idempotency-key must be 1–\(Importer.maxKeyPrefixBytes) bytes")
        }
    }

    func run() async throws {
        let input: FileHandle
        if file == "-" {
            input = FileHandle.standardInput
        } else {
            guard let handle = FileHandle(forReadingAtPath: file) else {
                throw CommandFailure(ExitStatus.usage, "cannot read \(file)")
            }
            input = handle
        }
        var conflictsOutput: FileHandle?
        if let conflicts {
            guard FileManager.default.createFile(atPath: conflicts, contents: nil),
                let handle = FileHandle(forWritingAtPath: conflicts)
            else {
                throw CommandFailure(ExitStatus.usage, "cannot write \(conflicts)")
            }
            conflictsOutput = handle
        }
        defer { try? conflictsOutput?.close() }
        let tally = try await connection.withClient(reconnect: true) { client in
            var importer = Importer(
                client: client,
                batchSize: batchSize,
                maxBatchBytes: maxBatchBytes,
                idempotencyKeyPrefix: idempotencyKey,
                conflictsOutput: conflictsOutput
            )
            do {
                try await importLines(from: input, into: &importer)
                importer.progress.end()
            } catch {
                importer.progress.end()
                printJSON(importer.tally.summary)
                throw error
            }
            return importer.tally
        }
        printJSON(tally.summary)
        let conflicted =
            tally.conflicts == 0 ? "" : "\(tally.conflicts) conflicted\(conflicts.map { " (see \($0))" } ?? "")"
        if tally.errors > 0 {
            let also = conflicted.isEmpty ? "" : ", \(conflicted)"
            throw CommandFailure(ExitStatus.failure, "of \(tally.read) records, \(tally.errors) failed\(also)")
        }
        if tally.conflicts > 0 {
            throw CommandFailure(ExitStatus.conflict, "of \(tally.read) records, \(conflicted)")
        }
    }

    /// Reads `input` line by line and hands each record to `importer`, sending what is left at
    /// the end (or at the first malformed line, with --strict).
    private func importLines(from input: FileHandle, into importer: inout Importer) async throws {
        var reader = LineReader(input, maxBytes: maxBatchBytes)
        var number = 0
        var stopped = false
        while !stopped {
            let next: LineReader.Line?
            do { next = try reader.next() } catch {
                throw CommandFailure(
                    ExitStatus.failure,
                    "cannot read \(file == "-" ? "standard input" : file): \(error)"
                )
            }
            guard let next else { break }
            number += 1
            let record: Result<ImportLine, LineProblem>
            switch next {
            case .text(let text):
                guard text.contains(where: { !Self.isWhitespace($0) }) else { continue }
                record = Result { () throws(LineProblem) in
                    try check(ImportLine.parse(text, number: number), importer)
                }
            case .tooLong(let bytes):
                record = .failure(LineProblem("\(bytes) bytes, more than --max-batch-bytes (\(maxBatchBytes))"))
            }
            importer.tally.read += 1
            switch record {
            case .success(let line): try await importer.add(line)
            case .failure(let problem):
                importer.malformed(line: number, problem.message)
                stopped = strict
            }
        }
        try await importer.flush()
        if stopped { throw CommandFailure(ExitStatus.failure, "stopped at line \(number) (--strict)") }
    }

    /// `line`, if the server can take it: a forced write only when the server allows them, and
    /// no line too large for a batch message of its own.
    private func check(_ line: ImportLine, _ importer: Importer) throws(LineProblem) -> ImportLine {
        if line.operation.base == nil, !importer.client.serverAllowsForce {
            throw LineProblem("\(line.operation.key): \"force\": the server does not accept forced writes")
        }
        guard importer.fits(line) else {
            throw LineProblem(
                "\(line.operation.key): too large for one message of --max-batch-bytes (\(maxBatchBytes))"
            )
        }
        return line
    }

    private static func isWhitespace(_ byte: UInt8) -> Bool {
        byte == UInt8(ascii: " ") || byte == UInt8(ascii: "\t") || byte == UInt8(ascii: "\r")
    }
}

/// Why a line of an import is not a record to write.
struct LineProblem: Error {
    let message: String
    init(_ message: String) { self.message = message }
}

/// One record of an import, ready to send.
struct ImportLine {
    /// Deepest nesting of a line: its `data` sits two levels deeper in a batch message (inside
    /// `ops` and the op), which the server accepts nested at most `JSONParser.maxDepth` levels.
    static let maxDepth = JSONParser.maxDepth - 2

    /// Where it is in the file, counting from 1.
    var number: Int
    var operation: TxnOperation
    /// The line's length in bytes.
    var bytes: Int

    /// The put a line asks for: `{"key","data"}` with `"base"` (0 when absent), `"base"` and
    /// `"merge": true`, or `"force": true`. Other members are ignored.
    static func parse(_ line: [UInt8], number: Int) throws(LineProblem) -> ImportLine {
        let value: JSONValue
        do {
            value = try line.withUnsafeBufferPointer { try JSONParser.parse($0, maxDepth: maxDepth) }
        } catch {
            throw LineProblem("not valid JSON: \(error)")
        }
        guard case .object = value else { throw LineProblem("not a JSON object") }
        guard let key = value["key"]?.stringValue else { throw LineProblem("needs \"key\", a string") }
        if let problem = RecordKey.problem(with: key) { throw LineProblem(problem) }
        guard let data = value["data"]?.objectValue else { throw LineProblem("\(key): needs \"data\", an object") }
        var base: Int64?
        if let given = value["base"], given != .null {
            guard let number = given.integerValue, number >= 0 else {
                throw LineProblem("\(key): \"base\" must be a non-negative integer")
            }
            base = number
        }
        let force: Bool
        switch value["force"] {
        case nil, .null?, .bool(false)?: force = false
        case .bool(true)?: force = true
        default: throw LineProblem("\(key): \"force\" must be true or false")
        }
        let merge: Bool
        switch value["merge"] {
        case nil, .null?, .bool(false)?: merge = false
        case .bool(true)?, .string("fields")?: merge = true
        default: throw LineProblem("\(key): \"merge\" must be true or false")
        }
        if force, base != nil { throw LineProblem("\(key): give \"base\" or \"force\", not both") }
        if merge, base == nil {
            throw LineProblem("\(key): \"merge\" needs \"base\" (the version the data started from), not \"force\"")
        }
        let operation = TxnOperation(key: key, base: force ? nil : base ?? 0, action: .put(data), merge: merge)
        return ImportLine(number: number, operation: operation, bytes: line.count)
    }
}

/// What an import has come to so far.
struct ImportTally {
    /// Records read: every line but blank ones.
    var read = 0
    /// Records acknowledged, merged ones included.
    var written = 0
    var merged = 0
    var conflicts = 0
    /// Records not written: malformed lines, errors, records of a batch the server refused.
    var errors = 0
    /// The malformed lines among `errors`.
    var malformed = 0

    /// Records decided one way or another.
    var done: Int { written + conflicts + errors }

    /// The line printed at the end.
    var summary: JSONValue {
        .object([
            "written": .integer(Int64(written)), "merged": .integer(Int64(merged)),
            "conflicts": .integer(Int64(conflicts)), "errors": .integer(Int64(errors)),
        ])
    }
}

/// Sends an import's records in batches, each with its own idempotency key, and keeps the tally.
struct Importer {
    /// Longest `--idempotency-key`: room is left for `-n`, the batch's number.
    static let maxKeyPrefixBytes = RequestLimits.maxIdempotencyKeyBytes - 16

    let client: VersoClient
    let batchSize: Int
    let idempotencyKeyPrefix: String?
    let conflictsOutput: FileHandle?
    /// Bytes the ops of one batch may take: the message limit less the rest of the message.
    let opsBudget: Int
    var tally = ImportTally()
    var progress = Progress()
    private var pending: [ImportLine] = []
    private var pendingBytes = 0
    private var batches = 0

    init(
        client: VersoClient,
        batchSize: Int,
        maxBatchBytes: Int,
        idempotencyKeyPrefix: String?,
        conflictsOutput: FileHandle?
    ) {
        self.client = client
        self.batchSize = batchSize
        self.idempotencyKeyPrefix = idempotencyKeyPrefix
        self.conflictsOutput = conflictsOutput
        // {"idempotency_key":"…","ops":[…],"rid":N,"type":"batch"}, the key escaped at most 6 to 1.
        let keyBytes = idempotencyKeyPrefix.map { $0.utf8.count * 6 + 16 } ?? 38
        opsBudget = maxBatchBytes - 64 - keyBytes
    }

    /// At most the bytes the op of a line of `lineBytes` takes in a batch message, its comma
    /// included: its data encodes to no more than the line held, and the op adds at most
    /// `"op":"put"`, `"base":0` and `"merge":"fields"` for `"merge":true`.
    private static func opBytes(lineBytes: Int) -> Int { lineBytes + 32 }

    /// Whether `line` fits in a batch message on its own.
    func fits(_ line: ImportLine) -> Bool { Self.opBytes(lineBytes: line.bytes) <= opsBudget }

    /// Adds a record to the next batch, first sending the batch when it is full.
    mutating func add(_ line: ImportLine) async throws {
        let bytes = Self.opBytes(lineBytes: line.bytes)
        if !pending.isEmpty, pending.count == batchSize || pendingBytes + bytes > opsBudget { try await flush() }
        pending.append(line)
        pendingBytes += bytes
    }

    /// Counts and reports a line that is not a record to write.
    mutating func malformed(line: Int, _ message: String) {
        tally.errors += 1
        tally.malformed += 1
        progress.message("line \(line): \(message)")
    }

    /// Sends the records waiting, if any, as one batch and tallies its results.
    ///
    /// A batch the server refuses whole as malformed or not allowed counts each of its records
    /// as an error and the import goes on; any other failure ends it, saying what became of the
    /// batch.
    mutating func flush() async throws {
        guard let first = pending.first?.number, let last = pending.last?.number else { return }
        let lines = pending
        pending = []
        pendingBytes = 0
        batches += 1
        let key = idempotencyKeyPrefix.map { "\($0)-\(batches)" }
        let span = first == last ? "line \(first)" : "lines \(first)–\(last)"
        let outcome: BatchOutcome
        do {
            outcome = try await client.batch(lines.map(\.operation), idempotencyKey: key)
        } catch let error as VersoClientError where Self.refusesBatch(error) {
            tally.errors += lines.count
            progress.message("\(span): the server refused the batch, nothing in it was written: \(error)")
            progress.show(tally)
            return
        } catch let error as VersoClientError {
            let fate =
                error.code == nil
                ? "may or may not have been written (read them, or run the import again with --idempotency-key)"
                : "were not written"
            throw CommandFailure(CommandFailure(error).exitCode, "\(error); the records on \(span) \(fate)")
        }
        if outcome.replayed {
            progress.message("\(span): the server had applied this batch already; counted as it was decided then")
        }
        for (line, result) in zip(lines, outcome.results) {
            switch result {
            case .ack(_, _, _, let merged):
                tally.written += 1
                if merged { tally.merged += 1 }
            case .conflict(let conflict):
                tally.conflicts += 1
                if let conflictsOutput {
                    var members = conflictJSON(conflict).objectValue ?? [:]
                    members["line"] = .integer(Int64(line.number))
                    conflictsOutput.write(Data((JSONValue.object(members).encodedString + "\n").utf8))
                } else {
                    let notMerged = conflict.reason.map { "; not merged: \($0.rawValue)" } ?? ""
                    progress.message(
                        "line \(line.number): conflict: \(conflict.key) is at version \(conflict.version), "
                            + "not \(conflict.base)\(notMerged)"
                    )
                }
            case .error(let key, let code, let message):
                tally.errors += 1
                progress.message("line \(line.number): \(key): \(code.rawValue): \(message)")
            }
        }
        progress.show(tally)
    }

    /// Whether the server refused a batch whole for what is in it (a malformed op, an op the
    /// token may not make), so the next batch may still be taken; any other error ends an import.
    private static func refusesBatch(_ error: VersoClientError) -> Bool {
        switch error.code {
        case .badRequest?, .forbidden?, .tooLarge?: true
        default: false
        }
    }
}

/// The progress line on standard error: rewritten in place on a terminal, a line per batch
/// otherwise.
struct Progress {
    private let inPlace = isatty(STDERR_FILENO) == 1
    private var showing = false

    mutating func show(_ tally: ImportTally) {
        let text =
            "verso import: \(tally.done) done of \(tally.read) read, \(tally.conflicts) conflicts, "
            + "\(tally.errors) errors"
        write(inPlace ? "\r\u{1B}[K\(text)" : "\(text)\n")
        showing = inPlace
    }

    /// A message of its own, on a line of its own.
    mutating func message(_ text: String) {
        write("\(showing ? "\r\u{1B}[K" : "")verso: \(text)\n")
        showing = false
    }

    /// Ends the progress line, if one is showing.
    mutating func end() {
        if showing { write("\n") }
        showing = false
    }

    private func write(_ text: String) {
        FileHandle.standardError.write(Data(text.utf8))
    }
}

/// Reads a file a chunk at a time and returns it line by line (without the newline, or a
/// trailing carriage return), never holding more than one line and one chunk.
struct LineReader {
    enum Line {
        case text([UInt8])
        /// A line longer than the limit, skipped; how long it was.
        case tooLong(bytes: Int)
    }

    private let handle: FileHandle
    private let maxBytes: Int
    private var buffer: [UInt8] = []
    /// Where the current line starts in `buffer`.
    private var start = 0
    /// Bytes of the current line known to hold no newline.
    private var scanned = 0
    /// Bytes of the current line already dropped because it is too long.
    private var dropped: Int?
    private var atEnd = false

    init(_ handle: FileHandle, maxBytes: Int) {
        self.handle = handle
        self.maxBytes = maxBytes
    }

    /// The next line, or nil at the end of the file.
    mutating func next() throws -> Line? {
        while true {
            if let newline = buffer[(start + scanned)...].firstIndex(of: UInt8(ascii: "\n")) {
                let line = buffer[start..<newline]
                start = newline + 1
                scanned = 0
                return finish(line)
            }
            scanned = buffer.count - start
            if atEnd {
                guard scanned > 0 || dropped != nil else { return nil }
                let line = buffer[start...]
                start = buffer.count
                scanned = 0
                return finish(line)
            }
            if scanned > maxBytes {
                dropped = (dropped ?? 0) + scanned
                start = buffer.count
                scanned = 0
            }
            buffer.removeFirst(start)
            start = 0
            if let chunk = try handle.read(upToCount: 1 << 16), !chunk.isEmpty {
                buffer.append(contentsOf: chunk)
            } else {
                atEnd = true
            }
        }
    }

    private mutating func finish(_ line: ArraySlice<UInt8>) -> Line {
        if let dropped {
            self.dropped = nil
            return .tooLong(bytes: dropped + line.count)
        }
        let text = line.last == UInt8(ascii: "\r") ? line.dropLast() : line
        return text.count > maxBytes ? .tooLong(bytes: text.count) : .text(Array(text))
    }
}
