import CompressNIO
import HTTPTypes
import NIOCore
import Synchronization
import WSCore

/// permessage-deflate (RFC 7692) as Verso negotiates it: without context takeover in either
/// direction.
///
/// Every message is compressed, and decompressed, on its own, so a connection keeps no zlib
/// state between messages: the zlib streams live in a small shared pool (`ZlibPool`) and are
/// taken only while a message is being compressed or inflated. An idle connection therefore
/// costs no compression memory at all, where a context-takeover stream pair costs ~300 KiB of
/// address space (~90 KiB resident) per connection. The price is a little compression ratio on
/// small messages, which carry little repeated text from one to the next.
public enum PerMessageDeflate {
    public static let name = "permessage-deflate"
    /// Messages shorter than this are sent uncompressed (the deflate framing would outweigh the
    /// saving), as RFC 7692 allows.
    public static let minimumCompressedBytes = 256

    /// Messages of this size and up are compressed at zlib's fastest level rather than its
    /// default: they are the ones whose compression holds up every other connection of the
    /// event loop (a conflict carrying a megabyte record took milliseconds at the default
    /// level), and their ratio suffers little.
    public static let fastCompressionBytes = 64 << 10

    /// What was agreed for one connection.
    public struct Agreement: Sendable, Equatable {
        /// The window (in bits, 9...15) the server compresses with: the client's
        /// `server_max_window_bits`, or 15.
        public var serverWindowBits: Int32

        public init(serverWindowBits: Int32) {
            self.serverWindowBits = serverWindowBits
        }

        /// The `Sec-WebSocket-Extensions` value the server answers with.
        public var responseHeader: String {
            var header = "\(PerMessageDeflate.name); server_no_context_takeover; client_no_context_takeover"
            if serverWindowBits < 15 { header += "; server_max_window_bits=\(serverWindowBits)" }
            return header
        }
    }

    /// The first of the client's permessage-deflate offers that the server can accept, in the
    /// client's order of preference; nil when there is none (the connection then runs
    /// uncompressed).
    ///
    /// An offer is declined when it carries an unknown or repeated-looking parameter or a value
    /// out of range, or asks for `server_max_window_bits=8`, which zlib cannot produce.
    public static func agreement(offers: [WebSocketExtensionHTTPParameters]) -> Agreement? {
        for offer in offers where offer.name == name {
            if let agreement = agreement(offer: offer) { return agreement }
        }
        return nil
    }

    /// The agreement for the client's request headers.
    public static func agreement(requestHeaders: HTTPFields) -> Agreement? {
        agreement(offers: WebSocketExtensionHTTPParameters.parseHeaders(requestHeaders))
    }

    /// The agreement for one offer, or nil when the server cannot accept it.
    public static func agreement(offer: WebSocketExtensionHTTPParameters) -> Agreement? {
        var serverWindowBits: Int32 = 15
        for (parameter, value) in offer.parameters {
            switch parameter {
            case "server_no_context_takeover", "client_no_context_takeover":
                guard value == .null else { return nil }
            case "client_max_window_bits":
                // Any client window is fine: the server inflates with the largest (15).
                if value != .null, windowBits(value) == nil { return nil }
            case "server_max_window_bits":
                guard let bits = windowBits(value), bits >= 9 else { return nil }
                serverWindowBits = bits
            default:
                return nil
            }
        }
        return Agreement(serverWindowBits: serverWindowBits)
    }

    /// A window size parameter's value (8...15), quoted or not.
    private static func windowBits(_ value: WebSocketExtensionHTTPParameters.Parameter) -> Int32? {
        guard case .value(let text) = value else { return nil }
        let digits =
            text.hasPrefix("\"") && text.hasSuffix("\"") && text.count >= 2 ? String(text.dropFirst().dropLast()) : text
        guard digits.allSatisfy(\.isASCII), let bits = Int32(digits), (8...15).contains(bits) else { return nil }
        return bits
    }

