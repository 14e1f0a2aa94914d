#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Adam moments with bias correction, shared by AdamW and LAMB.
///
/// At step t >= 1 (1-based):
///
///     m     = beta1 * m + (1 - beta1) * g
///     v     = beta2 * v + (1 - beta2) * g^2
///     r     = (m / (1 - beta1^t)) / (sqrt(v) / sqrt(1 - beta2^t) + eps)
///
/// which is m_hat / (sqrt(v_hat) + eps) written as PyTorch evaluates it (the bias
/// corrections folded into two scalars computed in float64).
public struct AdamMoments {
    public let beta1: Float
    public let beta2: Float
    public let eps: Float
    public let step: Int
    /// 1 / (1 - beta1^t) and 1 / sqrt(1 - beta2^t).
    let c1: Float
    let c2: Float

    public init(beta1: Float, beta2: Float, eps: Float, step: Int) throws {
        try require(beta1.isFinite && beta1 >= 0 && beta1 < 1, "beta1 must be in [0, 1), got \(beta1)")
        try require(beta2.isFinite && beta2 >= 0 && beta2 < 1, "beta2 must be in [0, 1), got \(beta2)")
        try require(eps.isFinite && eps > 0, "eps must be a finite number > 0, got \(eps)")
        try require(step >= 1, "step must be >= 1 (the 1-based count of this step), got \(step)")
        self.beta1 = beta1; self.beta2 = beta2; self.eps = eps; self.step = step
        let t = Double(step)
        let bc1 = 1 - pow(Double(beta1), t), bc2 = 1 - pow(Double(beta2), t)
        c1 = Float(1 / bc1)
        c2 = Float(1 / bc2.squareRoot())
    }

    /// Updates the moments of 16 lanes in place and returns r.
    @inline(__always)
    func update(_ g: Lanes, _ m: inout Lanes, _ v: inout Lanes) -> Lanes {
        m = Lanes(repeating: beta1) * m + Lanes(repeating: 1 - beta1) * g
        v = Lanes(repeating: beta2) * v + Lanes(repeating: 1 - beta2) * (g * g)
        return direction(m, v)
    }

    /// r = m_hat / (sqrt(v_hat) + eps) from updated moments.
    @inline(__always)
    func direction(_ m: Lanes, _ v: Lanes) -> Lanes {
        (m * Lanes(repeating: c1)) / (vsqrt(v) * Lanes(repeating: c2) + Lanes(repeating: eps))
    }
}

/// AdamW (Loshchilov & Hutter 2019) with PyTorch's conventions (torch.optim.AdamW: the
/// decoupled decay is scaled by lr), and the decay term of `OptimTensors`:
///
///     m, v, r as in `AdamMoments`
///     w  -= lr * (r + decay_i * w + fd_i)
///
/// For a Frobenius-decay group decay_i = 0 on the factors and fd_i = lambda * grad of
/// (1/2)||U M V^T||_F^2 (the paper's "subtract lambda * eta times the Frobenius gradients"),
/// i.e. decoupled FD; PyTorch's w *= (1 - lr lambda); w -= lr r is the same update.
/// One fused pass: reads g, w, m, v (and fd), writes w, m, v.
public enum AdamW {
    public static func step(_ t: OptimTensors, expAvg: [UnsafeMutablePointer<Float>],
                            expAvgSq: [UnsafeMutablePointer<Float>],
                            products: [FactorProduct] = [], fdLambda: [Float] = [],
                            workspace: UnsafeMutableBufferPointer<Float>? = nil,
                            lr: Float, moments: AdamMoments, checkFinite: Bool = true) throws {
        try require(lr.isFinite && lr >= 0, "lr must be a finite number >= 0, got \(lr)")
        try require(expAvg.count == t.count && expAvgSq.count == t.count,
                    "exp_avg and exp_avg_sq must have one buffer per tensor (\(t.count))")
        let chunks = t.chunks()
        if checkFinite { try t.checkGradientsFinite(chunks) }
        try FactorDecayTerms.with(t, products, lambda: fdLambda, workspace: workspace) { fd in
            let lrv = Lanes(repeating: lr)
            t.run(chunks) { _, c in
                let w = t.params[c.tensor] + c.lo, g = t.grads[c.tensor] + c.lo
                let mp = expAvg[c.tensor] + c.lo, vp = expAvgSq[c.tensor] + c.lo
                let f = fd[c.tensor].map { $0 + c.lo }
                let lam = Lanes(repeating: t.decay[c.tensor])
                forEachLanes(c.hi - c.lo) { i, k in
                    var m = vload(mp, i, k), v = vload(vp, i, k)
                    let wv = vload(w, i, k)
                    var u = moments.update(vload(g, i, k), &m, &v) + lam * wv
                    if let f { u += vload(f, i, k) }
                    vstore(m, mp, i, k)
                    vstore(v, vp, i, k)
                    vstore(wv - lrv * u, w, i, k)
                }
            }
        }
    }
}
