/// Stops the process when an invariant of the code under test does not hold.
///
/// libFuzzer treats the crash like any other: it prints the message, saves the input as
/// `crash-<sha1>` and exits non-zero, so `run.sh` (and CI) fail and the input can be replayed.
public func invariant(
    _ condition: @autoclosure () -> Bool,
    _ message: @autoclosure () -> String,
    file: StaticString = #fileID,
    line: UInt = #line
) {
    if !condition() {
        fatalError("invariant broken: \(message())", file: file, line: line)
    }
}

/// The fuzzer's input as a buffer of bytes.
public func fuzzInput(_ start: UnsafeRawPointer, _ count: Int) -> UnsafeBufferPointer<UInt8> {
    UnsafeBufferPointer(start: start.assumingMemoryBound(to: UInt8.self), count: count)
}
