import Foundation

/// A new empty folder under the system's temporary directory, for one test's database.
func makeTemporaryFolder() -> String {
    let path = FileManager.default.temporaryDirectory.appendingPathComponent("verso-test-\(UUID().uuidString)").path
    try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    return path
}
