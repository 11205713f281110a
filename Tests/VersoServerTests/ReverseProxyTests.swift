import Foundation
import Testing
import VersoClient
import VersoCore
import VersoServer
import VersoTesting
import VersoWire

/// The repository's root, from this file's path.
private let repositoryRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent().path

@Suite("Behind nginx: deploy/verso-nginx.conf terminates TLS and passes WebSocket upgrades (docs/deployment.md)")
struct ReverseProxyTests {
    @Test(
        "through a real nginx running the shipped configuration, clients connect over wss://, compressed or not, write, and see each other's updates and presence live"
    )
    func throughNginx() async throws {
        let nginx = ["/usr/sbin/nginx", "/usr/bin/nginx"].first { FileManager.default.isExecutableFile(atPath: $0) }
        let binary = try #require(nginx, "nginx is needed for this test (apt-get install nginx-light)")
        let directory = TestServer.makeDataDirectory()
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let certificate = try TestCertificate.make(in: directory, name: "proxy")
        try await TestServer.with { server in
            let port = try TestServer.reservablePort()
            let shipped = try String(
                contentsOfFile: (repositoryRoot as NSString).appendingPathComponent("deploy/verso-nginx.conf"),
                encoding: .utf8
            )
            // The three values the file says to change, and nothing else.
            let site =
                shipped
                .replacingOccurrences(of: "server 127.0.0.1:7070;", with: "server 127.0.0.1:\(server.port);")
                .replacingOccurrences(of: "listen 443 ssl;", with: "listen 127.0.0.1:\(port) ssl;")
                .replacingOccurrences(of: "/etc/ssl/verso/fullchain.pem", with: certificate.certificate)
                .replacingOccurrences(of: "/etc/ssl/verso/privkey.pem", with: certificate.privateKey)
            try #require(site.contains("127.0.0.1:\(server.port)") && site.contains(certificate.privateKey))
            let sitePath = (directory as NSString).appendingPathComponent("verso.conf")
            try site.write(toFile: sitePath, atomically: true, encoding: .utf8)
            // The main configuration nginx's package would have, in the test's folder.
            let main = """
                \(getuid() == 0 ? "user root;" : "")
                worker_processes 1;
                pid \(directory)/nginx.pid;
                error_log \(directory)/error.log warn;
                events { worker_connections 256; }
                http {
                    access_log off;
                    client_body_temp_path \(directory)/body;
                    proxy_temp_path \(directory)/proxy;
                    fastcgi_temp_path \(directory)/fastcgi;
                    uwsgi_temp_path \(directory)/uwsgi;
                    scgi_temp_path \(directory)/scgi;
                    include \(sitePath);
                }
                """
            let mainPath = (directory as NSString).appendingPathComponent("nginx.conf")
            try main.write(toFile: mainPath, atomically: true, encoding: .utf8)
            let log = Locked("")
            let proxy = try ChildProcess.start(binary, ["-p", directory, "-c", mainPath, "-g", "daemon off;"]) {
                chunk in log.withLock { $0 += String(decoding: chunk, as: UTF8.self) }
            }
            defer { kill(proxy.pid, SIGKILL) }
            // A name, not 127.0.0.1: the Swift client sends the host as SNI.
            let url = "wss://localhost:\(port)/v1/ws"
            try await waitUntilConnects(url, caFile: certificate.certificate, log: log, directory: directory)

            for compression in [true, false] {
                let key = uniqueKey("proxied")
                try await TestClient.with(url: url, compression: compression, caFile: certificate.certificate) {
                    watcher async throws in
                    let subscribed = try await watcher.request(#"{"type":"subscribe","keys":["\#(key)"]}"#)
                    #expect(subscribed.type == "subscribed", "\(subscribed.encodedString)")
                    try await TestClient.with(url: url, compression: compression, caFile: certificate.certificate) {
                        writer async throws in
                        #expect(try await put(writer, key, base: 0, #"{"via":"nginx"}"#) == 1)
                    }
                    let update = try await watcher.next()
                    #expect(
                        update.type == "update" && update["data"]?["via"]?.str == "nginx",
                        "\(update.encodedString)"
                    )
                }
            }
            // The typed client, with presence, through the proxy.
            let key = uniqueKey("presence")
            var configuration = VersoClientConfiguration(url: url, reconnect: false, clientName: "via-nginx")
            configuration.caFile = certificate.certificate
            try await TestClient.with(url: url, caFile: certificate.certificate) { watcher async throws in
                _ = try await watcher.request(#"{"type":"subscribe","keys":["\#(key)"]}"#)
                try await VersoClient.with(configuration) { client in
                    _ = try await client.setPresence(key, state: ["field": .string("title")])
                    let presence = try await watcher.next()
                    #expect(presence.type == "presence" && presence["client"]?.str == "via-nginx")
                    guard case .ack(let version, _, _, _) = try await client.put(key, base: 0, data: [:]) else {
                        Issue.record("the put through nginx was not acknowledged")
                        return
                    }
                    #expect(version == 1)
                }
            }
        }
    }

    /// Waits (10 s at most) until a WebSocket through the proxy answers `hello`.
    private func waitUntilConnects(_ url: String, caFile: String, log: Locked<String>, directory: String) async throws {
        let deadline = ContinuousClock.now + .seconds(10)
        while true {
            let answered = try? await TestClient.with(url: url, caFile: caFile) { client in
                try await client.request(#"{"type":"hello"}"#).type == "welcome"
            }
            if answered == true { return }
            guard ContinuousClock.now < deadline else {
                let errors = (try? String(contentsOfFile: "\(directory)/error.log", encoding: .utf8)) ?? ""
                throw TestFailure("no WebSocket through nginx within 10 s: \(log.withLock { $0 }) \(errors)")
            }
            try await Task.sleep(for: .milliseconds(100))
        }
    }
}
