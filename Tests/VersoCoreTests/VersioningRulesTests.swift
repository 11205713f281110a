import Testing
import VersoCore

@Suite("Versioning rules")
struct VersioningRulesTests {
    static let live = RecordState(version: 3, data: ["a": .number("1")])
    static let tombstone = RecordState(version: 4, data: nil)
    static let states: [RecordState?] = [nil, live, tombstone]
    static let actions: [WriteAction] = [
        .put(["b": .number("2")]), .putEncoded(CanonicalObject(["b": .number("2")])), .patch(["b": .number("2")]),
        .delete, .check,
    ]

    @Test("a write is accepted if and only if base equals the current version, and then takes version current+1")
    func exhaustive() {
        for current in Self.states {
            for base in Int64(0)...5 {
                for action in Self.actions {
                    let operation = WriteOperation(key: "k", action: action, precondition: .base(base))
                    let decision = VersioningRules.decide(operation, current: current)
                    let currentVersion = current?.version ?? 0
                    if base != currentVersion {
                        #expect(decision == .conflict(current: current))
                        continue
                    }
                    switch action {
                    case .check:
                        #expect(decision == .unchanged)
                    case .delete:
                        if current == nil || current!.isDeleted {
                            #expect(decision == .notFound(current: current))
                        } else {
                            #expect(decision == .accept(RecordState(version: currentVersion + 1, data: nil)))
                        }
                    case .put(let data):
                        #expect(decision == .accept(RecordState(version: currentVersion + 1, data: data)))
                    case .putEncoded(let data):
                        // Held as it came: nothing parsed.
                        #expect(decision.newState?.encoded == data && decision.newState?.parsedData == nil)
                        #expect(
                            decision == .accept(RecordState(version: currentVersion + 1, data: ["b": .number("2")]))
                        )
                    case .patch:
                        var expected = current?.data ?? [:]
                        expected["b"] = .number("2")
                        #expect(decision == .accept(RecordState(version: currentVersion + 1, data: expected)))
                    }
                }
            }
        }
    }

    @Test("a forced write takes version current+1 whatever the state")
    func forced() {
        for current in Self.states {
            let decision = VersioningRules.decide(
                WriteOperation(key: "k", action: .put([:]), precondition: .force),
                current: current
            )
            #expect(decision == .accept(RecordState(version: (current?.version ?? 0) + 1, data: [:])))
        }
        let delete = VersioningRules.decide(
            WriteOperation(key: "k", action: .delete, precondition: .force),
            current: Self.tombstone
        )
        #expect(delete == .notFound(current: Self.tombstone))
    }

    @Test("writing a deleted key with its tombstone version as base continues the count")
    func recreate() {
        let decision = VersioningRules.decide(
            WriteOperation(key: "k", action: .put([:]), precondition: .base(4)),
            current: Self.tombstone
        )
        #expect(decision == .accept(RecordState(version: 5, data: [:])))
    }
}
