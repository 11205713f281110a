import Foundation
import NIOCore
import Synchronization
import Testing
import VersoCore
import VersoTesting
import VersoWire

/// A server whose connections to PostgreSQL go through a proxy that cuts the writer's
/// connection at its `COMMIT`: the write is answered once, as what PostgreSQL holds.
@Suite(.serialized, .enabled(if: PostgresCluster.isAvailable, "needs PostgreSQL 15 (apt install postgresql-15)"))
struct CommitCutTests {
    /// Where the proxy cuts the connection that sends the next `COMMIT`.
    enum Cut: String, Sendable, CustomTestStringConvertible {
        /// `COMMIT` never reaches PostgreSQL: the transaction is rolled back.
        case commitLost
        /// `COMMIT` reaches PostgreSQL, which commits; its answer is lost.
        case answerLost
        /// `COMMIT` reaches PostgreSQL, which commits; the server is told instead that its
        /// session was ended (a `FATAL` error, as `pg_terminate_backend` sends).
        case answerFatal
        /// `COMMIT` never reaches PostgreSQL and the connection stays open: the transaction
        /// (and the cluster's commit lock) stays open until PostgreSQL ends it.
        case commitMuted

        var testDescription: String { rawValue }
    }

    /// Cuts the first connection that sends a `COMMIT` (a PostgreSQL Parse message whose query
    /// is `COMMIT`) after it is armed; relays everything else.
    final class CommitCutter: RelayInspector {
        private struct State {
            var armed: Cut?
            var cuts = 0
        }

        private let state = Mutex(State())

        func arm(_ cut: Cut) { state.withLock { $0.armed = cut } }
        var cuts: Int { state.withLock { $0.cuts } }

        func accepted() {}

        func action(for bytes: ByteBuffer, toServer: Bool) -> RelayAction {
            guard toServer else { return .relay }
            return state.withLock { state in
                guard let cut = state.armed, Self.holdsCommit(bytes) else { return .relay }
                state.armed = nil
                state.cuts += 1
                switch cut {
                case .commitLost: return .cut
                case .answerLost: return .cutAfter(count: bytes.readableBytes)
                case .answerFatal: return .answerAndCut(reply: Self.fatalError)
                case .commitMuted: return .drop
                }
            }
        }

        /// A PostgreSQL ErrorResponse of severity FATAL, as a backend ended by an administrator sends.
        static let fatalError: ByteBuffer = {
            let fields: [(UInt8, String)] = [
                (UInt8(ascii: "S"), "FATAL"), (UInt8(ascii: "V"), "FATAL"), (UInt8(ascii: "C"), "57P01"),
                (UInt8(ascii: "M"), "terminating connection due to administrator command"),
            ]
            var body: [UInt8] = []
            for (code, text) in fields { body += [code] + Array(text.utf8) + [0] }
            body.append(0)
            var buffer = ByteBuffer()
            buffer.writeInteger(UInt8(ascii: "E"))
            buffer.writeInteger(Int32(4 + body.count))
            buffer.writeBytes(body)
            return buffer
        }()

        /// Whether `bytes` hold a Parse message ('P', length, statement name, query) of `COMMIT`.
        static func holdsCommit(_ bytes: ByteBuffer) -> Bool {
            let data = Array(bytes.readableBytesView)
            let commit = Array("\0COMMIT\0".utf8)
            var index = 0
            while index + 5 <= data.count {
                let length = data[index + 1..<index + 5].reduce(0) { $0 << 8 | Int($1) }
                guard length >= 4 else { return false }
                let end = min(data.count, index + 1 + length)
                if data[index] == UInt8(ascii: "P"), data[index + 5..<end].firstRange(of: commit) != nil { return true }
                index += 1 + length
            }
            return false
        }
    }

    /// A cluster and a server whose connections to it go through a `CommitCutter`'s proxy;
    /// `body` gets them and the server's data folder. Everything is stopped and removed afterwards.
    static func withCutServer(
        _ body: (PostgresCluster, CommitCutter, ServerProcess, String) async throws -> Void
    ) async throws {
        let cluster = try await PostgresCluster.start()
        let directory = TestServer.makeDataDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let cutter = CommitCutter()
        do {
            try await RelayProxy.with(to: cluster.port, inspector: cutter) { port in
                let server = try await ServerProcess.start(
                    dataDirectory: directory,
                    arguments: ["--store", "postgres://postgres@127.0.0.1:\(port)/verso"]
                )
                defer { server.send(signal: SIGKILL) }
                try await body(cluster, cutter, server, directory)
            }
        } catch {
            await cluster.remove()
            throw error
        }
        await cluster.remove()
    }

