// swift-tools-version:5.10
import PackageDescription

// fnl: the Swift numeric engine behind the `fnl` Python package.
//
// Public API:      FNLEngine  (dynamic library of `public @_cdecl` exports; contract: CFNLEngine/include/fnl_engine.h)
// Implementation:  FNLCore    (pure Swift numerics on unsafe buffer pointers)
//                  CBLAS      (system library: OpenBLAS cblas + LAPACKE)
// Tests:           FNLCoreTests (kernels against float64 references), FNLEngineTests (the ABI contract)

let optimize: [SwiftSetting] = [
    .unsafeFlags(["-enforce-exclusivity=unchecked"]),
]

let package = Package(
    name: "fnl",
    products: [
        .library(name: "FNLEngine", type: .dynamic, targets: ["FNLEngine"]),
    ],
    targets: [
        // Public API
        .target(name: "FNLEngine", dependencies: ["FNLCore", "CFNLEngine"], swiftSettings: optimize),
        .target(name: "CFNLEngine"),

        // Implementation
        .target(name: "FNLCore", dependencies: ["CBLAS"], swiftSettings: optimize),
        .systemLibrary(name: "CBLAS"),

        // Tests
        .testTarget(name: "FNLCoreTests", dependencies: ["FNLCore"]),
        .testTarget(name: "FNLEngineTests", dependencies: ["FNLEngine", "CFNLEngine"]),
    ]
)
