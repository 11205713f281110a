import Foundation
import Logging
import Testing
import VersoCore
import VersoEngine
@testable import VersoSQLite

@Suite("SQLite store: idempotency keys are kept with their outcome, and pruned after their retention")
struct IdempotencyClaimsTests {
    func claimed(_ key: String, base: Int64) -> WriteCommand {
        let operations = [WriteOperation(key: key, action: .put(["b": .integer(base)]), precondition: .base(base))]
        return WriteCommand(
            operations: operations,
            isTxn: false,
            idempotency: IdempotencyClaim(scope: "", key: "retry-\(key)", operations: operations, shape: .single)
        )
    }

    func withStore(
        at directory: String,
        retention: Duration,
        _ body: (SQLiteStore) async throws -> Void
    ) async throws {
        let configuration = SQLiteStoreConfiguration(directory: directory, idempotencyRetention: retention)
        let store = SQLiteStore(configuration: configuration, logger: Logger(label: "test"))
        _ = try await store.open()
        try await body(store)
        await store.close()
    }

    @Test("a second command with the key is answered from the first, in the same batch too")
    func replayedInOneBatch() async throws {
        let directory = makeTemporaryFolder()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try await withStore(at: directory, retention: .seconds(3600)) { store in
            let outcomes = try await store.commit([claimed("k", base: 0), claimed("k", base: 0)])
            guard case .applied(let seq, _, let versions) = outcomes[0] else {
                Issue.record("\(outcomes)")
                return
            }
            #expect(outcomes[1] == .replayed(.applied(seq: seq, changes: [], versions: versions)))
            #expect(try await store.record("k")?.version == 1)
        }
    }

    @Test("a key past its retention is pruned by the next writer: the same request is decided again")
    func pruned() async throws {
        let directory = makeTemporaryFolder()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try await withStore(at: directory, retention: .seconds(3600)) { store in
            _ = try await store.commit([claimed("k", base: 0)])
            guard case .replayed = try await store.commit([claimed("k", base: 0)])[0] else {
                Issue.record("not kept within its retention")
                return
            }
        }
        try await Task.sleep(for: .milliseconds(20))
        try await withStore(at: directory, retention: .milliseconds(1)) { store in
            // The first commit of a writer prunes; the key is gone, so the stale base conflicts.
            _ = try await store.commit([claimed("other", base: 0)])
            let again = try await store.commit([claimed("k", base: 0)])
            guard case .conflict = again[0] else {
                Issue.record("expected a conflict once the key was pruned, got \(again)")
                return
            }
        }
    }
}
