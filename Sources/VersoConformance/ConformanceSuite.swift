/// The protocol conformance suite: one case per rule and message of Protocol.md.
///
/// Every case talks to the server over the wire only, creates keys only under the prefix its
/// context gives it, compares seqs only relatively (others may be writing), and so runs
/// against any Verso server, including one that holds other people's data.
public enum ConformanceSuite {
    /// Every case, in the order of Protocol.md's sections.
    public static var cases: [ConformanceCase] {
        let all =
            transport + limits + closing + dataModel + access + requests + writes + merging + transactions + listing
            + forcedWrites + idempotency + batches
            + validation + subscriptions + historyAndPresence + notCheckable
        return all.enumerated().sorted { first, second in
            first.element.section == second.element.section
                ? first.offset < second.offset
                : first.element.section.lexicographicallyPrecedes(second.element.section)
        }.map(\.element)
    }
}

extension ConformanceCase {
    /// The section number the name starts with, as numbers: "3.4 txn: …" is [3, 4].
    var section: [Int] {
        name.prefix { $0 != " " }.split(separator: ".").compactMap { Int($0) }
    }
}
