import Foundation
import Logging
import Synchronization
import VersoCore

/// Writes each log message as one JSON object on a line of standard error (`--log-format
/// json`): `{"time":"2026-12-03T23:40:01.123Z","level":"info","label":"verso","message":"…",
/// "verso.session":"…",…}`, with the logger's and the message's metadata as members (a
/// message's win), so a log collector reads every field without parsing text.
public struct JSONLogHandler: LogHandler {
    public var logLevel: Logger.Level = .info
    public var metadata: Logger.Metadata = [:]
    public var metadataProvider: Logger.MetadataProvider?
    private let label: String

    /// Serializes whole lines, so lines from several threads never interleave.
    private static let output = Mutex(())

    public init(label: String) {
        self.label = label
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var members = metadata
        if let provided = metadataProvider?.get() { members.merge(provided) { _, new in new } }
        if let given = event.metadata { members.merge(given) { _, new in new } }
        var writer = JSONWriter()
        writer.raw("{\"time\":")
        writer.string(Self.timestamp(Date()))
        writer.raw(",\"level\":")
        writer.string(event.level.rawValue)
        writer.raw(",\"label\":")
        writer.string(label)
        writer.raw(",\"message\":")
        writer.string(event.message.description)
        if let error = event.error {
            writer.raw(",\"error\":")
            writer.string("\(error)")
        }
        for (key, value) in members.sorted(by: { $0.key < $1.key }) {
            writer.raw(",")
            writer.string(key)
            writer.raw(":")
            Self.write(value, to: &writer)
        }
        writer.raw("}\n")
        let line = writer.bytes
        Self.output.withLock { _ in
            line.withUnsafeBytes { buffer in
                var written = 0
                while written < buffer.count {
                    let result = Foundation.write(STDERR_FILENO, buffer.baseAddress! + written, buffer.count - written)
                    if result > 0 {
                        written += result
                    } else if result < 0, errno == EINTR {
                        continue
                    } else {
                        return
                    }
                }
            }
        }
    }

    private static func write(_ value: Logger.Metadata.Value, to writer: inout JSONWriter) {
        switch value {
        case .string(let text):
            writer.string(text)
        case .stringConvertible(let convertible):
            writer.string(convertible.description)
        case .array(let items):
            writer.raw("[")
            for (index, item) in items.enumerated() {
                if index > 0 { writer.raw(",") }
                write(item, to: &writer)
            }
            writer.raw("]")
        case .dictionary(let members):
            writer.raw("{")
            for (index, (key, item)) in members.sorted(by: { $0.key < $1.key }).enumerated() {
                if index > 0 { writer.raw(",") }
                writer.string(key)
                writer.raw(":")
                write(item, to: &writer)
            }
            writer.raw("}")
        }
    }

    /// `date` in UTC as RFC 3339 with milliseconds: `2026-12-03T23:40:01.123Z`.
    static func timestamp(_ date: Date) -> String {
        let milliseconds = Int64((date.timeIntervalSince1970 * 1000).rounded(.down))
        var seconds = time_t(milliseconds / 1000)
        var parts = tm()
        gmtime_r(&seconds, &parts)
        func padded(_ value: Int32, _ width: Int) -> String {
            let text = String(value)
            return String(repeating: "0", count: max(0, width - text.count)) + text
        }
        let date =
            "\(padded(parts.tm_year + 1900, 4))-\(padded(parts.tm_mon + 1, 2))-\(padded(parts.tm_mday, 2))"
        let time = "\(padded(parts.tm_hour, 2)):\(padded(parts.tm_min, 2)):\(padded(parts.tm_sec, 2))"
        return "\(date)T\(time).\(padded(Int32(milliseconds % 1000), 3))Z"
    }
}
