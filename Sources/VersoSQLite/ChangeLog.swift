import VersoCore

/// How the change log's rows are keyed: one integer per change, `seq * placesPerSeq + place`,
/// where `place` is the change's place among its seq's keys in bytewise order (SQLite's
/// `BINARY` collation). The ids follow (seq, key) order, so the log needs no index of its own:
/// a seq, or every seq after or up to one, is a range of ids, and pruning deletes the front of
/// the table.
enum ChangeLog {
    /// More than the most keys one seq can change (a txn of `RequestLimits.maxTxnOps`).
    static let placesPerSeq: Int64 = 1024

    static func id(seq: Int64, place: Int) -> Int64 {
        seq * placesPerSeq + Int64(place)
    }

    /// For each of `keys` (one seq's, distinct as bytes), its place among them in bytewise order.
    static func places(of keys: [String]) -> [Int] {
        var places = [Int](repeating: 0, count: keys.count)
        let order = keys.indices.sorted { BytewiseString(keys[$0]) < BytewiseString(keys[$1]) }
        for (place, index) in order.enumerated() { places[index] = place }
        return places
    }

    /// SQL: the change's seq is parameter `number`.
    static func seqIs(_ number: Int) -> String {
        "id BETWEEN ?\(number) * \(placesPerSeq) AND ?\(number) * \(placesPerSeq) + \(placesPerSeq - 1)"
    }

    /// SQL: the change's seq is after parameter `number`.
    static func seqAfter(_ number: Int) -> String {
        "id >= (?\(number) + 1) * \(placesPerSeq)"
    }

    /// SQL: the change's seq is at most parameter `number`; `table` qualifies the column.
    static func seqAtMost(_ number: Int, table: String? = nil) -> String {
        "\(table.map { "\($0)." } ?? "")id < (?\(number) + 1) * \(placesPerSeq)"
    }
}
