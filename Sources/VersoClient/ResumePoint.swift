import VersoCore

/// Where a live subscription resumes after a dropped connection, and which of the updates a
/// resume sends again were delivered already.
///
/// The updates of one txn share a seq and arrive as separate messages, so a connection can drop
/// between them: resuming from that seq would lose the rest. The resume therefore starts at the
/// last seq known complete (`since`): the one before a later seq arrived, or a progress
/// bookmark's. The replay then sends the open seq's updates again, and those delivered before are
/// skipped by key (a txn names each key once; every other change has a seq of its own).
struct ResumePoint: Equatable {
    /// Every matching change up to this seq has been delivered.
    private(set) var since: Int64
    /// The seq of the last updates delivered, while not known complete, and their keys.
    private var open: (seq: Int64, keys: Set<BytewiseString>)?

    /// A subscription whose starting view (its snapshots, or its replay) is at `start`.
    init(start: Int64) {
        since = start
    }

    /// Whether to deliver the update of `key` at `seq`: false for one delivered before (sent
    /// again by a resume's replay).
    mutating func admit(seq: Int64, key: String) -> Bool {
        guard seq > since else { return false }
        if let open {
            if seq == open.seq { return self.open!.keys.insert(BytewiseString(key)).inserted }
            guard seq > open.seq else { return false }
            // A later seq: every update of the open one has come.
            since = open.seq
        }
        open = (seq, [BytewiseString(key)])
        return true
    }

    /// A progress bookmark: every matching change up to `seq` has been delivered.
    mutating func progress(_ seq: Int64) {
        guard seq > since else { return }
        since = seq
        if let open, open.seq <= seq { self.open = nil }
    }

    static func == (lhs: ResumePoint, rhs: ResumePoint) -> Bool {
        lhs.since == rhs.since && lhs.open?.seq == rhs.open?.seq && lhs.open?.keys == rhs.open?.keys
    }
}
