import CBLAS

/// Row-major BLAS wrappers on Swift Ints. Callers validate that dimensions fit in Int32
/// (`Dimensions.checkMatrix`); these wrappers only convert.
///
/// Small products matter here: Frobenius decay on a low-rank network makes ~4 products per
/// factor pair, of a few hundred to ~70k multiply-adds each. For those, OpenBLAS's
/// small-matrix sgemm kernels (AVX-512, ~12 multiply-adds per cycle at r = 19, 20-50 ns per
/// call) beat SIMD loops in Swift (baseline x86-64: SSE without FMA, at most 8 per cycle),
/// except for Gram matrices of 1-4 columns (`NarrowGram`). ssyrk costs ~3x an sgemm call and
/// loses to a plain sgemm below ~10^6 multiply-adds (OpenBLAS's small-matrix range) despite
/// doing half the work. The crossovers (`narrowGramWork`, `gemmGramWork`) were measured on
/// the development machine (AMD EPYC, OpenBLAS 0.3.21 SkylakeX kernels); every path computes
/// the same sums up to float32 rounding.
public enum Blas {
    /// rows * k * k up to which `gram` with 2 <= k <= 4 runs in Swift (`NarrowGram`, 1.1-5x
    /// faster than the sgemm call there); k = 1 (a sum of squares) always does.
    public static let narrowGramWork = 4096
    /// rows * k * k up to which `gram` calls sgemm (OpenBLAS's small-matrix kernels) rather
    /// than ssyrk.
    public static let gemmGramWork = 1 << 20

    /// C = alpha * op(A) * op(B) + beta * C, with op(A) m x k, op(B) k x n, all row-major.
    /// With beta = 0 the previous contents of C are ignored (even NaN).
    public static func gemm(_ transA: Bool, _ transB: Bool, _ m: Int, _ n: Int, _ k: Int,
                            _ alpha: Float, _ a: UnsafePointer<Float>, _ lda: Int,
                            _ b: UnsafePointer<Float>, _ ldb: Int,
                            _ beta: Float, _ c: UnsafeMutablePointer<Float>, _ ldc: Int) {
        if m == 0 || n == 0 { return }
        if k == 0 {      // (OpenBLAS rejects lda = 0): C = beta C
            for i in 0..<m { for j in 0..<n { c[i * ldc + j] = beta == 0 ? 0 : beta * c[i * ldc + j] } }
            return
        }
        cblas_sgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
                    Int32(m), Int32(n), Int32(k), alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
    }

    /// G = A^T A (k x k, full symmetric) for a row-major A of rows x k.
    public static func gram(_ a: UnsafePointer<Float>, _ rows: Int, _ k: Int,
                            _ g: UnsafeMutablePointer<Float>) {
        if k == 0 { return }
        if rows == 0 { g.update(repeating: 0, count: k * k); return }
        if k == 1 { g[0] = NarrowGram.squares(a, rows); return }
        if k <= 4 && rows <= narrowGramWork && rows * k * k <= narrowGramWork {
            NarrowGram.run(a, rows, k, g)
            return
        }
        if k <= gemmGramWork && rows <= gemmGramWork && rows * k * k <= gemmGramWork {
            // OpenBLAS's small kernels cover 16 columns per AVX-512 vector, so a width 16 j + e
            // (0 < e < 16) costs as much as 16 (j + 1): the leading 16 j x 16 j block and the
            // last e columns (k x e) as two calls are 10-20% faster (measured at k = 17..47).
            // The lower triangle is then copied from the upper one: OpenBLAS's kernels need not
            // give G[i, j] and G[j, i] the same summation order (the Haswell ones do not).
            let (kk, h) = (Int32(k), Int32(k / 16 * 16))
            if h == 0 || h == kk {
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, kk, kk, Int32(rows), 1, a, kk, a, kk, 0, g, kk)
            } else {
                let hh = Int(h)
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, h, h, Int32(rows), 1, a, kk, a, kk, 0, g, kk)
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, kk, kk - h, Int32(rows), 1, a, kk, a + hh, kk,
                            0, g + hh, kk)
            }
            for i in 0..<k { for j in 0..<i { g[i * k + j] = g[j * k + i] } }
            return
        }
        cblas_ssyrk(CblasRowMajor, CblasUpper, CblasTrans, Int32(k), Int32(rows), 1, a, Int32(k), 0, g, Int32(k))
        for i in 0..<k { for j in 0..<i { g[i * k + j] = g[j * k + i] } }
    }

    /// Sum of squares in float64 (no overflow for any float32 input).
    public static func sumOfSquares(_ x: UnsafePointer<Float>, _ count: Int) -> Double {
        var acc = SIMD8<Double>(repeating: 0)
        var i = 0
        while i + 8 <= count {
            let v = SIMD8<Double>(UnsafeRawPointer(x + i).loadUnaligned(as: SIMD8<Float>.self))
            acc += v * v
            i += 8
        }
        var s = acc.sum()
        while i < count { let v = Double(x[i]); s += v * v; i += 1 }
        return s
    }

    /// Frobenius inner product <A, B> = sum_ij A_ij B_ij in float64.
    public static func dot(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ count: Int) -> Double {
        var acc = SIMD8<Double>(repeating: 0)
        var i = 0
        while i + 8 <= count {
            let va = SIMD8<Double>(UnsafeRawPointer(a + i).loadUnaligned(as: SIMD8<Float>.self))
            let vb = SIMD8<Double>(UnsafeRawPointer(b + i).loadUnaligned(as: SIMD8<Float>.self))
            acc += va * vb
            i += 8
        }
        var s = acc.sum()
        while i < count { s += Double(a[i]) * Double(b[i]); i += 1 }
        return s
    }

    /// Copies a row-major rows x cols matrix, or its transpose when `transpose`.
    public static func copy(_ src: UnsafePointer<Float>, _ rows: Int, _ cols: Int,
                            _ dst: UnsafeMutablePointer<Float>, transpose: Bool = false) {
        if !transpose { dst.update(from: src, count: rows * cols); return }
        for i in 0..<rows { for j in 0..<cols { dst[j * rows + i] = src[i * cols + j] } }
    }

    /// Writes the k x k identity.
    public static func identity(_ k: Int, _ dst: UnsafeMutablePointer<Float>) {
        dst.update(repeating: 0, count: k * k)
        for i in 0..<k { dst[i * k + i] = 1 }
    }
}

