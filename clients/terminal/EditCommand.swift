import ArgumentParser
import Foundation
import VersoClient
import VersoCore
import VersoEditor

struct Edit: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Edit the records under a prefix live, in a full-screen table.",
        discussion: """
            Arrow keys move; Enter or e edits the field under the cursor; a adds a record; d deletes one; h shows the \
            record's history, where Enter restores the version under the cursor (as a new version); / filters; q quits. \
            Beside each record the editor shows who else has it open and which field they are on or editing (their \
            --name); they see you the same way.
            Every save carries the version you were looking at and asks the server to merge: when someone else saved other \
            fields meanwhile, your field is saved beside their change and the message line says it was merged. When they \
            changed the same field (or deleted the record), a conflict view shows your value beside theirs and lets you \
            keep theirs, reapply yours on top of theirs, or force (when the server allows it). A save sent as the \
            connection drops is sent again once reconnected, and lands once.
            """
    )
    @OptionGroup var connection: ConnectionOptions
    @Argument(help: "The key prefix to edit.") var prefix: String

    func validate() throws {
        if let problem = RecordKey.prefixProblem(with: prefix) { throw ValidationError(problem) }
    }

    func run() async throws {
        try await connection.withClient(reconnect: true) { client in
            let terminal = try Terminal.open()
            defer { terminal.close() }
            try await EditorSession(client: client, terminal: terminal, prefix: prefix).run()
        }
    }
}

/// Connects the pure editor to the terminal and the client: feeds it events, draws it, and
/// carries out its effects.
struct EditorSession {
    let client: VersoClient
    let terminal: Terminal
    let prefix: String

    func run() async throws {
        var state = EditorState(prefix: prefix, server: client.configuration.url)
        let (events, sink) = AsyncStream<EditorEvent>.makeStream()
        let size = terminal.size
        _ = state.handle(.resize(width: size.width, height: size.height))
        _ = state.handle(.serverInfo(allowsForce: client.serverAllowsForce))
        terminal.draw(state.render())
        let client = client
        let terminal = terminal
        let prefix = prefix
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                for await key in terminal.keys() { sink.yield(.key(key)) }
            }
            group.addTask {
                for await _ in terminal.resizes() {
                    let size = terminal.size
                    sink.yield(.resize(width: size.width, height: size.height))
                }
            }
            group.addTask {
                for await connectionState in client.connectionStates {
                    switch connectionState {
                    case .connected:
                        sink.yield(.connection(connected: true, text: "connected"))
                        sink.yield(.serverInfo(allowsForce: client.serverAllowsForce))
                    case .connecting: sink.yield(.connection(connected: false, text: "connecting…"))
                    case .disconnected(let reason):
                        sink.yield(.connection(connected: false, text: "reconnecting (\(reason))"))
                    case .closed: sink.yield(.connection(connected: false, text: "closed"))
                    }
                }
            }
            group.addTask {
                for try await event in try await client.subscribe(.prefix(prefix)) {
                    switch event {
                    case .started(_, let reset): sink.yield(.started(reset: reset))
                    case .snapshot(let record):
                        sink.yield(.snapshot(EditorRecord(key: record.key, version: record.version, data: record.data)))
                    case .synced: sink.yield(.synced)
                    case .update(let key, let version, _, let data, _, _):
                        sink.yield(.update(EditorRecord(key: key, version: version, data: data)))
                    case .presence(let presence):
                        sink.yield(.presence(presence))
                    case .progress:
                        break
                    }
                }
            }
            group.addTask {
                let start = ContinuousClock.now
                while !Task.isCancelled {
                    try await Task.sleep(for: .milliseconds(250))
                    let elapsed = ContinuousClock.now - start
                    sink.yield(
                        .tick(now: Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18)
                    )
                }
            }
            // Presence changes go out one at a time, in order: sent concurrently, an older one
            // could reach the server last and stay shown to the others (the cursor's field
            // without "editing", say).
            let (presenceChanges, presenceSink) = AsyncStream<EditorEffect>.makeStream()
            group.addTask {
                for await effect in presenceChanges { _ = await Self.perform(effect, client: client) }
            }
            events: for await event in events {
                let effects = state.handle(event)
                terminal.draw(state.render())
                for effect in effects {
                    if effect == .quit { break events }
                    if case .setPresence = effect {
                        presenceSink.yield(effect)
                        continue
                    }
                    group.addTask {
                        if let event = await Self.perform(effect, client: client) { sink.yield(event) }
                    }
                }
            }
            presenceSink.finish()
            group.cancelAll()
        }
    }

    /// Carries out an effect and turns its outcome into an event (none for presence: what the
    /// others see needs no answer, and a presence lost with a dropped connection is set again).
    static func perform(_ effect: EditorEffect, client: VersoClient) async -> EditorEvent? {
        let key: String
        let outcome: WriteOutcome
        do {
            switch effect {
            case .setPresence(let target, let state):
                _ = try? await client.setPresence(target, state: state)
                return nil
            case .loadHistory(let target, let before):
                return .history(try await client.history(target, before: before))
            case .restore(let target, let base, let data):
                key = target
                outcome = try await client.put(target, base: base, data: data)
            case .patch(let target, let base, let patch, let merge):
                key = target
                outcome = try await client.patch(target, base: base, patch: patch, merge: merge)
            case .create(let target, let data):
                key = target
                outcome = try await client.put(target, base: 0, data: data)
            case .delete(let target, let base):
                key = target
                outcome = try await client.delete(target, base: base)
            case .quit:
                return .tick(now: 0)
            }
        } catch let error as VersoClientError where error.kind == .server(.forbidden) {
            return .refused(key: effect.key ?? "", message: error.message)
        } catch {
            return .failed(key: effect.key ?? "", message: "\(error)")
        }
        switch outcome {
        case .ack(let version, _, let merged, _):
            return .saved(key: key, version: version, merged: merged)
        case .conflict(let conflict):
            return .conflict(
                current: EditorRecord(
                    key: key,
                    version: conflict.version,
                    data: conflict.deleted ? nil : conflict.data
                ),
                reason: conflict.reason,
                clashes: conflict.clashes
            )
        }
    }
}

extension EditorEffect {
    /// The key a save is about.
    var key: String? {
        switch self {
        case .patch(let key, _, _, _), .create(let key, _), .delete(let key, _), .setPresence(let key, _),
            .loadHistory(let key, _), .restore(let key, _, _):
            key
        case .quit: nil
        }
    }
}
