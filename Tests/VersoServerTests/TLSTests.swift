import Foundation
import Testing
import VersoClient
import VersoCore
import VersoServer
import VersoTesting
import VersoWire

/// A self-signed certificate for 127.0.0.1 and localhost, made with openssl in `directory`.
struct TestCertificate {
    let certificate: String
    let privateKey: String

    var files: ServerTLS.Files { ServerTLS.Files(certificate: certificate, privateKey: privateKey) }

    /// Writes `NAME.crt` and `NAME.key` into `directory` (a P-256 key, valid for two days).
    static func make(in directory: String, name: String) throws -> TestCertificate {
        let certificate = (directory as NSString).appendingPathComponent("\(name).crt")
        let privateKey = (directory as NSString).appendingPathComponent("\(name).key")
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = [
            "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", privateKey, "-out", certificate, "-days", "2", "-subj", "/CN=localhost",
            "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
        ]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            throw TestFailure("openssl could not make a certificate (status \(process.terminationStatus))")
        }
        return TestCertificate(certificate: certificate, privateKey: privateKey)
    }
}

@Suite("TLS: --tls-cert-file serves wss://, and a new certificate is taken on reload")
struct TLSTests {
    @Test(
        "a client trusting the certificate speaks Verso over wss://, the wire client and the typed client, compressed or not"
    )
    func wss() async throws {
        let directory = TestServer.makeDataDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let certificate = try TestCertificate.make(in: directory, name: "server")
        try await TestServer.with(configure: { $0.tls = certificate.files }) { server async throws in
            // A name, not 127.0.0.1: the Swift client sends the host as SNI, which cannot be an IP address.
            let url = "wss://localhost:\(server.port)/v1/ws"
            let key = uniqueKey("tls")
            try await TestClient.with(url: url, caFile: certificate.certificate) { client async throws in
                #expect(try await client.request(#"{"type":"hello"}"#).type == "welcome")
                #expect(try await put(client, key, base: 0, #"{"over":"tls"}"#) == 1)
            }
            for compression in [true, false] {
                var configuration = VersoClientConfiguration(url: url, compression: compression, reconnect: false)
                configuration.caFile = certificate.certificate
                try await VersoClient.with(configuration) { client async throws in
                    guard case .found(let record) = try await client.get(key) else {
                        throw TestFailure("\(key) not found over wss://")
                    }
                    #expect(record.data["over"] == .string("tls"))
                }
            }
        }
    }

    @Test("wss:// to a certificate the client does not trust fails to connect")
    func untrusted() async throws {
        let directory = TestServer.makeDataDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let certificate = try TestCertificate.make(in: directory, name: "server")
        try await TestServer.with(configure: { $0.tls = certificate.files }) { server async throws in
            await #expect(throws: (any Error).self) {
                try await TestClient.with(url: "wss://localhost:\(server.port)/v1/ws") { client async throws in
                    _ = try await client.request(#"{"type":"hello"}"#)
                }
            }
        }
    }

    @Test("plain ws:// to a TLS port fails to connect (the server closes it without an HTTP answer)")
    func plainToTLS() async throws {
        let directory = TestServer.makeDataDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let certificate = try TestCertificate.make(in: directory, name: "server")
        try await TestServer.with(configure: { $0.tls = certificate.files }) { server async throws in
            await #expect(throws: (any Error).self) {
                try await TestClient.with(url: "ws://127.0.0.1:\(server.port)/v1/ws") { client async throws in
                    _ = try await client.request(#"{"type":"hello"}"#)
                }
            }
        }
    }

    @Test(
        "reloading the certificate (as SIGHUP does) serves the new one to new connections; a bad pair changes nothing"
    )
    func reload() async throws {
        let directory = TestServer.makeDataDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let first = try TestCertificate.make(in: directory, name: "first")
        let live = TestCertificate(
            certificate: (directory as NSString).appendingPathComponent("live.crt"),
            privateKey: (directory as NSString).appendingPathComponent("live.key")
        )
        try FileManager.default.copyItem(atPath: first.certificate, toPath: live.certificate)
        try FileManager.default.copyItem(atPath: first.privateKey, toPath: live.privateKey)
        try await TestServer.with(configure: { $0.tls = live.files }) { server async throws in
            // A name, not 127.0.0.1: the Swift client sends the host as SNI, which cannot be an IP address.
            let url = "wss://localhost:\(server.port)/v1/ws"
            func connects(trusting ca: String) async -> Bool {
                (try? await TestClient.with(url: url, caFile: ca) { client async throws in
                    try await client.request(#"{"type":"hello"}"#).type == "welcome"
                }) ?? false
            }
            #expect(await connects(trusting: first.certificate))
            let second = try TestCertificate.make(in: directory, name: "second")
            // A certificate with another certificate's key is refused, and the first stays.
            try FileManager.default.removeItem(atPath: live.certificate)
            try FileManager.default.copyItem(atPath: second.certificate, toPath: live.certificate)
            #expect(server.server.reloadCertificate() != nil)
            #expect(await connects(trusting: first.certificate))
            try FileManager.default.removeItem(atPath: live.privateKey)
            try FileManager.default.copyItem(atPath: second.privateKey, toPath: live.privateKey)
            #expect(server.server.reloadCertificate() == nil)
            #expect(await connects(trusting: second.certificate))
            #expect(!(await connects(trusting: first.certificate)))
        }
    }

    @Test("a certificate or key file that cannot be used stops the server with a message naming it")
    func badFiles() async throws {
        let directory = TestServer.makeDataDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let good = try TestCertificate.make(in: directory, name: "good")
        let garbage = (directory as NSString).appendingPathComponent("garbage.pem")
        try Data("not a certificate\n".utf8).write(to: URL(fileURLWithPath: garbage))
        let cases = [
            (ServerTLS.Files(certificate: garbage, privateKey: good.privateKey), "--tls-cert-file"),
            (ServerTLS.Files(certificate: good.certificate, privateKey: garbage), "--tls-key-file"),
            (
                ServerTLS.Files(certificate: good.certificate + ".missing", privateKey: good.privateKey),
                "--tls-cert-file"
            ),
        ]
        for (files, flag) in cases {
            do {
                try await TestServer.with(configure: { $0.tls = files }) { _ in }
                Issue.record("\(files) was accepted")
            } catch let error as ConfigurationError {
                #expect(error.description.hasPrefix(flag), "\(error)")
            }
        }
    }
}
