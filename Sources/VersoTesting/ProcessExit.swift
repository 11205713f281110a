import Foundation
import Synchronization

/// Waits for a child process to exit without holding a thread: Foundation's
/// `Process.waitUntilExit()` on Linux polls its run loop, keeping a core busy for as long as
/// it waits, which starves every other test on a small machine.
public final class ProcessExit: Sendable {
    private struct State {
        var exited = false
        var waiters: [CheckedContinuation<Void, Never>] = []
    }

    private let state = Mutex(State())

    /// Watches `process`; call before `process.run()` (it sets the termination handler).
    public init(watching process: Process) {
        process.terminationHandler = { [self] _ in finish() }
    }

    /// Returns once the process has exited.
    public func wait() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let exited = state.withLock { state -> Bool in
                if !state.exited { state.waiters.append(continuation) }
                return state.exited
            }
            if exited { continuation.resume() }
        }
    }

    private func finish() {
        let waiters = state.withLock { state -> [CheckedContinuation<Void, Never>] in
            state.exited = true
            defer { state.waiters = [] }
            return state.waiters
        }
        for waiter in waiters { waiter.resume() }
    }
}
