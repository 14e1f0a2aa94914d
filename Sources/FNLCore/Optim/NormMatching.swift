#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The norm-matching ablation of Khodak, Tenenholtz, Mackey and Fusi (ICLR 2021, Figure 3, "no decay (normalized)"):
/// training without decay, but after every step each factorized product is rescaled so that
/// its Frobenius norm follows a trajectory recorded from a Frobenius-decay run, isolating the
/// effect of FD on the norm (and so on the effective step size lr / ||W||_F^2).
///
/// For product W = U M_1 ... M_d V^T (batched: the norm of the whole stack,
/// sqrt(sum_b ||W_b||_F^2)) with current norm c and target tau:
///
///     s = (tau / c)^(1 / (d + 2)),   U <- s U,  V <- s V,  M_j <- s M_j
///
/// so ||W||_F becomes tau and all d + 2 factors change by the same ratio (their balance is
/// kept). A product with c = 0 is left unchanged (no direction to rescale). Norms come
/// from Gram matrices (`FrobeniusDecay.squaredNorms`), never forming W.
public enum NormMatching {
    /// ||W_c||_F of every product, in float64.
    public static func norms(_ products: [FactorProduct], params: [UnsafeMutablePointer<Float>]) throws -> [Double] {
        try products.enumerated().map { c, p in
            do {
                return try FrobeniusDecay.squaredNorms(try p.chain(params)).reduce(0, +).squareRoot()
            } catch let FNLError.invalid(msg) {
                throw FNLError.invalid("factor product \(c): \(msg)")
            }
        }
    }

    /// Rescales every product to its target norm (finite, >= 0) and returns the norms before.
    /// All targets are validated before any factor changes.
    public static func rescale(_ products: [FactorProduct], params: [UnsafeMutablePointer<Float>],
                               sizes: [Int], targets: [Double]) throws -> [Double] {
        try require(targets.count == products.count,
                    "expected one target norm per factor product (\(products.count)), got \(targets.count)")
        for (c, x) in targets.enumerated() {
            try require(x.isFinite && x >= 0, "target norm \(c) must be a finite number >= 0, got \(x)")
        }
        let before = try norms(products, params: params)
        var scales: [Float] = []
        for (c, p) in products.enumerated() {
            guard before[c] > 0 else { scales.append(1); continue }
            let s = Float(pow(targets[c] / before[c], 1 / Double(p.depth + 2)))
            try require(s.isFinite, "factor product \(c): rescaling from norm \(before[c]) to \(targets[c]) "
                            + "overflows float32")
            scales.append(s)
        }
        for (c, p) in products.enumerated() where scales[c] != 1 {
            for i in p.tensors { scale(params[i], sizes[i], scales[c]) }
        }
        return before
    }

    /// x *= s over n floats.
    static func scale(_ x: UnsafeMutablePointer<Float>, _ n: Int, _ s: Float) {
        let sv = Lanes(repeating: s)
        forEachLanes(n) { i, k in vstore(vload(x, i, k) * sv, x, i, k) }
    }
}
