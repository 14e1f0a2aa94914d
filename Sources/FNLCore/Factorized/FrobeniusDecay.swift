/// Frobenius decay (FD) on factorized matrices W = U M_1 ... M_d V^T, from Gram matrices only:
/// W is never formed, so the cost is O((m + n) r^2 + d^2 r^3) instead of O(m n r).
///
/// With M = M_1 ... M_d (the identity when d = 0), G_U = U^T U and G_V = V^T V:
///
///     ||W||_F^2 = tr(M^T G_U M G_V) = <G_U, M G_V M^T>
///     penalty   = (lambda / 2) ||W||_F^2
///     dU        = lambda U (M G_V M^T)
///     dV        = lambda V (M^T G_U M)
///     dM_j      = lambda (M_1..M_{j-1})^T (G_U M G_V) (M_{j+1}..M_d)^T
///
/// Batched chains treat every batch item (e.g. an attention head) independently; the
/// penalty is the sum over the batch.
public enum FrobeniusDecay {
    /// ||W_b||_F^2 for every batch item, in float64. Items whose float32 Gram matrices
    /// overflow or underflow (factor entries near the float32 range) are recomputed on normalized copies,
    /// so the result is finite whenever ||W_b||_F^2 fits a double.
    public static func squaredNorms(_ c: FactorChain) throws -> [Double] {
        var out = [Double](repeating: 0, count: c.batch)
        try eachSquaredNorm(c) { b, x in out[b] = x }
        for b in 0..<c.batch where FactorChain.suspect(out[b]) {
            out[b] = try c.withNormalizedItem(b) { item, scale in
                var x = 0.0
                try eachSquaredNorm(item) { _, v in x = v }
                return x * scale * scale
            }
        }
        return out
    }

    /// (lambda / 2) * sum_b ||W_b||_F^2.
    public static func penalty(_ c: FactorChain, lambda: Float) throws -> Double {
        try checkLambda(lambda)
        var sum = 0.0, suspect = false
        try eachSquaredNorm(c) { _, x in  // (no array on the common path: the fastest engine call)
            sum += x
            if FactorChain.suspect(x) { suspect = true }
        }
        if suspect { sum = try squaredNorms(c).reduce(0, +) }
        return 0.5 * Double(lambda) * sum
    }

    /// Calls `body(b, ||W_b||_F^2)` for b = 0, 1, ..., batch - 1.
    static func eachSquaredNorm(_ c: FactorChain, _ body: (Int, Double) -> Void) throws {
        let r0 = c.rankIn, rd = c.rankOut, big = c.maxPairCount
        try withScratch([r0 * r0, rd * rd, r0 * rd, r0 * rd, r0 * r0, big], "the Frobenius norm") { s in
            let (gu, gv, mm, t, cc, tmp) = (s[0], s[1], s[2], s[3], s[4], s[5])
            for b in 0..<c.batch {
                Blas.gram(c.u(b), c.m, r0, gu)
                Blas.gram(c.v(b), c.n, rd, gv)
                if c.depth == 0 {
                    body(b, Blas.dot(gu, gv, r0 * r0))
                } else {
                    c.middleProduct(b, from: 0, to: c.depth, mm, tmp)
                    Blas.gemm(false, false, r0, rd, rd, 1, mm, rd, gv, rd, 0, t, rd)    // M G_V
                    Blas.gemm(false, true, r0, r0, rd, 1, t, rd, mm, rd, 0, cc, r0)     // M G_V M^T
                    body(b, Blas.dot(gu, cc, r0 * r0))
                }
            }
        }
    }

