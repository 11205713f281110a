import ArgumentParser

@main
struct VersoCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "verso", abstract: "Verso terminal client.")
}
