import NIOCore
import NIOPosix

/// A test's own TCP listener on 127.0.0.1.
public enum LoopbackListener {
    /// Binds `bootstrap` to a free port on 127.0.0.1, runs `body` with that port, then closes
    /// the listener (also when `body` throws).
    public static func with<T: Sendable>(
        _ bootstrap: ServerBootstrap,
        _ body: (Int) async throws -> T
    ) async throws -> T {
        let channel = try await bootstrap.bind(host: "127.0.0.1", port: 0).get()
        do {
            let result = try await body(channel.localAddress?.port ?? 0)
            try await channel.close()
            return result
        } catch {
            try? await channel.close()
            throw error
        }
    }
}
