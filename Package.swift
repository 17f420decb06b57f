// swift-tools-version:6.2
import PackageDescription

// Strict Swift 6 everywhere; warnings are treated as work to do, not noise.
let strict: [SwiftSetting] = [
    .swiftLanguageMode(.v6),
    .enableUpcomingFeature("ExistentialAny"),
]

let package = Package(
    name: "bodhi",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "bodhi", targets: ["bodhi"]),
    ],
    dependencies: [
        // `traits: []` pins Hummingbird's feature flags so unrelated Package.swift edits
        // don't force it to recompile (SwiftPM 6.3 re-orders default traits at random).
        .package(url: "https://github.com/hummingbird-project/hummingbird.git", from: "2.28.1", traits: []),
        .package(url: "https://github.com/swift-server/async-http-client.git", from: "1.37.0"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/jpsim/Yams.git", from: "6.2.2"),
        .package(url: "https://github.com/apple/swift-crypto.git", from: "4.5.2"),
        .package(url: "https://github.com/vapor/sql-kit.git", from: "3.36.0"),
        .package(url: "https://github.com/vapor/sqlite-kit.git", from: "4.5.2"),
        .package(url: "https://github.com/vapor/postgres-kit.git", from: "2.17.0"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.6"),
        .package(url: "https://github.com/hummingbird-project/hummingbird-auth.git", from: "2.5.0"),
        .package(url: "https://github.com/apple/swift-http-types.git", from: "1.8.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
        .package(url: "https://github.com/adam-fowler/compress-nio.git", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-nio-extras.git", from: "1.35.2"),
    ],
    targets: [
        // fork/exec with a parent-death signal, which Foundation's Process cannot set.
        .target(name: "CBodhiSpawn"),
        // Brotli's and Zstandard's encoders from Debian's packages, for `br` and `zstd` responses:
        // no Swift package in reach provides them (compress-nio has zlib's formats only).
        .systemLibrary(name: "CBrotli", pkgConfig: "libbrotlienc", providers: [.apt(["libbrotli-dev"])]),
        .systemLibrary(name: "CZstd", pkgConfig: "libzstd", providers: [.apt(["libzstd-dev"])]),
        .target(
            name: "BodhiCore",
            dependencies: [.product(name: "Yams", package: "Yams"), .product(name: "Logging", package: "swift-log")],
            swiftSettings: strict
        ),
        // Its disk reads go to NIO's thread pool, off the event loops.
        .target(
            name: "BodhiModels",
            dependencies: ["BodhiCore", .product(name: "NIOPosix", package: "swift-nio")],
            swiftSettings: strict
        ),
        // Users, sessions, API tokens, access requests; bcrypt from hummingbird-auth.
        .target(
            name: "BodhiIdentity",
            dependencies: [
                "BodhiCore",
                .product(name: "HummingbirdBcrypt", package: "hummingbird-auth"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            swiftSettings: strict
        ),
        // Users' conversations, kept on the server.
        .target(
            name: "BodhiChats",
            dependencies: ["BodhiCore"],
            swiftSettings: strict
        ),
        // The database: SQLKit keeps one dialect-neutral layer for SQLite and PostgreSQL.
        .target(
            name: "BodhiStore",
            dependencies: [
                "BodhiCore", "BodhiModels", "BodhiIdentity", "BodhiChats",
                .product(name: "SQLKit", package: "sql-kit"),
                .product(name: "SQLiteKit", package: "sqlite-kit"),
                .product(name: "PostgresKit", package: "postgres-kit"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
        // Pulls from a Hugging Face Hub into the shared cache.
        .target(
            name: "BodhiHub",
            dependencies: [
                "BodhiCore", "BodhiModels",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            swiftSettings: strict
        ),
        .target(
            name: "BodhiEngine",
            dependencies: [
                "BodhiCore", "BodhiModels", "CBodhiSpawn",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOFoundationCompat", package: "swift-nio"),
            ],
            swiftSettings: strict
        ),
        // Remote servers and cloud APIs behind BodhiEngine's `InferenceBackend` seam.
        .target(
            name: "BodhiBackends",
            dependencies: [
                "BodhiCore", "BodhiModels", "BodhiEngine",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOFoundationCompat", package: "swift-nio"),
            ],
            swiftSettings: strict
        ),
        // Other vendors' APIs (Ollama, Anthropic) and OpenAI's Responses API, translated to the engines' chat
        // completions; stored responses through BodhiChats' repository.
        .target(
            name: "BodhiCompatibility",
            dependencies: [
                "BodhiCore", "BodhiModels", "BodhiEngine", "BodhiHub", "BodhiChats",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOFoundationCompat", package: "swift-nio"),
            ],
            swiftSettings: strict
        ),
        // The HTTP channel layer: Hummingbird's HTTP/1.1 pipeline with Bodhi's handlers (origin-form
        // codec, hang-up, the fast path's handler and response writer), as HummingbirdCore stands
        // apart from Hummingbird. It knows nothing of routes or services.
        .target(
            name: "BodhiHTTP",
            dependencies: [
                "BodhiEngine",
                .product(name: "HummingbirdCore", package: "hummingbird"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOHTTPTypes", package: "swift-nio-extras"),
                .product(name: "NIOHTTPTypesHTTP1", package: "swift-nio-extras"),
            ],
            swiftSettings: strict
        ),
        .target(
            name: "BodhiServer",
            dependencies: [
                "BodhiCore", "BodhiModels", "BodhiEngine", "BodhiHub", "BodhiIdentity", "BodhiChats", "BodhiCompatibility", "BodhiBackends", "BodhiHTTP",
                "CBrotli", "CZstd",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdCore", package: "hummingbird"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "CompressNIO", package: "compress-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOHTTPTypes", package: "swift-nio-extras"),
                .product(name: "NIOHTTPTypesHTTP1", package: "swift-nio-extras"),
            ],
            // The browser UI: plain files, served as they are.
            resources: [.copy("UI")],
            swiftSettings: strict
        ),
        .executableTarget(
            name: "bodhi",
            dependencies: [
                "BodhiCore", "BodhiModels", "BodhiEngine", "BodhiHub", "BodhiIdentity", "BodhiChats", "BodhiServer", "BodhiStore", "BodhiBackends",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strict
        ),
        .testTarget(name: "BodhiCoreTests", dependencies: ["BodhiCore"], swiftSettings: strict),
        // What several test targets share (a seeded generator for fuzz tests); never in a product.
        .target(name: "BodhiTestSupport", path: "Tests/BodhiTestSupport", swiftSettings: strict),
        .testTarget(name: "BodhiModelsTests", dependencies: ["BodhiModels", "BodhiTestSupport"], swiftSettings: strict),
        .testTarget(
            name: "BodhiHTTPTests",
            dependencies: ["BodhiHTTP", .product(name: "NIOHTTPTypesHTTP1", package: "swift-nio-extras")],
            swiftSettings: strict
        ),
        .testTarget(name: "BodhiBackendsTests", dependencies: ["BodhiBackends"], swiftSettings: strict),
        .testTarget(name: "BodhiCompatibilityTests", dependencies: ["BodhiCompatibility"], swiftSettings: strict),
        .testTarget(name: "BodhiStoreTests", dependencies: ["BodhiStore", "BodhiIdentity", "BodhiChats"], swiftSettings: strict),
        .testTarget(
            name: "BodhiHubTests",
            dependencies: ["BodhiHub", .product(name: "Hummingbird", package: "hummingbird")],
            swiftSettings: strict
        ),
        .testTarget(
            name: "BodhiEngineTests",
            dependencies: ["BodhiEngine", "BodhiTestSupport", .product(name: "NIOPosix", package: "swift-nio")],
            swiftSettings: strict
        ),
        .testTarget(
            name: "BodhiServerTests",
            dependencies: [
                "BodhiServer", "BodhiHTTP", "BodhiHub", "BodhiStore", "BodhiIdentity", "BodhiChats", "BodhiBackends",
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "CompressNIO", package: "compress-nio"),
                .product(name: "HummingbirdTesting", package: "hummingbird"),
            ],
            swiftSettings: strict
        ),
    ]
)
