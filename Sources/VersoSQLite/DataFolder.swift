import Foundation
#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// The data folder and the database file, made private to the user the server runs as: the
/// records may hold anything, so other local users must not read them.
enum DataFolder {
    /// Creates the folder (mode 0700) if it is missing, and the database file (0600) if it is
    /// missing, before SQLite opens it: SQLite gives the `-wal` and `-shm` files the database
    /// file's mode, so they are 0600 too. An existing folder or file keeps its mode.
    ///
    /// Returns a warning when an existing folder is open to other users.
    static func prepare(directory: String, databasePath: String) throws -> String? {
        var warning: String?
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: directory, isDirectory: &isDirectory) {
            guard isDirectory.boolValue else {
                throw SQLiteStoreError(
                    "\(directory) is not a folder: give --data a folder (it is created when missing)"
                )
            }
            var info = stat()
            if stat(directory, &info) == 0, info.st_mode & 0o077 != 0 {
                let mode = String(info.st_mode & 0o777, radix: 8)
                warning =
                    "the data folder \(directory) is open to other users (mode \(mode)); `chmod 700 \(directory)` makes it private"
            }
        } else {
            let parent = (directory as NSString).deletingLastPathComponent
            if !parent.isEmpty {
                try FileManager.default.createDirectory(atPath: parent, withIntermediateDirectories: true)
            }
            guard mkdir(directory, 0o700) == 0 || errno == EEXIST else {
                throw SQLiteStoreError(
                    "cannot create the data folder \(directory): \(String(cString: strerror(errno)))"
                )
            }
        }
        let descriptor = open(databasePath, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard descriptor >= 0 else {
            throw SQLiteStoreError("cannot open \(databasePath): \(String(cString: strerror(errno)))")
        }
        close(descriptor)
        return warning
    }
}