    @Test(
        "the writer's connection to PostgreSQL is cut at COMMIT: the put is acknowledged once, as committed once, and a put on the same base then conflicts",
        arguments: [Cut.commitLost, .answerLost, .answerFatal]
    )
    func commitCut(_ cut: Cut) async throws {
        try await Self.withCutServer { cluster, cutter, server, _ in
            try await WireConnection.with(url: server.url) { connection in
                let first = try await connection.request(
                    #"{"type":"put","rid":1,"key":"cut/a","base":0,"data":{"n":1}}"#
                )
                #expect(first["type"]?.stringValue == "ack", "\(first)")
                cutter.arm(cut)
                try await connection.send(#"{"type":"put","rid":2,"key":"cut/a","base":1,"data":{"n":2}}"#)
                let reply = try await connection.next(timeout: .seconds(30))
                #expect(reply["type"]?.stringValue == "ack", "\(reply)")
                #expect(reply["version"]?.integerValue == 2)
                #expect(cutter.cuts == 1, "the proxy cut a COMMIT")
                let again = try await connection.request(
                    #"{"type":"put","rid":3,"key":"cut/a","base":1,"data":{"n":3}}"#
                )
                #expect(again["type"]?.stringValue == "conflict", "\(again)")
                #expect(again["version"]?.integerValue == 2)
            }
            #expect(
                try await cluster.psql("SELECT version, data FROM verso_records WHERE key = 'cut/a'")
                    == #"2|{"n":2}"#
            )
            #expect(
                try await cluster.psql("SELECT string_agg(version::text, ',' ORDER BY seq) FROM verso_changes")
                    == "1,2"
            )
            #expect(
                try await cluster.psql("SELECT last_seq FROM verso_meta") == "2",
                "no seq taken twice or skipped"
            )
            // How the server learnt the outcome: from pg_xact_status, on a new connection.
            switch cut {
            case .commitLost:
                #expect(server.log.contains("a batch did not commit; deciding it again"), "\(server.log)")
            case .answerLost, .answerFatal:
                // Committed, unless the server asked while the old backend had not yet run the
                // COMMIT (then it ends it, and decides the batch again): either way, asked.
                #expect(
                    server.log.contains("the transaction committed")
                        || server.log.contains("a batch did not commit; deciding it again"),
                    "\(server.log)"
                )
            case .commitMuted:
                break
            }
        }
    }

    @Test(
        "a server whose COMMIT never arrives holds the cluster's commit lock only until PostgreSQL ends its idle transaction (5 s): another server's write then goes through, and the stuck write is tried again and acknowledged once"
    )
    func commitNeverArrives() async throws {
        try await Self.withCutServer { cluster, cutter, stuck, directory in
            let other = try await ServerProcess.start(
                dataDirectory: directory,
                arguments: ["--store", cluster.url]
            )
            defer { other.send(signal: SIGKILL) }
            try await WireConnection.with(url: stuck.url) { connection in
                let first = try await connection.request(
                    #"{"type":"put","rid":1,"key":"cut/a","base":0,"data":{"n":1}}"#
                )
                #expect(first["type"]?.stringValue == "ack", "\(first)")
                cutter.arm(.commitMuted)
                try await connection.send(#"{"type":"put","rid":2,"key":"cut/a","base":1,"data":{"n":2}}"#)
                let deadline = ContinuousClock.now + .seconds(10)
                while cutter.cuts == 0, ContinuousClock.now < deadline {
                    try await Task.sleep(for: .milliseconds(20))
                }
                #expect(cutter.cuts == 1, "the proxy dropped a COMMIT")
                // The stuck transaction holds the commit lock: the other server's write waits
                // for PostgreSQL to end it, then commits.
                try await WireConnection.with(url: other.url) { writer in
                    try await writer.send(#"{"type":"put","rid":1,"key":"cut/b","base":0,"data":{"n":1}}"#)
                    let reply = try await writer.next(timeout: .seconds(20))
                    #expect(reply["type"]?.stringValue == "ack", "\(reply)")
                }
                let reply = try await connection.next(timeout: .seconds(30))
                #expect(reply["type"]?.stringValue == "ack", "\(reply)")
                #expect(reply["version"]?.integerValue == 2)
            }
            #expect(
                try await cluster.psql("SELECT version, data FROM verso_records WHERE key = 'cut/a'")
                    == #"2|{"n":2}"#
            )
            #expect(
                try await cluster.psql(
                    "SELECT string_agg(key || '@' || version, ',' ORDER BY seq) FROM verso_changes"
                ) == "cut/a@1,cut/b@1,cut/a@2"
            )
            #expect(stuck.log.contains("a batch did not commit; deciding it again"), "\(stuck.log)")
        }
    }
}
