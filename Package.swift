// swift-tools-version:5.10
import PackageDescription

// fnl: the Swift numeric engine behind the `fnl` Python package.
//
// Public API:      FNLEngine  (dynamic library of `public @_cdecl` exports; contract: CFNLEngine/include/fnl_engine.h)
// Implementation:  FNLCore    (pure Swift numerics on unsafe buffer pointers)
//                  CBLAS      (system library: OpenBLAS cblas + LAPACKE)
// Tests:           FNLCoreTests (kernels against float64 references), FNLEngineTests (the ABI contract)

import Foundation

/// The build machine's x86-64 CPU has the Haswell feature set (AVX2, FMA, BMI, F16C, MOVBE,
/// LZCNT), read from /proc/cpuinfo. The engine is built from source on the machine that runs
/// it (`pip install .`), like a `-march=native` build: its SIMD kernels then use 8-lane FMA,
/// and `#if FNL_HASWELL` tells the code so.
/// FNL_GENERIC_CPU=1 builds for baseline x86-64 (a build to be copied to other machines).
func hostHasHaswellFeatures() -> Bool {
    if ProcessInfo.processInfo.environment["FNL_GENERIC_CPU"].map({ !$0.isEmpty && $0 != "0" }) ?? false { return false }
    #if arch(x86_64) && os(Linux)
    guard let info = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8),
          let line = info.split(separator: "\n").first(where: { $0.hasPrefix("flags") }) else { return false }
    let flags = Set(line.split(separator: " ").map(String.init))
    return ["avx2", "fma", "bmi1", "bmi2", "f16c", "movbe", "abm"].allSatisfy(flags.contains)
    #else
    return false
    #endif
}

let optimize: [SwiftSetting] = [
    .unsafeFlags(["-enforce-exclusivity=unchecked"] + (hostHasHaswellFeatures() ? ["-target-cpu", "haswell", "-DFNL_HASWELL"] : [])),
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