    /// Writes (or, with `accumulate`, adds) the FD gradients into dU, dV and dM_j, laid
    /// out like U, V and M_j. The outputs must not overlap the inputs. Gradients are float32:
    /// where their true value exceeds the float32 range they overflow to inf.
    public static func gradient(_ c: FactorChain, lambda: Float, accumulate: Bool,
                                dU: UnsafeMutablePointer<Float>, dV: UnsafeMutablePointer<Float>,
                                dMiddle: [UnsafeMutablePointer<Float>]) throws {
        try checkLambda(lambda)
        try require(dMiddle.count == c.depth, "expected \(c.depth) middle gradient buffers, got \(dMiddle.count)")
        let r0 = c.rankIn, rd = c.rankOut, big = c.maxPairCount
        let beta: Float = accumulate ? 1 : 0
        if c.depth == 0 {
            try withScratch(pairScratchCount(rank: r0), "the Frobenius decay gradient") { s in
                try pairGradient(c, lambda: lambda, beta: beta, dU: dU, dV: dV, scratch: s, checkFactors: false)
            }
            return
        }
        try withScratch([r0 * r0, rd * rd, r0 * rd, r0 * rd, r0 * r0, rd * rd, r0 * rd, big, big, big, big],
                        "the Frobenius decay gradient") { s in
            let (gu, gv, mm, t1, cc, dd, bb) = (s[0], s[1], s[2], s[3], s[4], s[5], s[6])
            let (prefix, suffix, x, tmp) = (s[7], s[8], s[9], s[10])
            for b in 0..<c.batch {
                Blas.gram(c.u(b), c.m, r0, gu)
                Blas.gram(c.v(b), c.n, rd, gv)
                let dUb = dU + b * c.uCount, dVb = dV + b * c.vCount
                c.middleProduct(b, from: 0, to: c.depth, mm, tmp)
                Blas.gemm(false, false, r0, rd, rd, 1, mm, rd, gv, rd, 0, t1, rd)       // M G_V
                Blas.gemm(false, true, r0, r0, rd, 1, t1, rd, mm, rd, 0, cc, r0)        // C = M G_V M^T
                Blas.gemm(false, false, r0, rd, r0, 1, gu, r0, t1, rd, 0, bb, rd)       // B = G_U M G_V
                Blas.gemm(false, false, r0, rd, r0, 1, gu, r0, mm, rd, 0, t1, rd)       // G_U M
                Blas.gemm(true, false, rd, rd, r0, 1, mm, rd, t1, rd, 0, dd, rd)        // D = M^T G_U M
                Blas.gemm(false, false, c.m, r0, r0, lambda, c.u(b), r0, cc, r0, beta, dUb, r0)
                Blas.gemm(false, false, c.n, rd, rd, lambda, c.v(b), rd, dd, rd, beta, dVb, rd)
                for j in 0..<c.depth {
                    // dM_j = lambda P^T B S^T, P = M_0..M_{j-1} (r0 x r_j), S = M_{j+1}..M_{d-1} (r_{j+1} x rd)
                    let rj = c.ranks[j], rk = c.ranks[j + 1]
                    c.middleProduct(b, from: 0, to: j, prefix, tmp)
                    c.middleProduct(b, from: j + 1, to: c.depth, suffix, tmp)
                    Blas.gemm(true, false, rj, rd, r0, 1, prefix, rj, bb, rd, 0, x, rd)
                    Blas.gemm(false, true, rj, rk, rd, lambda, x, rd, suffix, rd, beta,
                              dMiddle[j] + b * c.middleCount(j), rk)
                }
            }
        }
    }

    /// Floats of scratch `pairGradient` needs for rank r: G_U and G_V.
    public static func pairScratchCount(rank r: Int) -> Int { 2 * r * r }

    /// The depth-0 case of `gradient` (W_b = U_b V_b^T, rank r), with the caller's scratch of
    /// `pairScratchCount(rank: r)` floats: per batch item four products, no allocation,
    ///
    ///     G_U = U_b^T U_b,  G_V = V_b^T V_b,  dU_b = lambda U_b G_V + beta dU_b,  dV_b = lambda V_b G_U + beta dV_b.
    ///
    /// `checkFactors` stands in for the finiteness scan of a chain built with `checkFinite: false`:
    /// a NaN or infinite entry of U_b or V_b makes a diagonal entry of G_U or G_V non-finite
    /// (a sum of squares), which is tested before that item's gradients are written; only then
    /// are U and V scanned, throwing `.invalid` naming the first non-finite entry (as the chain's
    /// own check would; finite entries whose squares overflow pass, as in `gradient`). Items
    /// before the offending one have been written.
    public static func pairGradient(_ c: FactorChain, lambda: Float, beta: Float,
                                    dU: UnsafeMutablePointer<Float>, dV: UnsafeMutablePointer<Float>,
                                    scratch: UnsafeMutablePointer<Float>, checkFactors: Bool) throws {
        let r = c.rankIn, gu = scratch, gv = scratch + r * r
        for b in 0..<c.batch {
            Blas.gram(c.u(b), c.m, r, gu)
            Blas.gram(c.v(b), c.n, r, gv)
            if checkFactors {
                var poison: Float = 0                // x * 0 is 0 for finite x, NaN for NaN and inf
                for i in 0..<r { poison += gu[i * r + i] * 0 + gv[i * r + i] * 0 }
                if poison != 0 {
                    try Finite.check(c.u, c.batch * c.uCount, "U")
                    try Finite.check(c.v, c.batch * c.vCount, "V")
                }
            }
            Blas.gemm(false, false, c.m, r, r, lambda, c.u(b), r, gv, r, beta, dU + b * c.uCount, r)
            Blas.gemm(false, false, c.n, r, r, lambda, c.v(b), r, gu, r, beta, dV + b * c.vCount, r)
        }
    }

    static func checkLambda(_ lambda: Float) throws {
        try require(lambda.isFinite && lambda >= 0, "lam must be a finite number >= 0, got \(lambda)")
    }
}
