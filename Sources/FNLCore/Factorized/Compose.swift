/// Collapse of factorized matrices: W_b = U_b M_1b ... M_db V_b^T written densely (m x n),
/// multiplying in the cheaper order, (U M) V^T or U (M V^T), by operation count.
public enum Compose {
    public static func compose(_ c: FactorChain, into w: UnsafeMutablePointer<Float>) throws {
        let r0 = c.rankIn, rd = c.rankOut, big = c.maxPairCount
        let leftFirst = c.m <= c.n
        let partial = leftFirst ? c.m * rd : c.n * r0
        try withScratch([big, big, partial], "compose") { s in
            let (mm, tmp, part) = (s[0], s[1], s[2])
            for b in 0..<c.batch {
                let wb = w + b * c.m * c.n
                if c.depth == 0 {
                    Blas.gemm(false, true, c.m, c.n, r0, 1, c.u(b), r0, c.v(b), rd, 0, wb, c.n)
                    continue
                }
                c.middleProduct(b, from: 0, to: c.depth, mm, tmp)
                if leftFirst {
                    Blas.gemm(false, false, c.m, rd, r0, 1, c.u(b), r0, mm, rd, 0, part, rd)     // U M
                    Blas.gemm(false, true, c.m, c.n, rd, 1, part, rd, c.v(b), rd, 0, wb, c.n)     // (U M) V^T
                } else {
                    Blas.gemm(false, true, c.n, r0, rd, 1, c.v(b), rd, mm, rd, 0, part, r0)      // V M^T
                    Blas.gemm(false, true, c.m, c.n, r0, 1, c.u(b), r0, part, r0, 0, wb, c.n)     // U (V M^T)^T
                }
            }
        }
    }
}
