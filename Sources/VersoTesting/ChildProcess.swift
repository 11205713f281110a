import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// Runs a short-lived child process with posix_spawn and reaps it with waitpid on a thread of
/// its own, for tests that run command-line programs. (Not a Dispatch thread: the global queue
/// has as many threads as cores, and one blocked in waitpid starves everything else queued on
/// it, such as Foundation's own file-handle callbacks.)
///
/// Not Foundation's `Process`: on Linux its `run()` sometimes crashes the whole test process
/// (swift-corelibs-foundation #5472, an over-read of `/proc/self/fd` entries, seen here with
/// Swift 6.3.1), its `waitUntilExit()` keeps a core busy, and it was seen never to notice the
/// exit of a `tmux new-session` (which forks the tmux server).
public enum ChildProcess {
    /// Runs `executable` (a path, or a name looked up in `PATH`) with `arguments`, standard input
    /// from the file at `input` (or /dev/null), standard output to `output` and standard error
    /// to `errors` (or with the output), and every other descriptor closed; returns its exit
    /// status (-1 when it could not start or ended by a signal). `environment` replaces the
    /// test's when given.
    public static func run(
        _ executable: String,
        _ arguments: [String],
        environment: [String: String]? = nil,
        input: String? = nil,
        output: String,
        errors: String? = nil
    ) async -> Int32 {
        await withCheckedContinuation { (continuation: CheckedContinuation<Int32, Never>) in
            Thread.detachNewThread {
                continuation.resume(
                    returning: spawnAndWait(
                        executable,
                        arguments,
                        environment: environment,
                        input: input,
                        output: output,
                        errors: errors
                    )
                )
            }
        }
    }

    private static func spawnAndWait(
        _ executable: String,
        _ arguments: [String],
        environment: [String: String]?,
        input: String?,
        output: String,
        errors: String?
    ) -> Int32 {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, input ?? "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, output, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        if let errors {
            posix_spawn_file_actions_addopen(&actions, 2, errors, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        } else {
            posix_spawn_file_actions_adddup2(&actions, 1, 2)
        }
        // Everything else stays behind: a child that outlives this call (the tmux server) must
        // not keep another test's listening socket bound. (glibc has this since 2.34; Swift
        // does not see its declaration, so it is looked up.)
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
        guard started == 0 else { return -1 }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 {
            if errno != EINTR { return 0 }  // already reaped elsewhere: it ran to the end
        }
        return (status & 0x7F) == 0 ? (status >> 8) & 0xFF : -1
    }
}
