#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Temporary float storage that reports allocation failure as `FNLError.outOfMemory`
/// instead of trapping (Swift's own allocator aborts the process when malloc fails).
///
/// Up to `stackScratchFloats` floats come from the stack (no malloc on the path of tiny
/// calls, where allocation would dominate the cost of the call).
public func withScratch<R>(_ count: Int, _ what: String,
                           _ body: (UnsafeMutablePointer<Float>) throws -> R) throws -> R {
    if count <= stackScratchFloats {
        return try withUnsafeTemporaryAllocation(of: Float.self, capacity: stackScratchFloats) { buffer in
            guard let base = buffer.baseAddress else {
                throw FNLError.outOfMemory("cannot allocate \(count) floats of workspace for \(what)")
            }
            return try body(base)
        }
    }
    let (bytes, overflow) = max(count, 1).multipliedReportingOverflow(by: MemoryLayout<Float>.stride)
    guard !overflow, let raw = malloc(bytes) else {
        throw FNLError.outOfMemory("cannot allocate \(count) floats of workspace for \(what)")
    }
    defer { free(raw) }
    return try body(raw.bindMemory(to: Float.self, capacity: max(count, 1)))
}

/// Largest workspace (in floats, 1 KiB) taken from the stack by `withScratch`.
public let stackScratchFloats = 256

/// Scratch storage for a list of sizes, allocated as one block.
@inline(__always)
public func withScratch<R>(_ counts: [Int], _ what: String,
                           _ body: ([UnsafeMutablePointer<Float>]) throws -> R) throws -> R {
    var total = 0
    for c in counts {
        let (t, o) = total.addingReportingOverflow(c)
        if o { throw FNLError.outOfMemory("workspace for \(what) overflows") }
        total = t
    }
    return try withScratch(total, what) { base in
        var ptrs: [UnsafeMutablePointer<Float>] = []
        ptrs.reserveCapacity(counts.count)
        var offset = 0
        for c in counts { ptrs.append(base + offset); offset += c }
        return try body(ptrs)
    }
}
