/// Diagnostics of factorized matrices computed without forming W.
public enum Diagnostics {
    /// Nuclear norm ||W_b||_* per batch item. With U = Q_U R_U and V = Q_V R_V (thin QR),
    /// W = Q_U (R_U M R_V^T) Q_V^T and the orthonormal Q's preserve singular values, so
    /// ||W||_* = ||R_U M R_V^T||_*, a problem of size at most r_0 x r_d.
    /// Items whose float32 intermediates overflow or underflow are recomputed on normalized copies
    /// (||s W||_* = s ||W||_*), so the result is finite whenever the norm fits a double.
    public static func nuclearNorms(_ c: FactorChain) throws -> [Double] {
        var out = try qrNuclearNorms(c)
        for b in 0..<c.batch where FactorChain.suspect(out[b]) {
            out[b] = try c.withNormalizedItem(b) { item, scale in try qrNuclearNorms(item)[0] * scale }
        }
        return out
    }

    static func qrNuclearNorms(_ c: FactorChain) throws -> [Double] {
        let r0 = c.rankIn, rd = c.rankOut, big = c.maxPairCount
        let ku = min(c.m, r0), kv = min(c.n, rd)
        return try withScratch([max(c.uCount, c.vCount), ku * r0, kv * rd, big, big, ku * rd, ku * kv, min(ku, kv)],
                               "the nuclear norm") { s in
            let (copy, ru, rv, mm, tmp, t, x, sv) = (s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7])
            var out = [Double](repeating: 0, count: c.batch)
            for b in 0..<c.batch {
                Blas.copy(c.u(b), c.m, r0, copy)
                try QR.rFactor(copy, c.m, r0, ru)
                Blas.copy(c.v(b), c.n, rd, copy)
                try QR.rFactor(copy, c.n, rd, rv)
                if c.depth == 0 {
                    Blas.gemm(false, true, ku, kv, r0, 1, ru, r0, rv, rd, 0, x, kv)
                } else {
                    c.middleProduct(b, from: 0, to: c.depth, mm, tmp)
                    Blas.gemm(false, false, ku, rd, r0, 1, ru, r0, mm, rd, 0, t, rd)
                    Blas.gemm(false, true, ku, kv, rd, 1, t, rd, rv, rd, 0, x, kv)
                }
                if Finite.firstNonFinite(x, ku * kv) != nil {
                    out[b] = .infinity  // float32 overflow: the caller recomputes on a normalized copy
                    continue
                }
                try SVD.thin(x, ku, kv, s: sv, p: nil, qt: nil)
                var total = 0.0
                for i in 0..<min(ku, kv) { total += Double(sv[i]) }
                out[b] = total
            }
            return out
        }
    }

    /// Factor balance ||U_b^T U_b - V_b^T V_b||_F per batch item (depth 0 only): zero after
    /// spectral initialization, where both Grams equal diag(S).
    /// Items whose float32 Grams overflow or underflow are recomputed on copies of U_b and V_b divided by
    /// their common largest magnitude c (the balance scales as c^2).
    public static func balance(_ c: FactorChain) throws -> [Double] {
        try require(c.depth == 0, "factor balance is defined for U V^T without middle matrices")
        let r = c.rankIn
        return try withScratch([r * r, r * r], "the factor balance") { s in
            var out = [Double](repeating: 0, count: c.batch)
            for b in 0..<c.batch {
                out[b] = gramDistance(c.u(b), c.m, c.v(b), c.n, r, s[0], s[1])
                if !FactorChain.suspect(out[b]) { continue }
                var mx: Float = 0
                for i in 0..<c.uCount { mx = max(mx, abs(c.u(b)[i])) }
                for i in 0..<c.vCount { mx = max(mx, abs(c.v(b)[i])) }
                if mx == 0 { continue }
                let inv = 1 / Double(mx)
                out[b] = try withScratch([c.uCount, c.vCount], "the factor balance") { t in
                    for i in 0..<c.uCount { t[0][i] = Float(Double(c.u(b)[i]) * inv) }
                    for i in 0..<c.vCount { t[1][i] = Float(Double(c.v(b)[i]) * inv) }
                    return gramDistance(t[0], c.m, t[1], c.n, r, s[0], s[1]) * Double(mx) * Double(mx)
                }
            }
            return out
        }
    }

    /// ||U^T U - V^T V||_F with the Grams in float32 and the difference in float64.
    static func gramDistance(_ u: UnsafePointer<Float>, _ m: Int, _ v: UnsafePointer<Float>, _ n: Int, _ r: Int,
                             _ gu: UnsafeMutablePointer<Float>, _ gv: UnsafeMutablePointer<Float>) -> Double {
        Blas.gram(u, m, r, gu)
        Blas.gram(v, n, r, gv)
        var acc = 0.0
        for i in 0..<(r * r) { let d = Double(gu[i]) - Double(gv[i]); acc += d * d }
        return acc.squareRoot()
    }
}
