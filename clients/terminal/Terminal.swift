#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif
import Dispatch
import Foundation
import VersoEditor

/// The terminal settings to put back, readable from a signal handler.
///
/// Written once before any handler is installed and only read afterwards; a signal handler
/// cannot take a lock, which is why this is a plain global.
nonisolated(unsafe) private var savedAttributes = termios()
nonisolated(unsafe) private var terminalIsRaw = false

/// The escape sequence that leaves the alternate screen, shows the cursor and resets colours.
private let restoreSequence: [UInt8] = Array("\u{1B}[0m\u{1B}[?25h\u{1B}[?1049l".utf8)

/// Puts the terminal back as it was: safe to call from a signal handler (write and tcsetattr only).
private func restoreTerminal() {
    guard terminalIsRaw else { return }
    terminalIsRaw = false
    _ = restoreSequence.withUnsafeBufferPointer { write(STDOUT_FILENO, $0.baseAddress, $0.count) }
    tcsetattr(STDIN_FILENO, TCSAFLUSH, &savedAttributes)
}

/// The one place that knows about termios and ANSI escape sequences: raw mode, the alternate
/// screen, decoding keys and drawing a `Screen`. Everything else is the pure `EditorState`.
final class Terminal: Sendable {
    /// Puts the terminal in raw mode on the alternate screen, and makes sure it is restored on
    /// exit, on a fatal signal (a crash) and on SIGTERM/SIGHUP.
    static func open() throws -> Terminal {
        guard isatty(STDIN_FILENO) == 1, isatty(STDOUT_FILENO) == 1 else {
            throw CommandFailure(
                ExitStatus.usage,
                "verso edit needs a terminal (standard input and output must be a TTY)"
            )
        }
        guard tcgetattr(STDIN_FILENO, &savedAttributes) == 0 else {
            throw CommandFailure(ExitStatus.failure, "cannot read the terminal settings")
        }
        var raw = savedAttributes
        raw.c_iflag &= ~tcflag_t(BRKINT | ICRNL | INPCK | ISTRIP | IXON)
        raw.c_oflag &= ~tcflag_t(OPOST)
        raw.c_cflag |= tcflag_t(CS8)
        raw.c_lflag &= ~tcflag_t(ECHO | ICANON | IEXTEN | ISIG)
        withUnsafeMutableBytes(of: &raw.c_cc) { bytes in
            bytes[Int(VMIN)] = 1
            bytes[Int(VTIME)] = 0
        }
        guard tcsetattr(STDIN_FILENO, TCSAFLUSH, &raw) == 0 else {
            throw CommandFailure(ExitStatus.failure, "cannot put the terminal in raw mode")
        }
        terminalIsRaw = true
        atexit { restoreTerminal() }
        for signalNumber in [SIGSEGV, SIGBUS, SIGILL, SIGTRAP, SIGABRT, SIGFPE, SIGTERM, SIGHUP, SIGQUIT] {
            signal(signalNumber) { received in
                restoreTerminal()
                signal(received, SIG_DFL)
                raise(received)
            }
        }
        let terminal = Terminal()
        terminal.output("\u{1B}[?1049h\u{1B}[2J")
        return terminal
    }

    /// Restores the terminal (also done automatically at exit).
    func close() {
        restoreTerminal()
    }

    /// The terminal's size in columns and rows.
    var size: (width: Int, height: Int) {
        var window = winsize()
        guard ioctl(STDOUT_FILENO, UInt(TIOCGWINSZ), &window) == 0, window.ws_col > 0, window.ws_row > 0 else {
            return (80, 24)
        }
        return (Int(window.ws_col), Int(window.ws_row))
    }

    private func output(_ text: String) {
        var bytes = Array(text.utf8)
        var offset = 0
        while offset < bytes.count {
            let written = bytes.withUnsafeMutableBufferPointer {
                write(STDOUT_FILENO, $0.baseAddress! + offset, $0.count - offset)
            }
            if written <= 0 { return }
            offset += written
        }
    }

    /// Redraws the whole screen.
    func draw(_ screen: Screen) {
        var text = "\u{1B}[?25l\u{1B}[H"
        for (index, line) in screen.lines.enumerated() {
            for segment in line {
                text += Self.sgr(segment.style) + segment.text
            }
            text += "\u{1B}[0m\u{1B}[K"
            if index < screen.lines.count - 1 { text += "\r\n" }
        }
        if let cursor = screen.cursor {
            text += "\u{1B}[\(cursor.row + 1);\(cursor.column + 1)H\u{1B}[?25h"
        }
        output(text)
    }