    /// Compresses one whole message as a permessage-deflate payload (RFC 7692 §7.2.1: the
    /// trailing 00 00 ff ff removed).
    public static func compress(
        _ message: some Collection<UInt8>,
        windowBits: Int32,
        allocator: ByteBufferAllocator
    ) throws -> ByteBuffer {
        let level: ZlibPool.Level = message.count >= fastCompressionBytes ? .fastest : .standard
        return try ZlibPool.shared.withCompressor(windowBits: windowBits, level: level) { compressor in
            var input = allocator.buffer(capacity: message.count)
            input.writeBytes(message)
            var output = allocator.buffer(capacity: compressor.maxSize(from: input))
            try input.compressStream(to: &output, with: compressor, flush: .sync)
            output.moveWriterIndex(to: output.writerIndex - 4)
            return output
        }
    }
}

extension PerMessageDeflate {
    /// Bytes of a stored block's header (`appendStoredBlockHeader`).
    public static let storedBlockHeaderBytes = 5

    /// Appends the header of a stored (uncompressed) deflate block of `length` bytes, which the
    /// caller writes next (RFC 1951 section 3.2.4: not final, type 00, the rest of the byte
    /// unused, then the length and its complement, little-endian).
    ///
    /// This is how one compressed payload serves many messages that differ only in a short
    /// head (an update's subscription id): each message's payload is its head in a stored
    /// block followed by the shared part as `compress` made it once. The stored block ends on
    /// a byte boundary, where the shared part's own blocks start; that part was compressed with
    /// no history before it, so none of its back-references reaches into the head, and the
    /// receiver inflates the two as one message (RFC 7692 section 7.2.2).
    public static func appendStoredBlockHeader(length: Int, to buffer: inout ByteBuffer) {
        precondition((0...Int(UInt16.max)).contains(length), "a stored block holds at most 65,535 bytes")
        let length = UInt16(length)
        buffer.writeInteger(0 as UInt8)
        buffer.writeInteger(length, endianness: .little)
        buffer.writeInteger(~length, endianness: .little)
    }
}

/// Inflates the compressed messages a client sends, with a pooled zlib stream held only from a
/// message's first frame to its last. (The server compresses what it sends itself, whole
/// messages at a time: `compress`.)
public final class PerMessageInflater: Sendable {
    private enum Receiving {
        case idle
        case plain
        case compressed(ZlibPool.Decompressor)
        /// A frame failed: the connection is being closed, and every later frame fails too,
        /// so nothing the client sends after it reaches the reader.
        case failed
    }

    private let maxMessageBytes: Int
    /// A connection's frames arrive one after another; the lock only makes that state Sendable.
    private let state = Mutex(Receiving.idle)

    /// - Parameter maxMessageBytes: the largest message accepted, counted after decompression.
    public init(maxMessageBytes: Int) {
        self.maxMessageBytes = maxMessageBytes
    }

    deinit {
        if case .compressed(let decompressor) = state.withLock({ $0 }) {
            ZlibPool.shared.returnDecompressor(decompressor)
        }
    }

    /// Thrown when a message inflates past the size limit (close code 1009).
    public struct TooLarge: Error, Equatable {
        public init() {}
    }

    /// One data frame's payload (unmasked), inflated when its message is compressed, as it
    /// came when it is not. `compressed` is the frame's RSV1, which only a message's first
    /// frame carries; `fin` ends the message. Throws `TooLarge` past the size limit, and
    /// zlib's error for a payload that does not inflate.
    ///
    /// A failed frame closes the connection, whose reader may still be handed frames the client
    /// sent before it saw the close: once one frame failed, every later one fails as well.
    public func inflate(_ payload: ByteBuffer, compressed: Bool, fin: Bool) throws -> ByteBuffer {
        do {
            return try inflateDataFrame(payload, compressed: compressed, fin: fin)
        } catch {
            let previous = state.withLock { state -> Receiving in
                defer { state = .failed }
                return state
            }
            if case .compressed(let decompressor) = previous { ZlibPool.shared.returnDecompressor(decompressor) }
            throw error
        }
    }

