/// A batch of factorized matrices W_b = U_b M_1b ... M_db V_b^T (b < batch), row-major:
/// U_b is m x r_0, M_jb is r_{j-1} x r_j, V_b is n x r_d. `ranks` = [r_0, ..., r_d].
/// With depth d = 0 this is W = U V^T and r_0 is the rank r.
public struct FactorChain {
    public let batch: Int
    public let m: Int
    public let n: Int
    public let ranks: [Int]
    public let u: UnsafePointer<Float>
    public let v: UnsafePointer<Float>
    public let middle: [UnsafePointer<Float>]

    public var depth: Int { middle.count }
    public var rankIn: Int { ranks[0] }
    public var rankOut: Int { ranks[ranks.count - 1] }
    public var uCount: Int { m * rankIn }
    public var vCount: Int { n * rankOut }
    public func middleCount(_ j: Int) -> Int { ranks[j] * ranks[j + 1] }

    /// Validates the shapes (non-empty, BLAS-addressable, chain-compatible) and, when
    /// `checkFinite`, that no factor holds NaN or inf.
    public init(batch: Int, m: Int, n: Int, ranks: [Int], u: UnsafePointer<Float>, v: UnsafePointer<Float>,
                middle: [UnsafePointer<Float>], checkFinite: Bool = true) throws {
        try require(batch >= 1, "batch must be >= 1, got \(batch)")
        try require(ranks.count == middle.count + 1,
                    "ranks must have depth+1=\(middle.count + 1) entries, got \(ranks.count)")
        for (j, r) in ranks.enumerated() { try require(r >= 1, "rank r_\(j) must be >= 1, got \(r)") }
        try Dimensions.checkMatrix(m, ranks[0], "U")
        try Dimensions.checkMatrix(n, ranks[ranks.count - 1], "V")
        for j in 0..<middle.count { try Dimensions.checkMatrix(ranks[j], ranks[j + 1], "middle[\(j)]") }
        try Dimensions.checkMatrix(m, n, "the composed W")
        _ = try Dimensions.product(batch, m, ranks[0], "U")
        _ = try Dimensions.product(batch, n, ranks[ranks.count - 1], "V")
        self.batch = batch; self.m = m; self.n = n; self.ranks = ranks
        self.u = u; self.v = v; self.middle = middle
        if checkFinite {
            try Finite.check(u, batch * uCount, "U")
            try Finite.check(v, batch * vCount, "V")
            for j in 0..<middle.count { try Finite.check(middle[j], batch * middleCount(j), "middle[\(j)]") }
        }
    }

    /// Pointers of matrix `b` of the batch.
    public func u(_ b: Int) -> UnsafePointer<Float> { u + b * uCount }
    public func v(_ b: Int) -> UnsafePointer<Float> { v + b * vCount }
    public func middle(_ j: Int, _ b: Int) -> UnsafePointer<Float> { middle[j] + b * middleCount(j) }

    /// Writes the product M_lo ... M_{hi-1} of batch item `b` (r_lo x r_hi) into `out`;
    /// the identity when lo == hi. `tmp` holds at least max_j r_j^2... floats.
    func middleProduct(_ b: Int, from lo: Int, to hi: Int,
                       _ out: UnsafeMutablePointer<Float>, _ tmp: UnsafeMutablePointer<Float>) {
        if lo == hi { Blas.identity(ranks[lo], out); return }
        Blas.copy(middle(lo, b), ranks[lo], ranks[lo + 1], out)
        var cols = ranks[lo + 1]
        for j in (lo + 1)..<hi {
            Blas.gemm(false, false, ranks[lo], ranks[j + 1], cols, 1, out, cols, middle(j, b), ranks[j + 1], 0, tmp, ranks[j + 1])
            cols = ranks[j + 1]
            out.update(from: tmp, count: ranks[lo] * cols)
        }
    }

    /// Runs `body` on a copy of batch item `b` (a chain of batch 1) whose factors U, M_j and V
    /// are each divided by their largest magnitude, passing the product `scale` of those
    /// magnitudes: W_b = scale * W_copy. Diagnostics whose float32 intermediates overflowed
    /// (entries near the float32 range) are recomputed on the copy and rescaled in float64.
    func withNormalizedItem<R>(_ b: Int, _ body: (FactorChain, Double) throws -> R) throws -> R {
        let counts = [uCount, vCount] + (0..<depth).map { middleCount($0) }
        return try withScratch(counts, "a rescaled copy of the factors") { bufs in
            var scale = 1.0
            func copyNormalized(_ src: UnsafePointer<Float>, _ n: Int, _ dst: UnsafeMutablePointer<Float>) {
                var mx: Float = 0
                for i in 0..<n { mx = max(mx, abs(src[i])) }
                guard mx > 0, mx.isFinite else { dst.update(from: src, count: n); return }
                let inv = 1 / Double(mx)
                for i in 0..<n { dst[i] = Float(Double(src[i]) * inv) }
                scale *= Double(mx)
            }
            copyNormalized(u(b), uCount, bufs[0])
            copyNormalized(v(b), vCount, bufs[1])
            for j in 0..<depth { copyNormalized(middle(j, b), middleCount(j), bufs[2 + j]) }
            let copy = try FactorChain(batch: 1, m: m, n: n, ranks: ranks, u: bufs[0], v: bufs[1],
                                       middle: (0..<depth).map { UnsafePointer(bufs[2 + $0]) }, checkFinite: false)
            return try body(copy, scale)
        }
    }

    /// A float64 diagnostic computed through float32 intermediates that may have overflowed
    /// (not finite) or underflowed (tiny): worth recomputing with `withNormalizedItem`.
    static func suspect(_ x: Double) -> Bool { !x.isFinite || x < 1e-30 }

    /// Largest r_i * r_j over the chain: a bound for any partial product of middles.
    var maxPairCount: Int {
        let r = ranks.max()!
        return r * r
    }
}
