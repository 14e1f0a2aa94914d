/// LAMB (You et al. 2020, "Large batch optimization for deep learning: training BERT in
/// 76 minutes", Algorithm 2) and FLAMBe (Khodak, Tenenholtz, Mackey and Fusi, "Initialization and regularization of
/// factorized neural layers", ICLR 2021, Section 5): the same layer-wise trust-ratio step, only the
/// decay term differs.
///
/// Per tensor w (a "layer" of the paper is one parameter tensor), at step t >= 1:
///
///     m, v, r = m_hat / (sqrt(v_hat) + eps)          (`AdamMoments`, bias-corrected)
///     u       = r + decay_i * w + fd_i               (LAMB: decay_i = lambda, fd_i = 0;
///                                                     FLAMBe factors: decay_i = 0,
///                                                     fd_i = lambda grad (1/2)||U M V^T||_F^2)
///     trust   = ||w||_2 / ||u||_2, or 1 when either norm is 0   (phi = identity)
///     w      -= lr * trust * u
///
/// Two passes: the first updates m and v, writes u into an update buffer (one float per
/// parameter, caller-provided or temporary) and accumulates ||w||^2 and ||u||^2 (float SIMD
/// accumulators per block of 1024 floats, summed in float64 and reduced in chunk order:
/// deterministic for any thread count); the second applies w -= lr * trust * u. Storing u
/// costs one extra stream but halves the arithmetic (sqrt and division are not recomputed),
/// which is what bounds this step on SSE-only builds.
public enum LAMB {
    /// One step; writes each tensor's trust ratio into `trust` when given.
    public static func step(_ t: OptimTensors, expAvg: [UnsafeMutablePointer<Float>],
                            expAvgSq: [UnsafeMutablePointer<Float>],
                            products: [FactorProduct] = [], fdLambda: [Float] = [],
                            workspace: UnsafeMutableBufferPointer<Float>? = nil,
                            update: UnsafeMutableBufferPointer<Float>? = nil,
                            lr: Float, moments: AdamMoments, checkFinite: Bool = true,
                            trust: UnsafeMutablePointer<Double>? = nil) throws {
        try require(lr.isFinite && lr >= 0, "lr must be a finite number >= 0, got \(lr)")
        try require(expAvg.count == t.count && expAvgSq.count == t.count,
                    "exp_avg and exp_avg_sq must have one buffer per tensor (\(t.count))")
        if checkFinite { try t.checkGradientsFinite(t.chunks()) }
        if let update {
            try require(update.count >= t.totalCount,
                        "the update buffer must hold at least \(t.totalCount) floats, got \(update.count)")
            guard let base = update.baseAddress else { throw FNLError.invalid("the update buffer is a null pointer") }
            try run(t, expAvg, expAvgSq, products, fdLambda, workspace, base, lr, moments, trust)
        } else {
            try withScratch(t.totalCount, "the LAMB update") {
                try run(t, expAvg, expAvgSq, products, fdLambda, workspace, $0, lr, moments, trust)
            }
        }
    }

    private static func run(_ t: OptimTensors, _ expAvg: [UnsafeMutablePointer<Float>],
                            _ expAvgSq: [UnsafeMutablePointer<Float>], _ products: [FactorProduct],
                            _ fdLambda: [Float], _ workspace: UnsafeMutableBufferPointer<Float>?,
                            _ update: UnsafeMutablePointer<Float>, _ lr: Float, _ moments: AdamMoments,
                            _ trust: UnsafeMutablePointer<Double>?) throws {
        var offsets = [Int](repeating: 0, count: t.count)
        for i in 1..<max(t.count, 1) { offsets[i] = offsets[i - 1] + t.sizes[i - 1] }
        let chunks = t.chunks()
        try FactorDecayTerms.with(t, products, lambda: fdLambda, workspace: workspace) { fd in
            // Pass 1: moments, partial ||w||^2 and ||u||^2 per chunk.
            var partial = [Double](repeating: 0, count: 2 * chunks.count)
            partial.withUnsafeMutableBufferPointer { sums in
                t.run(chunks) { k, c in
                    let w = UnsafePointer(t.params[c.tensor] + c.lo), g = t.grads[c.tensor] + c.lo
                    let mp = expAvg[c.tensor] + c.lo, vp = expAvgSq[c.tensor] + c.lo
                    let f = fd[c.tensor].map { $0 + c.lo }
                    let up = update + offsets[c.tensor] + c.lo
                    let lam = Lanes(repeating: t.decay[c.tensor])
                    var sw = 0.0, su = 0.0, lo = 0
                    let n = c.hi - c.lo
                    while lo < n {                       // blocks of 1024 floats: float partial sums
                        let len = min(1024, n - lo)
                        var aw = Lanes(repeating: 0), au = Lanes(repeating: 0)
                        forEachLanes(len) { i0, k in
                            let i = lo + i0
                            var m = vload(mp, i, k), v = vload(vp, i, k)
                            let wv = vload(w, i, k)
                            var u = moments.update(vload(g, i, k), &m, &v) + lam * wv
                            if let f { u += vload(f, i, k) }
                            vstore(m, mp, i, k)
                            vstore(v, vp, i, k)
                            vstore(u, up, i, k)
                            aw += wv * wv
                            au += u * u
                        }
                        sw += Double(aw.sum())
                        su += Double(au.sum())
                        lo += len
                    }
                    sums[2 * k] = sw
                    sums[2 * k + 1] = su
                }
            }
            // Trust ratios, reduced in chunk order.
            var wsq = [Double](repeating: 0, count: t.count), usq = wsq
            for (k, c) in chunks.enumerated() {
                wsq[c.tensor] += partial[2 * k]
                usq[c.tensor] += partial[2 * k + 1]
            }
            let ratios = (0..<t.count).map { trustRatio(wsq[$0], usq[$0]) }
            if let trust { for i in 0..<t.count { trust[i] = ratios[i] } }
            // Pass 2: w -= lr * trust * u.
            t.run(chunks) { _, c in
                let w = t.params[c.tensor] + c.lo
                let up = UnsafePointer(update + offsets[c.tensor] + c.lo)
                let scale = Lanes(repeating: Float(Double(lr) * ratios[c.tensor]))
                forEachLanes(c.hi - c.lo) { i, k in vstore(vload(w, i, k) - scale * vload(up, i, k), w, i, k) }
            }
        }
    }

    /// The trust ratio ||w|| / ||u|| from squared norms (1 when either is 0).
    public static func trustRatio(_ wsq: Double, _ usq: Double) -> Double {
        let wn = wsq.squareRoot(), un = usq.squareRoot()
        return wn > 0 && un > 0 ? wn / un : 1
    }
}
