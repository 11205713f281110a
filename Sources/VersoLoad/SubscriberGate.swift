import Histogram
import Synchronization

extension Scenarios {
    /// Orders the connections of `fanout`, `connections` and `subflood`: the writers connect
    /// first, the subscribers once every writer is connected, and the writers start once every
    /// subscriber is subscribed (the gate tells the subscribers when that was). It gives up at
    /// once when a connection fails, instead of waiting for one that will never come. Writers
    /// first, so that a server refusing connections past its limit (503) refuses a subscriber,
    /// whose failure ends the run, rather than the writer, whose subscribers would wait forever
    /// for its last change.
    final class SubscriberGate: Sendable {
        let subscribed = Atomic<Int>(0)
        let failed = Atomic<Int>(0)
        let writersFailed = Atomic<Int>(0)
        /// Subscribers started so far: where the next one connects (`LoadOptions.subscriberURL`).
        let nextSubscriber = Atomic<Int>(0)
        /// Which writers (by index) have their connection open.
        private let writerOpen: Mutex<[Bool]>
        let startedAt = Atomic<UInt64>(0)
        let expected: Int
        let writers: Int
        let scenario: String

        init(scenario: String, expected: Int, writers: Int) {
            self.scenario = scenario
            self.expected = expected
            self.writers = writers
            self.writerOpen = Mutex(Array(repeating: false, count: writers))
        }

        /// Counts a delivery whose message was stamped `sent` (monotonic nanoseconds) and arrived
        /// `now`: in the live counters always, and in `stats`, with its latency, once `warmup`
        /// has passed since the writers started.
        func recordDelivery(
            sent: Int64,
            at now: UInt64,
            warmup: UInt64,
            into stats: inout WorkerStats,
            counters: LiveCounters
        ) {
            counters.ops.add(1, ordering: .relaxed)
            guard now >= startedAt.load(ordering: .relaxed) + warmup else { return }
            stats.ops += 1
            stats.latency.record(microseconds(UInt64(sent), now))
        }

        /// Runs writer `index`: connects (options' first URL, compression and token), counts it as
        /// connected, and runs `body` on the connection; a writer that fails to connect counts as
        /// a failed writer.
        func writer<T: Sendable>(
            _ index: Int,
            _ options: LoadOptions,
            _ body: @escaping @Sendable (inout LoadWire) async throws -> T
        ) async throws -> T {
            do {
                return try await LoadConnection.run(
                    url: options.url,
                    compression: options.compression,
                    token: options.token
                ) { wire in
                    self.markConnected(index)
                    return try await body(&wire)
                }
            } catch {
                if !writerOpen.withLock({ $0[index] }) { writersFailed.add(1, ordering: .releasing) }
                throw error
            }
        }

        /// Marks writer `index` as connected.
        private func markConnected(_ index: Int) {
            writerOpen.withLock { $0[index] = true }
        }

        /// Waits (polling every 5 ms, at most `limit` nanoseconds) until every writer is
        /// connected; throws as soon as one failed to connect.
        func waitForWriters(limit: UInt64) async throws {
            let giveUp = monotonicNanos() + limit
            while writerOpen.withLock({ !$0.allSatisfy { $0 } }) {
                let failures = writersFailed.load(ordering: .acquiring)
                guard failures == 0 else {
                    throw LoadError("\(scenario): \(failures) writer connection(s) failed, so the run did not start")
                }
                guard monotonicNanos() < giveUp else {
                    throw LoadError("\(scenario): writers were not connected in time")
                }
                try await Task.sleep(for: .milliseconds(5))
            }
        }

        /// Runs one subscriber once every writer is connected: connects (options'
        /// `subscriberURL`, compression and token) and runs `body` on the connection; counts it as failed if
        /// anything throws.
        func subscriber<T: Sendable>(
            _ options: LoadOptions,
            limit: UInt64,
            _ body: @escaping @Sendable (inout LoadWire) async throws -> T
        ) async throws -> T {
            do {
                try await waitForWriters(limit: limit)
                return try await LoadConnection.run(
                    url: options.subscriberURL(nextSubscriber.wrappingAdd(1, ordering: .relaxed).oldValue),
                    compression: options.compression,
                    token: options.token,
                    body
                )
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
