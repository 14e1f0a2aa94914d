import CBLAS

/// Row-major BLAS wrappers on Swift Ints. Callers validate that dimensions fit in Int32
/// (`Dimensions.checkMatrix`); these wrappers only convert. Tiny products run as plain
/// loops, where the BLAS call overhead would dominate.
public enum Blas {
    /// C = alpha * op(A) * op(B) + beta * C, with op(A) m x k, op(B) k x n, all row-major.
    public static func gemm(_ transA: Bool, _ transB: Bool, _ m: Int, _ n: Int, _ k: Int,
                            _ alpha: Float, _ a: UnsafePointer<Float>, _ lda: Int,
                            _ b: UnsafePointer<Float>, _ ldb: Int,
                            _ beta: Float, _ c: UnsafeMutablePointer<Float>, _ ldc: Int) {
        if m == 0 || n == 0 { return }
        if m * n * k <= 512 {
            for i in 0..<m {
                for j in 0..<n {
                    var s: Float = 0
                    for p in 0..<k {
                        let av = transA ? a[p * lda + i] : a[i * lda + p]
                        let bv = transB ? b[j * ldb + p] : b[p * ldb + j]
                        s += av * bv
                    }
                    c[i * ldc + j] = alpha * s + (beta == 0 ? 0 : beta * c[i * ldc + j])
                }
            }
            return
        }
        cblas_sgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
                    Int32(m), Int32(n), Int32(k), alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
    }

    /// G = A^T A (k x k, full symmetric) for a row-major A of rows x k.
    public static func gram(_ a: UnsafePointer<Float>, _ rows: Int, _ k: Int,
                            _ g: UnsafeMutablePointer<Float>) {
        if rows * k * k <= 512 {
            gemm(true, false, k, k, rows, 1, a, k, a, k, 0, g, k)
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
