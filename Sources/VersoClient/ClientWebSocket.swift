import HTTPTypes
import Logging
import NIOSSL
import WSClient
import WSCompression
import WSCore

/// Opens a WebSocket to a Verso server the way both the typed client and the wire-level one do:
/// messages up to 16 MiB validated as UTF-8, the token as `Authorization: Bearer`,
/// permessage-deflate offered when asked, and the upgrade (and the close handshake the client
/// begins) given up after `timeout` (see `UpgradeDeadline`).
package enum ClientWebSocket {
    /// Connects to `url` and runs `handler` once the upgrade completes (not at all for an answer
    /// that came after the deadline); returns the server's close frame, if it sent one.
    package static func connect(
        url: String,
        token: String?,
        compression: Bool,
        tls: TLSConfiguration?,
        timeout: Duration,
        logger: Logger,
        handler: @escaping WebSocketDataHandler<WebSocketClient.Context>
    ) async throws -> WebSocketCloseFrame? {
        var configuration = WebSocketClientConfiguration(maxFrameSize: 1 << 24, validateUTF8: true)
        // A client that ends a connection waits this long for the server's close frame, then
        // closes the socket: a server that stopped answering is not waited for longer than a
        // connect would be.
        configuration.closeTimeout = timeout
        if let token { configuration.additionalHeaders[.authorization] = "Bearer \(token)" }
        if compression {
            configuration.extensions = [
                WebSocketExtensionFactory.perMessageDeflate(maxDecompressedFrameSize: 1 << 24).build()
            ]
        }
        return try await UpgradeDeadline.run(timeout: timeout) { [configuration] upgraded in
            try await WebSocketClient.connect(
                url: url,
                configuration: configuration,
                tlsConfiguration: tls,
                logger: logger
            ) { inbound, outbound, context in
                // An answer that came after the deadline: this attempt was given up on.
                guard upgraded() else { return }
                try await handler(inbound, outbound, context)
            }
        }
    }
}
