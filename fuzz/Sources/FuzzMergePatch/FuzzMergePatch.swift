import FuzzSupport
import VersoCore

// MergePatch.apply (RFC 7396), as a `patch` request applies it to a stored record.
//
// Input: the target document, a NUL byte, the patch document (no NUL: the whole input is a
// patch on a key that does not exist yet). NUL cannot appear in JSON text, so the split is
// unambiguous. Inputs whose halves are not JSON are skipped.
//
// Invariants:
// - a patch that is not an object replaces the target;
// - an object patch gives an object: each `null` member removed, each other member merged
//   recursively into the target's member, every member the patch does not name kept as it was;
// - applying the same patch again changes nothing (merge patches are idempotent);
// - the result encodes and parses back to itself within the nesting limit;
// - through `VersioningRules.decide`, a patch on a live record is accepted with the merged object
//   as the next version's data.

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzMergePatch(_ start: UnsafeRawPointer, _ count: Int) -> CInt {
    let input = fuzzInput(start, count)
    let target: JSONValue?
    let patch: JSONValue
    do throws(JSONParseError) {
        if let nul = input.firstIndex(of: 0) {
            target = try JSONParser.parse(UnsafeBufferPointer(rebasing: input[..<nul]))
            patch = try JSONParser.parse(UnsafeBufferPointer(rebasing: input[(nul + 1)...]))
        } else {
            target = nil
            patch = try JSONParser.parse(input)
        }
    } catch {
        return 0
    }

    let result = MergePatch.apply(patch, to: target)
    checkMerge(patch: patch, target: target, result: result)
    invariant(MergePatch.apply(patch, to: result) == result, "applying the patch twice changed the result")

    let encoded = result.encodedString
    invariant((try? JSONParser.parse(encoded)) == result, "the merged value does not parse back to itself: \(encoded)")

    if case .object(let patchMembers) = patch, case .object(let targetMembers)? = target {
        let current = RecordState(version: 7, data: targetMembers)
        let operation = WriteOperation(key: "k", action: .patch(patchMembers), precondition: .base(7))
        invariant(
            VersioningRules.decide(operation, current: current)
                == .accept(RecordState(version: 8, data: result.objectValue)),
            "a patch on a live record was not accepted with the merged data"
        )
    }
    return 0
}

/// Checks `result` against RFC 7396 section 2, member by member.
private func checkMerge(patch: JSONValue, target: JSONValue?, result: JSONValue) {
    guard let patchMembers = patch.objectValue else {
        invariant(result == patch, "a patch that is not an object did not replace the target")
        return
    }
    guard let resultMembers = result.objectValue else {
        fatalError("invariant broken: an object patch gave a non-object: \(result.encodedString)")
    }
    let targetMembers = target?.objectValue ?? [:]
    for (name, value) in patchMembers {
        if value == .null {
            invariant(resultMembers[name] == nil, "member \(name.string.debugDescription) set to null is still there")
        } else {
            guard let merged = resultMembers[name] else {
                fatalError("invariant broken: patched member \(name.string.debugDescription) is missing")
            }
            checkMerge(patch: value, target: targetMembers[name], result: merged)
        }
    }
    for (name, value) in targetMembers where patchMembers[name] == nil {
        invariant(
            resultMembers[name] == value,
            "member \(name.string.debugDescription) the patch does not name changed"
        )
    }
    for name in resultMembers.keys {
        invariant(
            patchMembers[name] != nil || targetMembers[name] != nil,
            "member \(name.string.debugDescription) came from nowhere"
        )
    }
}
