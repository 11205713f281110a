import Synchronization

extension Scenarios {
    /// Lets the writers of `fanout` and `connections` start once every subscriber is
    /// subscribed, tells the subscribers when that was, and gives up at once when a subscriber
    /// fails (instead of waiting for one that will never come).
    final class SubscriberGate: Sendable {
        let subscribed = Atomic<Int>(0)
        let failed = Atomic<Int>(0)
        let startedAt = Atomic<UInt64>(0)
        let expected: Int
        let scenario: String

        init(scenario: String, expected: Int) {
            self.scenario = scenario
            self.expected = expected
        }

        /// Runs one subscriber, counting it as failed if it throws.
        func subscriber<T>(_ body: () async throws -> T) async throws -> T {
            do {
                return try await body()
            } catch {
                failed.add(1, ordering: .releasing)
                throw error
            }
        }

        /// Counts one subscriber as subscribed. Returns false if the run was already given up,
        /// and the subscriber should end at once; otherwise the writers' last change will reach
        /// it (they look at `failed` only after this subscription was confirmed).
        func markSubscribed() -> Bool {
            subscribed.add(1, ordering: .releasing)
            return failed.load(ordering: .acquiring) == 0
        }

        /// Waits (polling every 5 ms, at most `limit` nanoseconds) until every subscriber is
        /// ready; returns the common start time. Throws as soon as a subscriber failed.
        func waitForSubscribers(limit: UInt64) async throws -> UInt64 {
            let giveUp = monotonicNanos() + limit
            while subscribed.load(ordering: .acquiring) < expected {
                let failures = failed.load(ordering: .acquiring)
                guard failures == 0 else {
                    throw LoadError(
                        "\(scenario): \(failures) subscriber connection(s) failed, so the run did not start"
                    )
                }
                guard monotonicNanos() < giveUp else {
                    throw LoadError("\(scenario): subscribers were not ready in time")
                }
                try await Task.sleep(for: .milliseconds(5))
            }
            _ = startedAt.compareExchange(expected: 0, desired: monotonicNanos(), ordering: .acquiringAndReleasing)
            return startedAt.load(ordering: .acquiring)
        }
    }
}