    private static func sgr(_ style: Style) -> String {
        switch style {
        case .normal: "\u{1B}[0m"
        case .dim: "\u{1B}[0;2m"
        case .header: "\u{1B}[0;1;4m"
        case .selected: "\u{1B}[0;7m"
        case .changed: "\u{1B}[0;30;43m"
        case .added: "\u{1B}[0;32m"
        case .deleted: "\u{1B}[0;2;9;31m"
        case .status: "\u{1B}[0;7m"
        case .message: "\u{1B}[0;36m"
        case .error: "\u{1B}[0;1;31m"
        case .input: "\u{1B}[0;4m"
        case .mine: "\u{1B}[0;1;32m"
        case .theirs: "\u{1B}[0;1;33m"
        }
    }

    /// Key presses, read on a thread of their own (a blocking read cannot be cancelled; the
    /// process exits when the editor quits).
    func keys() -> AsyncStream<Key> {
        let (stream, continuation) = AsyncStream<Key>.makeStream()
        let thread = Thread {
            var buffer = [UInt8](repeating: 0, count: 256)
            while true {
                let count = buffer.withUnsafeMutableBufferPointer { read(STDIN_FILENO, $0.baseAddress, $0.count) }
                if count <= 0 {
                    continuation.finish()
                    return
                }
                for key in KeyDecoder.decode(Array(buffer[0..<count])) { continuation.yield(key) }
            }
        }
        thread.start()
        return stream
    }

    /// One element each time the terminal is resized (SIGWINCH).
    func resizes() -> AsyncStream<Void> {
        let (stream, continuation) = AsyncStream<Void>.makeStream(bufferingPolicy: .bufferingNewest(1))
        signal(SIGWINCH, SIG_IGN)
        let source = SignalSource(DispatchSource.makeSignalSource(signal: SIGWINCH, queue: .global()))
        source.source.setEventHandler { continuation.yield() }
        continuation.onTermination = { _ in source.source.cancel() }
        source.source.resume()
        return stream
    }
}

/// A dispatch signal source handed to a termination handler. Dispatch sources are thread-safe
/// (cancel may be called from any thread), which is what makes `@unchecked Sendable` safe here.
private final class SignalSource: @unchecked Sendable {
    let source: any DispatchSourceSignal
    init(_ source: any DispatchSourceSignal) { self.source = source }
}

/// Turns bytes read from a raw terminal into keys.
enum KeyDecoder {
    static func decode(_ bytes: [UInt8]) -> [Key] {
        var keys: [Key] = []
        var index = 0
        while index < bytes.count {
            let byte = bytes[index]
            switch byte {
            case 0x1B:
                if index + 2 < bytes.count,
                    bytes[index + 1] == UInt8(ascii: "[") || bytes[index + 1] == UInt8(ascii: "O")
                {
                    var end = index + 2
                    while end < bytes.count, !(0x40...0x7E).contains(bytes[end]) { end += 1 }
                    let body = String(decoding: bytes[(index + 2)...min(end, bytes.count - 1)], as: UTF8.self)
                    switch body {
                    case "A": keys.append(.up)
                    case "B": keys.append(.down)
                    case "C": keys.append(.right)
                    case "D": keys.append(.left)
                    case "H", "1~", "7~": keys.append(.home)
                    case "F", "4~", "8~": keys.append(.end)
                    case "5~": keys.append(.pageUp)
                    case "6~": keys.append(.pageDown)
                    case "3~": keys.append(.backspace)
                    default: break
                    }
                    index = end + 1
                    continue
                }
                keys.append(.escape)
            case 0x0D, 0x0A: keys.append(.enter)
            case 0x7F, 0x08: keys.append(.backspace)
            case 0x09: keys.append(.tab)
            case 0x03: keys.append(.controlC)
            case 0x00..<0x20: break
            default:
                let length = byte >= 0xF0 ? 4 : byte >= 0xE0 ? 3 : byte >= 0xC0 ? 2 : 1
                let end = min(bytes.count, index + length)
                if let text = String(validating: bytes[index..<end], as: UTF8.self), let character = text.first {
                    keys.append(.character(character))
                }
                index = end
                continue
            }
            index += 1
        }
        return keys
    }
}
