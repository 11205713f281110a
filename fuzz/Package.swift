// swift-tools-version:6.1
import Foundation
import PackageDescription

/// SwiftPM names a path dependency after its folder, which is wherever Verso was cloned to.
let verso = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().lastPathComponent
    .lowercased()

// libFuzzer targets for Verso's parsers and decoders: one executable per component, each
// exporting `LLVMFuzzerTestOneInput`. A separate package so that the sanitizer flags reach only
// what is fuzzed and the products the fuzzers need, never the root package's executables.
// Build and run with `fuzz/run.sh TARGET SECONDS` (README.md says why the flags are what they are).
let package = Package(
    name: "verso-fuzz",
    platforms: [.macOS(.v15)],
    dependencies: [
        // Verso itself.
        .package(path: ".."),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.80.0"),
        .package(url: "https://github.com/adam-fowler/compress-nio.git", from: "1.5.0"),
    ],
    targets: [
        // The invariant check every target crashes through, so libFuzzer keeps the input.
        .target(name: "FuzzSupport"),
        .executableTarget(
            name: "FuzzJSON",
            dependencies: ["FuzzSupport", .product(name: "VersoCore", package: verso)]
        ),
        .executableTarget(
            name: "FuzzRequest",
            dependencies: ["FuzzSupport", .product(name: "VersoCore", package: verso)]
        ),
        .executableTarget(
            name: "FuzzMergePatch",
            dependencies: ["FuzzSupport", .product(name: "VersoCore", package: verso)]
        ),
        .executableTarget(
            name: "FuzzInflate",
            dependencies: [
                "FuzzSupport",
                .product(name: "VersoDeflate", package: verso),
                .product(name: "CompressNIO", package: "compress-nio"),
                .product(name: "NIOCore", package: "swift-nio"),
            ]
        ),
        .executableTarget(
            name: "FuzzFrameDecoder",
            dependencies: [
                "FuzzSupport",
                .product(name: "VersoWebSocket", package: verso),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "NIOWebSocket", package: "swift-nio"),
            ]
        ),
    ]
)
