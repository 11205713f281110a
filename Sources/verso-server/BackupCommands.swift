import ArgumentParser
import Foundation
import VersoSQLite

/// `verso-server backup`: a consistent copy of a store, taken while the server runs or not.
struct BackupCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "backup",
        abstract: "Copy the store to a backup file, safely while the server runs.",
        discussion: """
            Example: verso-server backup --data ./verso-data /backups/verso-2026-12-03.sqlite
            The copy is one consistent snapshot (SQLite's VACUUM INTO in a read transaction): every change committed \
            before the backup began is in it, none committed after. The server goes on serving meanwhile. Restore it \
            with verso-server restore.
            """
    )

    @Option(help: "The server's data folder [VERSO_DATA] (default ./verso-data).")
    var data: String?

    @Argument(help: "The backup file to write (it must not exist).")
    var output: String

    func run() throws {
        let directory = data ?? ProcessInfo.processInfo.environment["VERSO_DATA"] ?? "./verso-data"
        try reportingFailure("backup") {
            let summary = try StoreBackup.backup(dataDirectory: directory, to: output)
            print(
                "backed up \(directory) to \(output): \(summary.records) records, last seq \(summary.lastSeq), epoch \(summary.epoch), \(summary.bytes) bytes"
            )
        }
    }
}

/// `verso-server restore`: a new data folder from a backup, with a new epoch.
struct RestoreCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "restore",
        abstract: "Make a new data folder from a backup file.",
        discussion: """
            Example: verso-server restore /backups/verso-2026-12-03.sqlite --data ./verso-restored
            then start the server with --data ./verso-restored. The restored store has a new epoch, so clients \
            that resume a subscription get a reset and fresh snapshots rather than a replay that could miss \
            changes; seqs go on from the backup's last one. Changes made after the backup are not in it.
            """
    )

    @Option(help: "The new data folder: missing or empty.")
    var data: String

    @Argument(help: "The backup file, as verso-server backup wrote it.")
    var backup: String

    func run() throws {
        try reportingFailure("restore") {
            let summary = try StoreBackup.restore(from: backup, into: data)
            print(
                "restored \(backup) into \(data): \(summary.records) records, last seq \(summary.lastSeq), new epoch \(summary.epoch)"
            )
        }
    }
}

/// Runs `body`; a failure is printed on standard error as `verso-server COMMAND: why` and ends
/// the process with status 1.
private func reportingFailure(_ command: String, _ body: () throws -> Void) throws {
    do {
        try body()
    } catch {
        FileHandle.standardError.write(Data("verso-server \(command): \(error)\n".utf8))
        throw ExitCode.failure
    }
}
