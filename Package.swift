// swift-tools-version:6.1
import PackageDescription

let swiftSettings: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("MemberImportVisibility"),
]

let package = Package(
    name: "verso",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "verso-server", targets: ["verso-server"]),
        .library(name: "VersoCore", targets: ["VersoCore"]),
        .library(name: "VersoEngine", targets: ["VersoEngine"]),
        .library(name: "VersoServer", targets: ["VersoServer"]),
        .library(name: "VersoDeflate", targets: ["VersoDeflate"]),
        .library(name: "VersoWebSocket", targets: ["VersoWebSocket"]),
        .library(name: "VersoTesting", targets: ["VersoTesting"]),
        .library(name: "VersoClient", targets: ["VersoClient"]),
        .executable(name: "verso", targets: ["verso"]),
        .executable(name: "verso-conformance", targets: ["verso-conformance"]),
        .executable(name: "verso-load", targets: ["verso-load"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.0"),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.80.0"),
        .package(url: "https://github.com/apple/swift-nio-extras.git", from: "1.35.2"),
        .package(url: "https://github.com/hummingbird-project/hummingbird.git", from: "2.28.0"),
        .package(url: "https://github.com/hummingbird-project/swift-websocket.git", from: "1.6.0"),
        .package(url: "https://github.com/adam-fowler/compress-nio.git", from: "1.5.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.6.0"),
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift.git", from: "0.1.0"),
        .package(url: "https://github.com/apple/swift-http-types.git", from: "1.0.0"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.0"),
        .package(url: "https://github.com/vapor/jwt-kit.git", from: "5.7.1"),
        .package(url: "https://github.com/apple/swift-crypto.git", "4.1.0"..<"6.0.0"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
        .package(url: "https://github.com/swift-server/async-http-client.git", from: "1.37.0"),
        .package(url: "https://github.com/vapor/postgres-nio.git", from: "1.33.2"),
    ],
    targets: [
        // Pure values and protocol rules: no I/O.
        .target(name: "VersoCore", swiftSettings: swiftSettings),
        // The system SQLite library.
        .systemLibrary(name: "CSQLite", path: "Sources/CSQLite", providers: [.apt(["libsqlite3-dev"])]),
        // The record engine: store protocol, write pipeline, subscriptions.
        .target(
            name: "VersoEngine",
            dependencies: [
                "VersoCore",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        // The SQLite store.
        .target(
            name: "VersoSQLite",
            dependencies: ["VersoCore", "VersoEngine", "CSQLite", .product(name: "Logging", package: "swift-log")],
            swiftSettings: swiftSettings
        ),
        // The PostgreSQL store: several servers over one database (--store postgres://…).
        .target(
            name: "VersoPostgres",
            dependencies: [
                "VersoCore", "VersoEngine",
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
            ],
            swiftSettings: swiftSettings
        ),
        // Swift tasks that run on a SwiftNIO event loop (server connections, load workers).
        .target(
            name: "VersoEventLoop",
            dependencies: [.product(name: "NIOCore", package: "swift-nio")],
            swiftSettings: swiftSettings
        ),
        // WebSocket frames (RFC 6455) read and written in place, and NIO's upgrade without its
        // frame codec: shared by the server and verso-load's lean client.
        .target(
            name: "VersoWebSocket",
            dependencies: [
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOWebSocket", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings
        ),
        // permessage-deflate (RFC 7692) as the server negotiates, inflates and compresses it, on
        // pooled zlib streams. Its own target so the fuzzers reach it without the rest of the server.
        .target(
            name: "VersoDeflate",
            dependencies: [
                .product(name: "CompressNIO", package: "compress-nio"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "WSCore", package: "swift-websocket"),
            ],
            swiftSettings: swiftSettings
        ),
        // WebSocket and HTTP wiring.
        .target(
            name: "VersoServer",
            dependencies: [
                "VersoCore", "VersoEngine", "VersoSQLite", "VersoPostgres", "VersoWebClient", "VersoEventLoop",
                "VersoDeflate", "VersoWebSocket",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdCore", package: "hummingbird"),
                .product(name: "NIOCore", package: "swift-nio"),
                // The upgrade (NIO's handshake); frames are read by VersoWebSocket's parser.
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOWebSocket", package: "swift-nio"),
                .product(name: "NIOHTTPTypes", package: "swift-nio-extras"),
                .product(name: "NIOHTTPTypesHTTP1", package: "swift-nio-extras"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "Logging", package: "swift-log"),
                // TLS (--tls-cert-file) and signed access tokens (--auth jwt).
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "JWTKit", package: "jwt-kit"),
                // GET /metrics (--metrics).
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ],
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "verso-server",
            dependencies: [
                "VersoServer", "VersoCore", "VersoSQLite",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        // The browser client's page, served by verso-server at `/` (its tests and guide are in
        // clients/web).
        .target(
            name: "VersoWebClient",
            resources: [.copy("index.html")],
            swiftSettings: swiftSettings
        ),
        // The client library: the wire-level connection and the typed client with reconnect.
        .target(
            name: "VersoClient",
            dependencies: [
                "VersoCore",
                .product(name: "WSClient", package: "swift-websocket"),
                .product(name: "WSCompression", package: "swift-websocket"),
                .product(name: "WSCore", package: "swift-websocket"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "Logging", package: "swift-log"),
                // wss:// URLs.
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
            ],
            swiftSettings: swiftSettings
        ),
        // Connections below the typed client, for the conformance suite and the tests: a
        // WebSocket that sends and reads raw frames and text (WireConnection), and plain TCP
        // HTTP exchanges (RawHTTP). Not part of the VersoClient product.
        .target(
            name: "VersoWire",
            dependencies: [
                "VersoClient", "VersoCore",
                .product(name: "WSClient", package: "swift-websocket"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOWebSocket", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        // The live editor's screen logic as a pure state machine: events in, screen model out.
        .target(
            name: "VersoEditor",
            dependencies: ["VersoCore"],
            swiftSettings: swiftSettings
        ),
        // `verso`: scriptable commands and the live editor.
        .executableTarget(
            name: "verso",
            dependencies: [
                "VersoClient", "VersoCore", "VersoEditor",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                // verso stats reads the server's /metrics.
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
            ],
            path: "clients/terminal",
            exclude: ["README.md"],
            swiftSettings: swiftSettings
        ),
        // The protocol conformance suite, runnable against any URL.
        .target(
            name: "VersoConformance",
            dependencies: [
                "VersoClient", "VersoCore", "VersoWire",
                // Raw frames and close codes, for the checks below the JSON level.
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "WSCore", package: "swift-websocket"),
            ],
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "verso-conformance",
            dependencies: [
                "VersoConformance", "VersoCore",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: swiftSettings
        ),
        // The load-testing harness: many real WebSocket connections, latency histograms, reports.
        .target(
            name: "VersoLoad",
            dependencies: [
                // The protocol's vocabulary: requests outside the measured loops, and replies
                // read in full where the harness checks what the server holds.
                "VersoCore",
                "VersoEventLoop",
                "VersoWebSocket",
                "VersoDeflate",
                .product(name: "Histogram", package: "hdrhistogram-swift"),
                // A lean WebSocket client of its own, straight on SwiftNIO (see LeanWebSocket.swift),
                // with the server's frame codec and deflate.
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOWebSocket", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings
        ),
        // The CPU cost of the access check per request (BENCHMARKS.md; not part of the tests).
        .executableTarget(
            name: "verso-auth-bench",
            dependencies: [
                "VersoServer", "VersoCore",
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "bench/auth-check",
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "verso-load",
            dependencies: [
                "VersoLoad",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: swiftSettings
        ),
        // Starts a real server on an ephemeral port; the wire client for tests; a real-process harness.
        .target(
            name: "VersoTesting",
            dependencies: [
                "VersoServer", "VersoClient", "VersoWire",
                .product(name: "Logging", package: "swift-log"),
                // RelayProxy: a TCP proxy that can cut a connection where a test says.
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "VersoCoreTests",
            dependencies: ["VersoCore"],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "VersoServerTests",
            dependencies: [
                "VersoTesting", "VersoServer", "VersoCore", "VersoEngine", "VersoSQLite", "VersoClient", "VersoWire",
                // Signs the tokens the signed-token tests present.
                .product(name: "JWTKit", package: "jwt-kit"),
                // Raw sockets and frames, for the tests below the client's level.
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOWebSocket", package: "swift-nio"),
                .product(name: "WSCore", package: "swift-websocket"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "VersoEngineTests",
            dependencies: ["VersoEngine", "VersoCore"],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "VersoSQLiteTests",
            dependencies: [
                "VersoSQLite", "VersoEngine", "VersoCore",
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "VersoDeflateTests",
            dependencies: [
                "VersoDeflate",
                .product(name: "CompressNIO", package: "compress-nio"),
                .product(name: "NIOCore", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "VersoWebSocketTests",
            dependencies: [
                "VersoWebSocket",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "NIOWebSocket", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "VersoConformanceTests",
            dependencies: ["VersoConformance", "VersoTesting", "VersoClient", "VersoCore", "VersoServer", "VersoWire"],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "VersoLoadTests",
            dependencies: [
                "VersoLoad", "VersoTesting", "VersoServer", "VersoCore",
                .product(name: "Histogram", package: "hdrhistogram-swift"),
                .product(name: "NIOCore", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings
        ),
        // Several servers over one real PostgreSQL (skipped where PostgreSQL 15 is not installed).
        .testTarget(
            name: "VersoPostgresTests",
            dependencies: [
                "VersoTesting", "VersoConformance", "VersoCore", "VersoLoad", "VersoWire",
                // The bytes CommitCutTests' proxy reads; the close frames servers send.
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "WSCore", package: "swift-websocket"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "VersoClientTests",
            dependencies: [
                "VersoClient", "VersoTesting", "VersoEditor", "VersoCore", "VersoServer", "VersoWire",
                // A listener that never answers an upgrade (SilentListener.swift); CuttingProxy
                // reads ByteBuffers.
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings
        ),
    ]
)
