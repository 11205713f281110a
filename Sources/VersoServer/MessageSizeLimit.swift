import CompressNIO
import NIOWebSocket
import WSCore

/// Wraps the permessage-deflate extension so that a message which inflates past the size limit
/// closes the connection with 1009 (message too big), as RFC 6455 asks, instead of the 1011
/// that a decompression failure would otherwise produce.
struct SizeLimitedExtensionBuilder: WebSocketExtensionBuilder {
    static var name: String { "permessage-deflate" }
    let inner: any WebSocketExtensionBuilder

    func clientRequestHeader() -> String { inner.clientRequestHeader() }

    func serverReponseHeader(to request: WebSocketExtensionHTTPParameters) -> String? {
        inner.serverReponseHeader(to: request)
    }

    func serverExtension(from request: WebSocketExtensionHTTPParameters) throws -> (any WebSocketExtension)? {
        try inner.serverExtension(from: request).map(SizeLimitedExtension.init)
    }

    func clientExtension(from response: WebSocketExtensionHTTPParameters) throws -> (any WebSocketExtension)? {
        try inner.clientExtension(from: response).map(SizeLimitedExtension.init)
    }
}

struct SizeLimitedExtension: WebSocketExtension {
    let inner: any WebSocketExtension

    var name: String { inner.name }
    var reservedBits: WebSocketFrame.ReservedBits { inner.reservedBits }

    func processReceivedFrame(_ frame: WebSocketFrame, context: WebSocketExtensionContext) async throws -> WebSocketFrame {
        do {
            return try await inner.processReceivedFrame(frame, context: context)
        } catch let error as CompressNIOError where error == .bufferOverflow {
            // The frame inflated past `maxDecompressedFrameSize`; NIO maps this error to close code 1009.
            throw NIOWebSocketError.invalidFrameLength
        }
    }

    func processFrameToSend(_ frame: WebSocketFrame, context: WebSocketExtensionContext) async throws -> WebSocketFrame {
        try await inner.processFrameToSend(frame, context: context)
    }

    func shutdown() async { await inner.shutdown() }
}