/// G = A^T A for a row-major A with k <= 4 columns, in Swift: for these shapes the BLAS call
/// costs more than the product (Gram matrices of rank-1..4 factors).
///
/// One pass over the rows of A with four SIMD4 accumulators: acc_p += A[i, p] * A[i, 0..<4]
/// (written `acc += a * b`, see the ARCHITECTURE pitfalls), even and odd rows into separate
/// accumulators (two dependency chains) added at the end. Rows are loaded as 4 floats,
/// which reads past a row's k values but never past A's last element (the last rows are loaded
/// value by value); the extra lanes are dropped.
public enum NarrowGram {
    /// G (k x k) for 1 <= k <= 4.
    public static func run(_ a: UnsafePointer<Float>, _ rows: Int, _ k: Int, _ g: UnsafeMutablePointer<Float>) {
        if k == 1 { g[0] = squares(a, rows); return }
        typealias V = SIMD4<Float>
        // rows i whose 4-float load stays inside A: i * k + 4 <= rows * k
        let full = rows * k < 4 ? 0 : (rows * k - 4) / k + 1
        let q1 = min(1, k - 1), q2 = min(2, k - 1), q3 = min(3, k - 1)
        var a0 = V(), a1 = V(), a2 = V(), a3 = V()      // even rows
        var b0 = V(), b1 = V(), b2 = V(), b3 = V()      // odd rows (two independent chains)
        var p = a
        for _ in 0..<(full / 2) {
            let v = UnsafeRawPointer(p).loadUnaligned(as: V.self)
            let w = UnsafeRawPointer(p + k).loadUnaligned(as: V.self)
            a0 += V(repeating: p[0]) * v
            a1 += V(repeating: p[q1]) * v
            a2 += V(repeating: p[q2]) * v
            a3 += V(repeating: p[q3]) * v
            b0 += V(repeating: p[k]) * w
            b1 += V(repeating: p[k + q1]) * w
            b2 += V(repeating: p[k + q2]) * w
            b3 += V(repeating: p[k + q3]) * w
            p += 2 * k
        }
        a0 += b0; a1 += b1; a2 += b2; a3 += b3
        for _ in (full / 2 * 2)..<full {
            let v = UnsafeRawPointer(p).loadUnaligned(as: V.self)
            a0 += V(repeating: p[0]) * v
            a1 += V(repeating: p[q1]) * v
            a2 += V(repeating: p[q2]) * v
            a3 += V(repeating: p[q3]) * v
            p += k
        }
        for _ in full..<rows {
            var v = V()
            for j in 0..<4 where j < k { v[j] = p[j] }
            a0 += V(repeating: p[0]) * v
            a1 += V(repeating: p[q1]) * v
            a2 += V(repeating: p[q2]) * v
            a3 += V(repeating: p[q3]) * v
            p += k
        }
        for j in 0..<k {
            g[j] = a0[j]
            g[k + j] = a1[j]
            if k > 2 { g[2 * k + j] = a2[j] }
            if k > 3 { g[3 * k + j] = a3[j] }
        }
    }

    /// sum_i x_i^2 in float32 (the Gram "matrix" of one column), in 16 interleaved partial sums.
    public static func squares(_ x: UnsafePointer<Float>, _ count: Int) -> Float {
        var acc0 = SIMD8<Float>(), acc1 = SIMD8<Float>()
        var i = 0
        while i + 16 <= count {
            let u = UnsafeRawPointer(x + i).loadUnaligned(as: SIMD8<Float>.self)
            let v = UnsafeRawPointer(x + i + 8).loadUnaligned(as: SIMD8<Float>.self)
            acc0 += u * u
            acc1 += v * v
            i += 16
        }
        var s = (acc0 + acc1).sum()
        while i < count { s += x[i] * x[i]; i += 1 }
        return s
    }
}
