/// Holds tasks back until `count` of them have arrived, then lets them all go at once, so
/// concurrent requests really do overlap.
actor StartGate {
    private let count: Int
    private var arrived = 0
    private var waiting: [CheckedContinuation<Void, Never>] = []

    init(count: Int) {
        self.count = count
    }

    /// Counts this task in and waits until `count` tasks have; returns at once after that.
    /// A task that fails before it could take part arrives too, so the others are not held.
    func arrive() async {
        arrived += 1
        if arrived >= count {
            let released = waiting
            waiting = []
            for continuation in released { continuation.resume() }
            return
        }
        await withCheckedContinuation { waiting.append($0) }
    }
}
