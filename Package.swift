// swift-tools-version:6.0
import PackageDescription

// Warnings are errors in every target of this package (not in its dependencies).
let strict: [SwiftSetting] = [.unsafeFlags(["-warnings-as-errors"])]

let package = Package(
    name: "custodian",
    products: [
        .executable(name: "custodian", targets: ["custodian"]),
        .library(name: "CustodianClient", targets: ["CustodianClient"]),
        .library(name: "CustodianCore", targets: ["CustodianCore"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/attaswift/BigInt", from: "6.0.1"),
        .package(url: "https://github.com/LebJe/TOMLKit", from: "0.6.0"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
    ],
    targets: [
        // C libraries from Debian's -dev packages (libsecp256k1-dev, libsodium-dev, libssl-dev, zlib1g-dev, libpq-dev).
        .systemLibrary(
            name: "CSecp256k1", pkgConfig: "libsecp256k1",
            providers: [.apt(["libsecp256k1-dev"])]),
        .systemLibrary(
            name: "CSodium", pkgConfig: "libsodium", providers: [.apt(["libsodium-dev"])]),
        .systemLibrary(
            name: "COpenSSL", pkgConfig: "libcrypto", providers: [.apt(["libssl-dev"])]),
        // Reading audit segments an operator compressed with gzip (zlib1g-dev).
        .systemLibrary(name: "CZlib", pkgConfig: "zlib", providers: [.apt(["zlib1g-dev"])]),
        // The PostgreSQL ledger (libpq-dev): a blocking client, driven by the engine's one ledger thread.
        .systemLibrary(name: "CPostgres", pkgConfig: "libpq", providers: [.apt(["libpq-dev"])]),
        // Only what Glibc hides from Swift: variadic prctl, struct ucred, libseccomp's macros (libseccomp-dev).
        .target(name: "CCustodianLinux", linkerSettings: [.linkedLibrary("seccomp", .when(platforms: [.linux]))]),

        // Pure: no I/O, no C. Can be fuzzed by compiling its sources alone (plus BigInt).
        .target(
            name: "CustodianCore",
            dependencies: [.product(name: "BigInt", package: "BigInt")],
            swiftSettings: strict),
        // The only module that touches key material.
        .target(
            name: "CustodianCrypto",
            dependencies: ["CustodianCore", "CSecp256k1", "CSodium", "COpenSSL"],
            swiftSettings: strict),
        // The I/O shell: socket server, ledger, audit log, policy files, hardening.
        .target(
            name: "CustodianAgent",
            dependencies: [
                "CustodianCore", "CustodianCrypto", "CCustodianLinux", "CZlib", "CPostgres",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "TOMLKit", package: "TOMLKit"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ],
            swiftSettings: strict),
        .target(
            name: "CustodianClient",
            dependencies: ["CustodianCore"],
            swiftSettings: strict),
        // The custodian binary's default sanitizer options (a hardened process cannot run LeakSanitizer's check).
        .target(name: "CCustodianSanitizerDefaults", path: "Sources/CCustodianSanitizerDefaults"),
        .executableTarget(
            name: "custodian",
            dependencies: [
                "CustodianAgent", "CustodianClient", "CustodianCrypto", "CustodianCore", "CCustodianSanitizerDefaults",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: strict),

        // Test helpers shared by the test targets: the vector files.
        .target(name: "CustodianTestSupport", path: "Tests/CustodianTestSupport", swiftSettings: strict),
        // Tools for bench/: fill a log through the engine, time a replay, time Keccak-256.
        .executableTarget(
            name: "custodian-bench", dependencies: ["CustodianAgent", "CustodianCrypto", "CustodianCore"],
            swiftSettings: strict),
        .testTarget(
            name: "CustodianCoreTests", dependencies: ["CustodianCore", "CustodianTestSupport"],
            swiftSettings: strict),
        .testTarget(
            name: "CustodianCryptoTests", dependencies: ["CustodianCrypto", "CustodianCore", "CustodianTestSupport"],
            swiftSettings: strict),
        .testTarget(
            name: "CustodianAgentTests",
            dependencies: ["CustodianAgent", "CustodianCrypto", "CustodianCore", "CustodianTestSupport"],
            swiftSettings: strict),
        .testTarget(
            name: "EndToEndTests", dependencies: ["CustodianCore", "CustodianClient", "CustodianTestSupport"],
            exclude: ["oracle.py", "ptrace_attach.py", "ledger_check.py"],
            swiftSettings: strict),
    ],
    swiftLanguageModes: [.v6]
)
