/// LAMB (You et al. 2020, "Large batch optimization for deep learning: training BERT in
/// 76 minutes", Algorithm 2) and FLAMBe (Shen et al., "Initialization and regularization of
/// factorized neural layers", 2021, Section 5): the same layer-wise trust-ratio step, only the
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
/// Two passes over each chunk: the first updates m and v and accumulates ||w||^2 and ||u||^2
/// (float SIMD accumulators flushed to float64 every 1024 floats, partial sums reduced in
/// chunk order: deterministic for any thread count); the second recomputes u from the
/// stored m, v (bit-identical arithmetic) and applies the step, so no buffer for u is needed.
public enum LAMB {
    /// One step; writes each tensor's trust ratio into `trust` when given.
    public static func step(_ t: OptimTensors, expAvg: [UnsafeMutablePointer<Float>],
                            expAvgSq: [UnsafeMutablePointer<Float>],
                            products: [FactorProduct] = [], fdLambda: [Float] = [],
                            workspace: UnsafeMutableBufferPointer<Float>? = nil,
                            lr: Float, moments: AdamMoments, checkFinite: Bool = true,
                            trust: UnsafeMutablePointer<Double>? = nil) throws {
        try require(lr.isFinite && lr >= 0, "lr must be a finite number >= 0, got \(lr)")
        try require(expAvg.count == t.count && expAvgSq.count == t.count,
                    "exp_avg and exp_avg_sq must have one buffer per tensor (\(t.count))")
        let chunks = t.chunks()
        if checkFinite { try t.checkGradientsFinite(chunks) }
        try FactorDecayTerms.with(t, products, lambda: fdLambda, workspace: workspace) { fd in
            // Pass 1: moments, partial ||w||^2 and ||u||^2 per chunk.
            var partial = [Double](repeating: 0, count: 2 * chunks.count)
            partial.withUnsafeMutableBufferPointer { sums in
                t.run(chunks) { k, c in
                    let w = UnsafePointer(t.params[c.tensor] + c.lo), g = t.grads[c.tensor] + c.lo
                    let mp = expAvg[c.tensor] + c.lo, vp = expAvgSq[c.tensor] + c.lo
                    let f = fd[c.tensor].map { $0 + c.lo }
                    let lam = Lanes(repeating: t.decay[c.tensor])
                    var sw = 0.0, su = 0.0, aw = Lanes(repeating: 0), au = Lanes(repeating: 0), n = 0
                    forEachLanes(c.hi - c.lo) { i, k in
                        var m = vload(mp, i, k), v = vload(vp, i, k)
                        let wv = vload(w, i, k)
                        var u = moments.update(vload(g, i, k), &m, &v) + lam * wv
                        if let f { u += vload(f, i, k) }
                        vstore(m, mp, i, k)
                        vstore(v, vp, i, k)
                        aw += wv * wv
                        au += u * u
                        n += 1
                        if n == 64 {
                            sw += Double(aw.sum()); su += Double(au.sum())
                            aw = Lanes(repeating: 0); au = Lanes(repeating: 0); n = 0
                        }
                    }
                    sums[2 * k] = sw + Double(aw.sum())
                    sums[2 * k + 1] = su + Double(au.sum())
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
            // Pass 2: w -= lr * trust * u with u recomputed from the stored moments.
            t.run(chunks) { _, c in
                let w = t.params[c.tensor] + c.lo
                let mp = UnsafePointer(expAvg[c.tensor] + c.lo), vp = UnsafePointer(expAvgSq[c.tensor] + c.lo)
                let f = fd[c.tensor].map { $0 + c.lo }
                let lam = Lanes(repeating: t.decay[c.tensor])
                let scale = Lanes(repeating: Float(Double(lr) * ratios[c.tensor]))
                forEachLanes(c.hi - c.lo) { i, k in
                    let wv = vload(w, i, k)
                    var u = moments.direction(vload(mp, i, k), vload(vp, i, k)) + lam * wv
                    if let f { u += vload(f, i, k) }
                    vstore(wv - scale * u, w, i, k)
                }
            }
        }
    }

    /// The trust ratio ||w|| / ||u|| from squared norms (1 when either is 0).
    public static func trustRatio(_ wsq: Double, _ usq: Double) -> Double {
        let wn = wsq.squareRoot(), un = usq.squareRoot()
        return wn > 0 && un > 0 ? wn / un : 1
    }
}
