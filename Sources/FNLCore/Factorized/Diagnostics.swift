/// Diagnostics of factorized matrices computed without forming W.
public enum Diagnostics {
    /// Nuclear norm ||W_b||_* per batch item. With U = Q_U R_U and V = Q_V R_V (thin QR),
    /// W = Q_U (R_U M R_V^T) Q_V^T and the orthonormal Q's preserve singular values, so
    /// ||W||_* = ||R_U M R_V^T||_*, a problem of size at most r_0 x r_d.
    public static func nuclearNorms(_ c: FactorChain) throws -> [Double] {
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
    public static func balance(_ c: FactorChain) throws -> [Double] {
        try require(c.depth == 0, "factor balance is defined for U V^T without middle matrices")
        let r = c.rankIn
        return try withScratch([r * r, r * r], "the factor balance") { s in
            var out = [Double](repeating: 0, count: c.batch)
            for b in 0..<c.batch {
                Blas.gram(c.u(b), c.m, r, s[0])
                Blas.gram(c.v(b), c.n, r, s[1])
                var acc = 0.0
                for i in 0..<(r * r) { let d = Double(s[0][i]) - Double(s[1][i]); acc += d * d }
                out[b] = acc.squareRoot()
            }
            return out
        }
    }
}
