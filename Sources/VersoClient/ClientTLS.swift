import Foundation
import NIOSSL

/// The TLS settings of a client connection.
package enum ClientTLS {
    /// For a `wss://` URL with `caFile`: a client configuration trusting only the authorities
    /// in that PEM file. Nil otherwise (the WebSocket client then uses the system's
    /// authorities for `wss://`). Throws `VersoClientError(.cannotConnect)` for a file that cannot be read.
    package static func configuration(url: String, caFile: String?) throws -> TLSConfiguration? {
        guard let caFile else { return nil }
        guard url.lowercased().hasPrefix("wss://") else {
            throw VersoClientError(.cannotConnect, "a CA file is for wss:// URLs; \(url) does not use TLS")
        }
        let authorities: [NIOSSLCertificate]
        do {
            authorities = try NIOSSLCertificate.fromPEMFile(caFile)
        } catch {
            throw VersoClientError(.cannotConnect, "the CA file \(caFile) cannot be read as PEM certificates: \(error)")
        }
        var configuration = TLSConfiguration.makeClientConfiguration()
        configuration.trustRoots = .certificates(authorities)
        return configuration
    }
}
