import Foundation
import NIOCore
import NIOPosix

/// Plain TCP exchanges with a server, for checks below the WebSocket client: a plain HTTP
/// request, or the exact headers of a WebSocket handshake.
public enum RawHTTP {
    /// An HTTP response as read off the wire.
    public struct Response: Sendable {
        public var status: Int
        /// Header lines, names lowercased.
        public var headers: [String: String]
        public var body: String
    }

    /// Sends `request` (a complete HTTP/1.1 request) to `host:port` and reads one response: the
    /// head, then `Content-Length` bytes of body (none for 101 Switching Protocols).
    public static func exchange(host: String = "127.0.0.1", port: Int, request: String) async throws -> Response {
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .connect(host: host, port: port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: channel)
                }
            }
        return try await channel.executeThenClose { inbound, outbound in
            try await outbound.write(ByteBuffer(string: request))
            var received: [UInt8] = []
            for try await chunk in inbound {
                received += chunk.readableBytesView
                if let response = parse(received) { return response }
            }
            guard let response = parse(received, atEnd: true) else {
                throw WireError(
                    "connection closed before a full response: \(String(decoding: received, as: UTF8.self))"
                )
            }
            return response
        }
    }

    private static func parse(_ bytes: [UInt8], atEnd: Bool = false) -> Response? {
        let text = String(decoding: bytes, as: UTF8.self)
        guard let headEnd = text.range(of: "\r\n\r\n") else { return nil }
        let lines = text[..<headEnd.lowerBound].split(separator: "\r\n").map(String.init)
        guard let statusLine = lines.first, statusLine.split(separator: " ").count >= 2,
            let status = Int(statusLine.split(separator: " ")[1])
        else { return nil }
        var headers: [String: String] = [:]
        for line in lines.dropFirst() {
            guard let colon = line.firstIndex(of: ":") else { continue }
            headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(
                in: .whitespaces
            )
        }
        let body = String(text[headEnd.upperBound...])
        if status == 101 { return Response(status: status, headers: headers, body: "") }
        if let length = headers["content-length"].flatMap(Int.init) {
            guard body.utf8.count >= length else { return nil }
        } else if !atEnd {
            return nil
        }
        return Response(status: status, headers: headers, body: body)
    }

    /// The request line and headers of a WebSocket handshake to `path` (by default `/v1/ws`),
    /// offering `extensions` when given.
    public static func handshake(
        host: String = "127.0.0.1",
        port: Int,
        path: String = "/v1/ws",
        extensions: String?
    ) -> String {
        var request = "GET \(path) HTTP/1.1\r\nHost: \(host):\(port)\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        request += "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
        if let extensions { request += "Sec-WebSocket-Extensions: \(extensions)\r\n" }
        return request + "\r\n"
    }
}
