#if arch(x86_64)
import _Builtin_intrinsics.intel
#endif

/// The parameter tensors of one optimizer step over one parameter group, and the chunked,
/// threaded traversal every update kernel shares.
///
/// Tensor i has `sizes[i]` floats at `params[i]` (updated in place) and its loss gradient at
/// `grads[i]` (read only). Every optimizer adds a *decay term* to the loss gradient:
///
///     D_i = decay[i] * w_i + fd_i
///
/// where `decay[i]` is the tensor's weight-decay coefficient (lambda, lambda * compression
/// rate, or 0) and fd_i the Frobenius-decay gradient of the factorized product the tensor
/// belongs to (`FactorDecayTerms`), absent for tensors outside any product.
///
/// Traversal: every tensor is cut into chunks of at most `chunkSize` floats; the chunks of
/// all tensors form one list run by `Threads.parallelFor` (contiguous blocks of chunks per
/// worker), or serially when the group is small. Per-chunk partial results (norms) are
/// reduced in chunk order, so results do not depend on the thread count.
public struct OptimTensors {
    public let params: [UnsafeMutablePointer<Float>]
    public let grads: [UnsafePointer<Float>]
    public let sizes: [Int]
    public let decay: [Float]
    /// Total number of floats in the group.
    public let totalCount: Int

    /// Floats per chunk: 64 KiB per stream, so a chunk's streams stay in L2.
    public static let chunkSize = 16384
    /// Below this many floats in the whole group the step runs on the calling thread.
    public static let parallelThreshold = 1 << 17

    public var count: Int { sizes.count }

    /// Validates the sizes (>= 1) and the decay coefficients (finite, >= 0).
    public init(params: [UnsafeMutablePointer<Float>], grads: [UnsafePointer<Float>],
                sizes: [Int], decay: [Float]) throws {
        try require(params.count == sizes.count && grads.count == sizes.count && decay.count == sizes.count,
                    "params, grads, sizes and decay must have one entry per tensor, got \(params.count), "
                        + "\(grads.count), \(sizes.count) and \(decay.count)")
        for (i, s) in sizes.enumerated() {
            try require(s >= 1, "sizes[\(i)] must be >= 1, got \(s)")
        }
        for (i, d) in decay.enumerated() {
            try require(d.isFinite && d >= 0, "decay[\(i)] must be a finite number >= 0, got \(d)")
        }
        self.totalCount = try Self.total(sizes)
        self.params = params; self.grads = grads; self.sizes = sizes; self.decay = decay
    }

    private static func total(_ sizes: [Int]) throws -> Int {
        var t = 0
        for s in sizes {
            let (r, o) = t.addingReportingOverflow(s)
            if o { throw FNLError.invalid("the parameter group has an absurd total size (overflow)") }
            t = r
        }
        return t
    }

    /// One piece of work: floats lo..<hi of tensor `tensor`.
    public struct Chunk {
        public let tensor: Int
        public let lo: Int
        public let hi: Int
    }

    /// The chunks of all tensors, tensor by tensor.
    public func chunks() -> [Chunk] {
        var out: [Chunk] = []
        out.reserveCapacity(count + totalCount / Self.chunkSize)
        for (t, s) in sizes.enumerated() {
            var lo = 0
            while lo < s {
                let hi = min(s, lo + Self.chunkSize)
                out.append(Chunk(tensor: t, lo: lo, hi: hi))
                lo = hi
            }
        }
        return out
    }

    /// True when the group is large enough for `run` to use the thread pool.
    public var threaded: Bool { totalCount >= Self.parallelThreshold }

    /// Runs `body(k, chunks[k])` for every chunk, threaded when the group is large. (Small
    /// groups do not consult the pool at all: asking it for its thread count can cost a
    /// system call, several microseconds on a step of ~100 small tensors.)
    public func run(_ chunks: [Chunk], _ body: (Int, Chunk) -> Void) {
        chunks.withUnsafeBufferPointer { cs in
            if !threaded {
                for k in 0..<cs.count { body(k, cs[k]) }
                return
            }
            Threads.parallelFor(cs.count, work: .max, minimumWork: 1) { k in body(k, cs[k]) }
        }
    }

    /// Throws `.invalid` naming the first gradient (`grads[i]`) that holds NaN or infinity;
    /// run before any buffer is touched, so a failed step leaves parameters and state as they were.
    public func checkGradientsFinite(_ chunks: [Chunk]) throws {
        if !threaded {
            for t in 0..<count {
                if let j = Finite.firstNonFinite(grads[t], sizes[t]) { throw nonFinite(t, j) }
            }
            return
        }
        // flags[k]: first non-finite index inside chunk k, or -1; scanned in chunk order.
        var flags = [Int](repeating: -1, count: chunks.count)
        flags.withUnsafeMutableBufferPointer { out in
            run(chunks) { k, c in
                if let j = Finite.firstNonFinite(grads[c.tensor] + c.lo, c.hi - c.lo) { out[k] = c.lo + j }
            }
        }
        for (k, j) in flags.enumerated() where j >= 0 { throw nonFinite(chunks[k].tensor, j) }
    }

    private func nonFinite(_ t: Int, _ j: Int) -> FNLError {
        .invalid("grads[\(t)] contains NaN or inf (first at flat index \(j): \(grads[t][j]))")
    }
}

// MARK: - SIMD lanes

/// The vector width of the update kernels: 4 floats, one SSE register (the engine is built for
/// baseline x86-64). Wider Swift SIMD types are legalized with shuffles and spill the
/// broadcast constants of the Adam-type kernels.
public typealias Lanes = SIMD4<Float>
let laneCount = 4

/// Loads `k` (<= laneCount) floats from p[i...], zero-filling the remaining lanes.
@inline(__always)
func vload(_ p: UnsafePointer<Float>, _ i: Int, _ k: Int) -> Lanes {
    if k == laneCount { return UnsafeRawPointer(p + i).loadUnaligned(as: Lanes.self) }
    var v = Lanes(repeating: 0)
    for j in 0..<k { v[j] = p[i + j] }
    return v
}

/// Stores the first `k` (<= laneCount) lanes of v into p[i...].
@inline(__always)
func vstore(_ v: Lanes, _ p: UnsafeMutablePointer<Float>, _ i: Int, _ k: Int) {
    if k == laneCount { UnsafeMutableRawPointer(p + i).storeBytes(of: v, as: Lanes.self); return }
    for j in 0..<k { p[i + j] = v[j] }
}

/// Lane-wise square root as packed instructions (sqrtps). `SIMD.squareRoot()` compiles to
/// one libm-guarded sqrtss per lane (the errno path of sqrtf), about 5x slower.
@inline(__always)
func vsqrt(_ x: Lanes) -> Lanes {
    #if arch(x86_64)
    return _mm_sqrt_ps(x)
    #else
    return x.squareRoot()
    #endif
}

/// Calls body(i, k) for i = 0, laneCount, 2 laneCount ... < n with k = min(laneCount, n - i)
/// lanes valid.
@inline(__always)
func forEachLanes(_ n: Int, _ body: (Int, Int) -> Void) {
    var i = 0
    while i + laneCount <= n { body(i, laneCount); i += laneCount }
    if i < n { body(i, n - i) }
}
