import NIOCore
import NIOWebSocket
import VersoClient
import VersoWire
import WSCore

extension Peer {
    /// Sends one raw frame: `bytes` with `opcode` (a raw value, so reserved ones can be sent)
    /// and `reservedBits` (RSV1, RSV2, RSV3 as bits 2, 1, 0).
    func sendFrame(opcode: UInt8, fin: Bool = true, reservedBits: UInt8 = 0, _ bytes: some Sequence<UInt8>) async throws
    {
        let opcode = try require(WebSocketOpcode(encodedWebSocketOpcode: opcode), "opcode \(opcode) cannot be sent")
        let frame = WebSocketFrame(
            fin: fin,
            rsv1: reservedBits & 0b100 != 0,
            rsv2: reservedBits & 0b010 != 0,
            rsv3: reservedBits & 0b001 != 0,
            opcode: opcode,
            data: ByteBuffer(bytes: Array(bytes))
        )
        try await wire.send(frame: frame)
    }

    /// Sends `text` as one text message split into frames at the given byte offsets.
    func sendFragmented(_ bytes: [UInt8], at cuts: [Int]) async throws {
        let bounds = [0] + cuts + [bytes.count]
        for index in 0..<(bounds.count - 1) {
            try await sendFrame(
                opcode: index == 0 ? 0x1 : 0x0,
                fin: index == bounds.count - 2,
                bytes[bounds[index]..<bounds[index + 1]]
            )
        }
    }

    /// Waits for the server to close the connection and returns the close code it sent
    /// (`nil` when it sent none), skipping any messages still unread.
    func closeCode() async throws -> UInt16? {
        let frame = try await wire.waitForClose()
        return frame.map { UInt16(webSocketErrorCode: $0.closeCode) }
    }

    /// Expects the server to close the connection with `code`, and to send no message first.
    func expectClose(_ code: UInt16, _ what: String) async throws {
        // `nextText` returns a message if one comes, and throws once the connection has ended.
        if let text = try? await wire.nextText() {
            throw ConformanceFailure(
                "\(what): expected the server to close with \(code), but it sent \(describe(text))"
            )
        }
        let actual: UInt16?
        do {
            actual = try await closeCode()
        } catch {
            throw ConformanceFailure(
                "\(what): expected the server to close with \(code), but it did not close: \(error)"
            )
        }
        try expectEqual(actual.map(String.init) ?? "no close code", String(code), "\(what): the close code")
    }
}
