import Foundation
import Testing
import VersoCore

@Suite("Field-level merge rules")
struct FieldMergeTests {
    /// Every value a member takes in the exhaustive documents (nil: the member is absent).
    static let values: [JSONValue?] = [
        nil, .null, .number("1"), .array([.number("1")]), .object([:]), .object(["x": .number("1")]),
        .object(["x": .number("2"), "y": .null]),
    ]

    /// Every document with members `a` and `b` drawn from `values`.
    static let documents: [JSONObject] = values.flatMap { a in
        values.map { b in
            var object: JSONObject = [:]
            object["a"] = a
            object["b"] = b
            return object
        }
    }

    static func path(_ names: String...) -> FieldPath { FieldPath(names.map { BytewiseString($0) }) }

    /// Runs `body` on a thread of its own: the exhaustive checks take seconds of CPU in a debug
    /// build, which on the cooperative pool (or Dispatch's global queue, as many threads as
    /// cores) would starve the live servers and clients other tests run.
    static func offThePool(_ body: @escaping @Sendable () -> Void) async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            Thread.detachNewThread {
                body()
                continuation.resume()
            }
        }
    }

    @Test("a merged put keeps both sides' changes, and refuses exactly when their paths overlap")
    func exhaustivePuts() async {
        await Self.offThePool { Self.checkPuts() }
    }

    static func checkPuts() {
        for base in Self.documents {
            for theirs in Self.documents {
                let changed = FieldMerge.differences(from: base, to: theirs)
                for mine in Self.documents {
                    let writing = FieldMerge.differences(from: base, to: mine)
                    let overlapping = writing.filter { path in changed.contains { $0.overlaps(path) } }
                    switch FieldMerge.merge(.put(mine), versions: [base, theirs]) {
                    case .refused(let conflict):
                        #expect(!overlapping.isEmpty, "refused without a clash: \(base) \(theirs) \(mine)")
                        #expect(conflict == MergeConflict(reason: .clash, clashes: overlapping, changed: changed))
                    case .merged(let result):
                        #expect(overlapping.isEmpty, "merged across a clash: \(base) \(theirs) \(mine)")
                        for path in writing {
                            #expect(Self.value(result, path) == Self.value(mine, path), "\(path) of mine lost")
                        }
                        for path in changed {
                            #expect(Self.value(result, path) == Self.value(theirs, path), "\(path) of theirs lost")
                        }
                        // Nothing else moves: the result differs from the base only where a side changed it.
                        for path in FieldMerge.differences(from: base, to: result) {
                            #expect((writing + changed).contains { $0.overlaps(path) }, "\(path) changed by no one")
                        }
                        // The same two edits merged the other way round give the same record.
                        #expect(FieldMerge.merge(.put(theirs), versions: [base, mine]) == .merged(result))
                    }
                }
            }
        }
    }

    @Test("a merged patch applies as sent to the current record, and refuses when a path it names moved")
    func exhaustivePatches() async {
        await Self.offThePool { Self.checkPatches() }
    }

    static func checkPatches() {
        let patches: [JSONObject] = Self.documents.filter { $0.count <= 1 }
        for base in Self.documents {
            for theirs in Self.documents {
                let changed = FieldMerge.differences(from: base, to: theirs)
                for patch in patches {
                    let named = FieldMerge.paths(of: patch, on: base)
                    let overlapping = named.filter { path in changed.contains { $0.overlaps(path) } }
                    switch FieldMerge.merge(.patch(patch), versions: [base, theirs]) {
                    case .refused(let conflict):
                        #expect(conflict.clashes == overlapping && !overlapping.isEmpty)
                    case .merged(let result):
                        #expect(overlapping.isEmpty)
                        #expect(JSONValue.object(result) == MergePatch.apply(.object(patch), to: .object(theirs)))
                        // What the patch would have done to the base, it did to the merged record.
                        let intended = MergePatch.apply(.object(patch), to: .object(base)).objectValue!
                        for path in FieldMerge.differences(from: base, to: intended) {
                            #expect(Self.value(result, path) == Self.value(intended, path))
                        }
                    }
                }
            }
        }
    }

    static func value(_ object: JSONObject, _ path: FieldPath) -> JSONValue? {
        var current: JSONValue? = .object(object)
        for name in path.names { current = current?.objectValue?[name] }
        return current
    }

    @Test("paths: nested objects, a value set to null, an object replaced by a scalar, arrays as one value")
    func paths() {
        let base: JSONObject = [
            "title": .string("a"), "meta": .object(["author": .string("ann"), "tags": .array([.string("x")])]),
        ]
        var nested = base
        nested["meta"] = .object(["author": .string("bob"), "tags": .array([.string("x")])])
        #expect(FieldMerge.differences(from: base, to: nested) == [Self.path("meta", "author")])
        var nulled = base
        nulled["title"] = .null
        #expect(FieldMerge.differences(from: base, to: nulled) == [Self.path("title")])
        var scalar = base
        scalar["meta"] = .number("5")
        #expect(FieldMerge.differences(from: base, to: scalar) == [Self.path("meta")])
        var array = base
        array["meta"] = .object(["author": .string("ann"), "tags": .array([.string("x"), .string("y")])])
        #expect(FieldMerge.differences(from: base, to: array) == [Self.path("meta", "tags")])
        #expect(
            FieldMerge.paths(of: ["meta": .object(["author": .null]), "new": .object(["a": .number("1")])], on: base)
                == [Self.path("meta", "author"), Self.path("new")]
        )
        #expect(FieldMerge.paths(of: ["title": .object(["x": .number("1")])], on: base) == [Self.path("title")])
        #expect(Self.path("a", "b").overlaps(Self.path("a")))
        #expect(Self.path("a").overlaps(Self.path("a", "b")))
        #expect(!Self.path("a", "b").overlaps(Self.path("a", "c")))
        #expect(!Self.path("ab").overlaps(Self.path("a")))
    }

    @Test("a field added by both sides clashes, even with the same value")
    func addedByBoth() {
        let base: JSONObject = ["a": .number("1")]
        let theirs: JSONObject = ["a": .number("1"), "b": .number("2")]
        let mine: JSONObject = ["a": .number("1"), "b": .number("2")]
        #expect(
            FieldMerge.merge(.put(mine), versions: [base, theirs])
                == .refused(MergeConflict(reason: .clash, clashes: [Self.path("b")], changed: [Self.path("b")]))
        )
    }

    @Test("a value changed and changed back since the base still counts as changed")
    func changedBack() {
        let base: JSONObject = ["a": .number("1"), "b": .number("1")]
        let middle: JSONObject = ["a": .number("2"), "b": .number("1")]
        let mine: JSONObject = ["a": .number("3"), "b": .number("1")]
        guard case .refused(let conflict) = FieldMerge.merge(.put(mine), versions: [base, middle, base]) else {
            Issue.record("merged across a change that was undone")
            return
        }
        #expect(conflict.clashes == [Self.path("a")])
    }

    @Test("JSON Pointers escape ~ and /, keep other characters as they are, and read back")
    func pointers() {
        #expect(Self.path("a/b", "c~d", "é").pointer == "/a~1b/c~0d/é")
        #expect(FieldPath([]).pointer == "")
        for path in [Self.path("a/b", "c~d", "é"), FieldPath([]), Self.path(""), Self.path("~01", "/", "x")] {
            #expect(FieldPath(pointer: path.pointer) == path, "\(path.pointer)")
        }
        for bad in ["a", "/~", "/~2", "/a~"] { #expect(FieldPath(pointer: bad) == nil, "\(bad)") }
    }

    @Test("decide: merged, or refused saying why (deleted, re-created, history gone, unknown base)")
    func decisions() {
        func state(_ version: Int64, _ n: Int?) -> RecordState {
            RecordState(version: version, data: n.map { ["n": .number(String($0)), "m": .number("0")] })
        }
        let history = [state(2, 1), state(3, 2), state(4, 3)]
        let current = state(4, 3)
        func decide(
            _ base: Int64,
            _ current: RecordState?,
            _ history: [RecordState],
            patch: JSONObject = ["m": .number("9")]
        )
            -> VersionDecision
        {
            VersioningRules.decide(
                WriteOperation(key: "k", action: .patch(patch), precondition: .base(base), merge: .fields),
                current: current,
                history: history
            )
        }
        #expect(
            decide(2, current, history)
                == .merged(RecordState(version: 5, data: ["n": .number("3"), "m": .number("9")]))
        )
        #expect(
            decide(4, current, []) == .accept(RecordState(version: 5, data: ["n": .number("3"), "m": .number("9")]))
        )
        #expect(
            decide(2, current, history, patch: ["n": .number("7")])
                == .mergeRefused(
                    current: current,
                    MergeConflict(reason: .clash, clashes: [Self.path("n")], changed: [Self.path("n")])
                )
        )
        #expect(
            decide(3, current, [state(4, 3)]) == .mergeRefused(current: current, MergeConflict(reason: .historyGone))
        )
        #expect(decide(5, current, history) == .mergeRefused(current: current, MergeConflict(reason: .unknownBase)))
        #expect(decide(1, nil, []) == .mergeRefused(current: nil, MergeConflict(reason: .unknownBase)))
        #expect(decide(0, current, history) == .mergeRefused(current: current, MergeConflict(reason: .recreated)))
        let deleted = state(5, nil)
        #expect(
            decide(2, deleted, history + [deleted]) == .mergeRefused(current: deleted, MergeConflict(reason: .deleted))
        )
        let recreated = [state(2, 1), state(3, nil), state(4, 3)]
        #expect(decide(2, current, recreated) == .mergeRefused(current: current, MergeConflict(reason: .recreated)))
        // A plain write on a stale base stays a plain conflict.
        let plain = WriteOperation(key: "k", action: .patch(["m": .number("9")]), precondition: .base(2))
        #expect(VersioningRules.decide(plain, current: current, history: history) == .conflict(current: current))
    }
}