    private func inflateDataFrame(_ payload: ByteBuffer, compressed: Bool, fin: Bool) throws -> ByteBuffer {
        let decompressor: ZlibPool.Decompressor
        switch state.withLock({ $0 }) {
        case .failed:
            throw TooLarge()
        case .plain:
            if fin { state.withLock { $0 = .idle } }
            return payload
        case .idle where !compressed:
            if !fin { state.withLock { $0 = .plain } }
            return payload
        case .idle:
            decompressor = try ZlibPool.shared.takeDecompressor()
            state.withLock { $0 = .compressed(decompressor) }
        case .compressed(let current):
            decompressor = current
        }
        defer {
            if fin {
                state.withLock { $0 = .idle }
                ZlibPool.shared.returnDecompressor(decompressor)
            }
        }
        var payload = payload
        if fin {
            // RFC 7692 §7.2.2: put back the 00 00 ff ff the sender removed.
            payload.writeInteger(0x0000_FFFF as UInt32)
        }
        let inflated: ByteBuffer
        do {
            // One byte of room past the limit: CompressNIO reports output that fills its buffers
            // exactly as an overflow, which refused messages exactly at the limit whenever its
            // buffer sizes happened to add up to it. The check below enforces the limit itself.
            inflated = try payload.decompressStream(with: decompressor.zlib, maxSize: maxMessageBytes + 1)
        } catch let error as CompressNIOError where error == .bufferOverflow {
            throw TooLarge()
        }
        guard inflated.readableBytes <= maxMessageBytes else { throw TooLarge() }
        return inflated
    }
}

/// The zlib streams every connection shares: a connection takes one for the length of one
/// message and gives it back, so memory grows with the messages in flight, not with the
/// connections open.
final class ZlibPool: Sendable {
    static let shared = ZlibPool()
    /// Idle streams kept for reuse, per kind; more are made when needed and freed on return.
    private let idleLimit = 16

    /// A raw-deflate inflate stream with a 32 KiB window (any client window fits).
    final class Decompressor: @unchecked Sendable {
        // Safe: a stream is used by one message at a time: it is handed out under the pool's
        // lock, and a connection's frames are processed one after another.
        let zlib: ZlibDecompressor
        init() throws { zlib = try ZlibDecompressor(algorithm: .deflate, windowSize: 15) }
    }

    /// How hard a deflate stream compresses.
    enum Level: Hashable, Sendable {
        /// zlib's default level (6).
        case standard
        /// zlib's fastest level (1).
        case fastest

        var zlib: Int32 {
            switch self {
            case .standard: ZlibConfiguration.CompressionLevel.defaultCompressionLevel.rawValue
            case .fastest: ZlibConfiguration.CompressionLevel.fastestCompression.rawValue
            }
        }
    }

    private struct CompressorKind: Hashable {
        var windowBits: Int32
        var level: Level
    }

    private final class Compressor: @unchecked Sendable {
        // Safe: handed out under the pool's lock to one caller, which gives it back when done.
        let zlib: ZlibCompressor
        init(_ kind: CompressorKind) throws {
            zlib = try ZlibCompressor(
                algorithm: .deflate,
                configuration: ZlibConfiguration(windowSize: kind.windowBits, compressionLevel: kind.level.zlib)
            )
        }
    }

    private let decompressors = Mutex<[Decompressor]>([])
    private let compressors = Mutex<[CompressorKind: [Compressor]]>([:])

    func takeDecompressor() throws -> Decompressor {
        try decompressors.withLock { $0.popLast() } ?? Decompressor()
    }

    /// Takes back a stream, reset for its next message (a stream that cannot be reset is freed).
    func returnDecompressor(_ decompressor: Decompressor) {
        guard (try? decompressor.zlib.reset()) != nil else { return }
        decompressors.withLock { idle in
            if idle.count < idleLimit { idle.append(decompressor) }
        }
    }

    /// Runs `body` with a deflate stream of `windowBits` at `level`, reset afterwards.
    func withCompressor<Result>(
        windowBits: Int32,
        level: Level = .standard,
        _ body: (ZlibCompressor) throws -> Result
    ) throws -> Result {
        let kind = CompressorKind(windowBits: windowBits, level: level)
        let compressor = try compressors.withLock { $0[kind]?.popLast() } ?? Compressor(kind)
        defer {
            if (try? compressor.zlib.reset()) != nil {
                compressors.withLock { idle in
                    if idle[kind, default: []].count < idleLimit { idle[kind, default: []].append(compressor) }
                }
            }
        }
        return try body(compressor.zlib)
    }
}
