import Logging
import NIOCore
import NIOSSL
import Synchronization

/// The server's certificate and key for TLS (`--tls-cert-file`, `--tls-key-file`).
///
/// Each accepted connection takes the context current when it arrives; `reload()` (on SIGHUP)
/// reads both files again, so a renewed certificate is served to new connections without a
/// restart, while connections already open keep the one they started with. A pair that
/// cannot be used leaves the previous one in force.
public final class ServerTLS: Sendable {
    /// Where the certificate chain and the private key are read from, both PEM.
    public struct Files: Sendable, Equatable {
        public var certificate: String
        public var privateKey: String

        public init(certificate: String, privateKey: String) {
            self.certificate = certificate
            self.privateKey = privateKey
        }
    }

    private let files: Files
    private let logger: Logger
    private let context: Mutex<NIOSSLContext>

    /// Reads the files; throws `ConfigurationError` saying which cannot be used and why.
    public init(files: Files, logger: Logger) throws(ConfigurationError) {
        self.files = files
        self.logger = logger
        context = Mutex(try Self.makeContext(files))
        AccessTokens.warnIfReadableByOthers(files.privateKey, flag: "--tls-key-file", logger: logger)
    }

    /// The context for a connection accepted now.
    var current: NIOSSLContext { context.withLock { $0 } }

    /// A handler that speaks TLS with the current certificate, for the head of a new connection.
    func makeHandler() -> NIOSSLServerHandler {
        NIOSSLServerHandler(context: current)
    }

    /// Reads the certificate and key again; on any error keeps the ones in use and returns it.
    @discardableResult
    public func reload() -> ConfigurationError? {
        do {
            let loaded = try Self.makeContext(files)
            context.withLock { $0 = loaded }
            logger.info("reloaded the TLS certificate", metadata: ["verso.tls_cert_file": "\(files.certificate)"])
            return nil
        } catch {
            logger.error(
                "could not reload the TLS certificate; the one loaded before stays in use",
                metadata: ["verso.error": "\(error)"]
            )
            return error
        }
    }

    static func makeContext(_ files: Files) throws(ConfigurationError) -> NIOSSLContext {
        let chain: [NIOSSLCertificate]
        do {
            chain = try NIOSSLCertificate.fromPEMFile(files.certificate)
        } catch {
            throw ConfigurationError(
                "--tls-cert-file \(files.certificate) cannot be read as PEM certificates: \(error)"
            )
        }
        guard !chain.isEmpty else {
            throw ConfigurationError(
                "--tls-cert-file \(files.certificate) holds no certificate (-----BEGIN CERTIFICATE-----)"
            )
        }
        let key: NIOSSLPrivateKey
        do {
            key = try NIOSSLPrivateKey(file: files.privateKey, format: .pem)
        } catch {
            throw ConfigurationError(
                "--tls-key-file \(files.privateKey) cannot be read as a PEM private key (unencrypted): \(error)"
            )
        }
        var configuration = TLSConfiguration.makeServerConfiguration(
            certificateChain: chain.map { .certificate($0) },
            privateKey: .privateKey(key)
        )
        configuration.minimumTLSVersion = .tlsv12
        do {
            return try NIOSSLContext(configuration: configuration)
        } catch {
            throw ConfigurationError(
                "--tls-cert-file \(files.certificate) and --tls-key-file \(files.privateKey) do not make a usable pair (is the key the certificate's?): \(error)"
            )
        }
    }
}
