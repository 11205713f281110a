import Foundation
import NIOSSL

/// The TLS settings of a client connection.
enum ClientTLS {
    /// For a `wss://` URL with `caFile`: a client configuration trusting only the authorities
    /// in that PEM file. Nil otherwise (the WebSocket client then uses the system's
    /// authorities for `wss://`). Throws `WireError` for a file that cannot be read.
    static func configuration(url: String, caFile: String?) throws -> TLSConfiguration? {
        guard let caFile else { return nil }
        guard url.lowercased().hasPrefix("wss://") else {
            throw WireError("a CA file is for wss:// URLs; \(url) does not use TLS")
        }
        let authorities: [NIOSSLCertificate]
        do {
            authorities = try NIOSSLCertificate.fromPEMFile(caFile)
        } catch {
            throw WireError("the CA file \(caFile) cannot be read as PEM certificates: \(error)")
        }
        var configuration = TLSConfiguration.makeClientConfiguration()
        configuration.trustRoots = .certificates(authorities)
        return configuration
    }
}
