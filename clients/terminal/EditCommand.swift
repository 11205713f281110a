import ArgumentParser

struct Edit: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Edit the records under a prefix live, in a full-screen table.")
    @OptionGroup var connection: ConnectionOptions
    @Argument(help: "The key prefix to edit.") var prefix: String

    func run() async throws {
        throw CommandFailure(ExitStatus.failure, "not built yet")
    }
}
