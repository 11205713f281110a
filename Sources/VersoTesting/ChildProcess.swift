import Foundation
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// Child processes for tests: started with posix_spawn, every descriptor but 0–2 closed in the
/// child, and reaped with waitpid on a thread of their own.
///
/// Not Foundation's `Process`: on Linux its `run()` sometimes crashes the whole test process
/// (swift-corelibs-foundation #5472, an over-read of `/proc/self/fd` entries, seen here with
/// Swift 6.3.1), its `waitUntilExit()` keeps a core busy, and it was seen never to notice the
/// exit of a `tmux new-session` (which forks the tmux server). Not Dispatch's global queue
/// either: it has as many threads as cores, and one blocked in waitpid starves the rest.
public enum ChildProcess {
    /// How a child ended.
    public enum Ending: Sendable, Equatable {
        /// It exited with this status.
        case exited(Int32)
        /// A signal ended it.
        case signaled(Int32)
    }

    /// A started child, reaped by a thread of its own as soon as it ends.
    public final class Running: Sendable {
        private struct State {
            var ending: Ending?
            var waiters: [CheckedContinuation<Ending, Never>] = []
        }

        /// The process id.
        public let pid: pid_t
        private let state = Mutex(State())

        fileprivate init(pid: pid_t) {
            self.pid = pid
            Thread.detachNewThread { [self] in
                var status: Int32 = 0
                var reaped = true
                while waitpid(pid, &status, 0) < 0 {
                    if errno != EINTR {
                        reaped = false  // already reaped elsewhere: it ran to its end
                        break
                    }
                }
                let ending: Ending =
                    reaped && status & 0x7F != 0 ? .signaled(status & 0x7F) : .exited(reaped ? (status >> 8) & 0xFF : 0)
                let waiters = state.withLock { state -> [CheckedContinuation<Ending, Never>] in
                    state.ending = ending
                    defer { state.waiters = [] }
                    return state.waiters
                }
                for waiter in waiters { waiter.resume(returning: ending) }
            }
        }

        /// How it ended, once it has; nil while it runs.
        public var ending: Ending? { state.withLock { $0.ending } }

        /// Returns once the child has ended, saying how.
        public func wait() async -> Ending {
            await withCheckedContinuation { (continuation: CheckedContinuation<Ending, Never>) in
                let ending = state.withLock { state -> Ending? in
                    if state.ending == nil { state.waiters.append(continuation) }
                    return state.ending
                }
                if let ending { continuation.resume(returning: ending) }
            }
        }
    }

    /// Runs `executable` (a path, or a name looked up in `PATH`) with `arguments` to its end:
    /// standard input from the file at `input` (or /dev/null), standard output to `output`,
    /// standard error to `errors` (or with the output). `environment` replaces the test's when
    /// given. Returns its exit status (-1 when it could not start or a signal ended it).
    public static func run(
        _ executable: String,
        _ arguments: [String],
        environment: [String: String]? = nil,
        input: String? = nil,
        output: String,
        errors: String? = nil
    ) async -> Int32 {
        let running = try? spawn(executable, arguments, environment: environment) { actions in
            posix_spawn_file_actions_addopen(&actions, 0, input ?? "/dev/null", O_RDONLY, 0)
            posix_spawn_file_actions_addopen(&actions, 1, output, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
            if let errors {
                posix_spawn_file_actions_addopen(&actions, 2, errors, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
            } else {
                posix_spawn_file_actions_adddup2(&actions, 1, 2)
            }
        }
        guard let running, case .exited(let status) = await running.wait() else { return -1 }
        return status
    }

    /// Starts `executable` with `arguments` (and `environment` in place of the test's, when
    /// given), standard input and output on /dev/null; what it writes to standard error goes to
    /// `errors`, called on a thread of its own with each chunk read and an empty one at the end.
    public static func start(
        _ executable: String,
        _ arguments: [String],
        environment: [String: String]? = nil,
        errors: @escaping @Sendable ([UInt8]) -> Void
    ) throws -> Running {
        var pipeEnds: [Int32] = [0, 0]
        guard pipe(&pipeEnds) == 0 else { throw TestFailure("pipe failed: errno \(errno)") }
        // Neither end leaks into a child another thread starts meanwhile (the child started
        // here gets the write end as its descriptor 2, which dup2 leaves open across exec).
        for end in pipeEnds { _ = fcntl(end, F_SETFD, FD_CLOEXEC) }
        let running: Running
        do {
            running = try spawn(executable, arguments, environment: environment) { actions in
                posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
                posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
                posix_spawn_file_actions_adddup2(&actions, pipeEnds[1], 2)
            }
            close(pipeEnds[1])
        } catch {
            close(pipeEnds[0])
            close(pipeEnds[1])
            throw error
        }
        let readEnd = pipeEnds[0]
        Thread.detachNewThread {
            var buffer = [UInt8](repeating: 0, count: 4096)
            while true {
                let count = buffer.withUnsafeMutableBytes { read(readEnd, $0.baseAddress, $0.count) }
                if count < 0, errno == EINTR { continue }
                guard count > 0 else { break }
                errors(Array(buffer[..<count]))
            }
            close(readEnd)
            errors([])
        }
        return running
    }

    /// posix_spawn with the file actions `redirect` adds for descriptors 0–2, and every other
    /// descriptor closed in the child: one that outlives its test (the tmux server) must not
    /// keep another test's listening socket bound.
    private static func spawn(
        _ executable: String,
        _ arguments: [String],
        environment: [String: String]?,
        redirect: (inout posix_spawn_file_actions_t) -> Void
    ) throws -> Running {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        redirect(&actions)
        // glibc has this since 2.34; Swift does not see its declaration, so it is looked up.
        typealias CloseFrom = @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32
        if let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "posix_spawn_file_actions_addclosefrom_np") {
            _ = unsafeBitCast(symbol, to: CloseFrom.self)(&actions, 3)
        }
        var cArguments: [UnsafeMutablePointer<CChar>?] = ([executable] + arguments).map { strdup($0) } + [nil]
        defer { for pointer in cArguments { free(pointer) } }
        var pid: pid_t = 0
        let started: Int32
        if let environment {
            var cEnvironment: [UnsafeMutablePointer<CChar>?] =
                environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
            defer { for pointer in cEnvironment { free(pointer) } }
            started = posix_spawnp(&pid, executable, &actions, nil, &cArguments, &cEnvironment)
        } else {
            started = posix_spawnp(&pid, executable, &actions, nil, &cArguments, environ)
        }
        guard started == 0 else { throw TestFailure("could not start \(executable): error \(started)") }
        return Running(pid: pid)
    }
}
