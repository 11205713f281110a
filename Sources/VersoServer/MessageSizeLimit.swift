import CompressNIO
import NIOWebSocket
import WSCore

/// Wraps the permessage-deflate extension so that a frame which inflates past the message size
/// limit closes the connection with 1009 (message too big), as RFC 6455 asks.
///
/// The inner extension's own `maxDecompressedFrameSize` bounds memory but is approximate (its
/// buffers grow in rounded steps) and fails with 1011; this wrapper checks the exact size.
struct SizeLimitedExtensionBuilder: WebSocketExtensionBuilder {
    static var name: String { "permessage-deflate" }
    let inner: any WebSocketExtensionBuilder
    let maxMessageBytes: Int

    func clientRequestHeader() -> String { inner.clientRequestHeader() }

    func serverReponseHeader(to request: WebSocketExtensionHTTPParameters) -> String? {
        inner.serverReponseHeader(to: request)
    }

    func serverExtension(from request: WebSocketExtensionHTTPParameters) throws -> (any WebSocketExtension)? {
        try inner.serverExtension(from: request).map { SizeLimitedExtension(inner: $0, maxMessageBytes: maxMessageBytes) }
    }

    func clientExtension(from response: WebSocketExtensionHTTPParameters) throws -> (any WebSocketExtension)? {
        try inner.clientExtension(from: response).map { SizeLimitedExtension(inner: $0, maxMessageBytes: maxMessageBytes) }
    }
}

struct SizeLimitedExtension: WebSocketExtension {
    let inner: any WebSocketExtension
    let maxMessageBytes: Int

    var name: String { inner.name }
    var reservedBits: WebSocketFrame.ReservedBits { inner.reservedBits }

    func processReceivedFrame(_ frame: WebSocketFrame, context: WebSocketExtensionContext) async throws -> WebSocketFrame {
        // NIO maps `invalidFrameLength` to close code 1009.
        let inflated: WebSocketFrame
        do {
            inflated = try await inner.processReceivedFrame(frame, context: context)
        } catch let error as CompressNIOError where error == .bufferOverflow {
            throw NIOWebSocketError.invalidFrameLength
        }
        guard inflated.data.readableBytes <= maxMessageBytes else { throw NIOWebSocketError.invalidFrameLength }
        return inflated
    }

    func processFrameToSend(_ frame: WebSocketFrame, context: WebSocketExtensionContext) async throws -> WebSocketFrame {
        try await inner.processFrameToSend(frame, context: context)
    }

    func shutdown() async { await inner.shutdown() }
}
