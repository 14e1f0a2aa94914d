/// A row-major matrix view.
public struct MatrixView {
    public let data: UnsafePointer<Float>
    public let rows: Int
    public let cols: Int
    public init(_ data: UnsafePointer<Float>, _ rows: Int, _ cols: Int) {
        self.data = data; self.rows = rows; self.cols = cols
    }
}

/// Products of short chains of small matrices P = F_0 F_1 ... F_L and the gradients of a
/// loss through them:
///
///     dF_j = (F_0 ... F_{j-1})^T  dP  (F_{j+1} ... F_L)^T.
///
/// Used for the factors of a low-rank kernel U M_1 ... M_d V^T, whose sizes are those of
/// the kernel, never of the batch.
public enum ChainRule {
    /// out (F_0.rows x F_L.cols) = F_0 F_1 ... F_L, multiplied left to right.
    public static func product(_ f: [MatrixView], into out: UnsafeMutablePointer<Float>) throws {
        guard let first = f.first else { return }
        if f.count == 1 { out.update(from: first.data, count: first.rows * first.cols); return }
        let m = first.rows
        let big = f.map { m * $0.cols }.max() ?? 0
        try withScratch([big, big], "a factor product") { s in
            var cur = s[0], nxt = s[1]
            cur.update(from: first.data, count: m * first.cols)
            var cols = first.cols
            for j in 1..<f.count {
                let dst = j == f.count - 1 ? out : nxt
                Blas.gemm(false, false, m, f[j].cols, cols, 1, cur, cols, f[j].data, f[j].cols, 0, dst, f[j].cols)
                cols = f[j].cols
                swap(&cur, &nxt)
            }
        }
    }

    /// Writes dF_j into d[j] (F_j.rows x F_j.cols) for the gradient `g` (F_0.rows x F_L.cols)
    /// of the product.
    public static func gradients(_ f: [MatrixView], g: UnsafePointer<Float>, into d: [UnsafeMutablePointer<Float>]) throws {
        let count = f.count
        guard count > 0 else { return }
        let m = f[0].rows, n = f[count - 1].cols
        if count == 1 { d[0].update(from: g, count: m * n); return }
        // suffix[j] = F_{j+1} ... F_L (F_j.cols x n) for j < L; prefix = F_0 ... F_{j-1} (m x F_j.rows).
        var suffixCounts: [Int] = []
        for j in 0..<(count - 1) { suffixCounts.append(f[j].cols * n) }
        let maxInner = f.map { $0.cols }.max() ?? 0
        try withScratch(suffixCounts + [m * maxInner, m * maxInner, m * maxInner], "factor gradients") { s in
            let suffix = Array(s[0..<(count - 1)])
            var prefix = s[count - 1], prefixNext = s[count], t = s[count + 1]
            let last = f[count - 1]
            suffix[count - 2].update(from: last.data, count: last.rows * last.cols)
            if count >= 3 {
                for j in stride(from: count - 3, through: 0, by: -1) {
                    let fj = f[j + 1]
                    Blas.gemm(false, false, fj.rows, n, fj.cols, 1, fj.data, fj.cols, suffix[j + 1], n, 0, suffix[j], n)
                }
            }
            for j in 0..<count {
                let fj = f[j]
                // T = dP suffix[j]^T (m x F_j.cols), or dP itself for the last factor.
                var tj = g
                if j < count - 1 {
                    Blas.gemm(false, true, m, fj.cols, n, 1, g, n, suffix[j], n, 0, t, fj.cols)
                    tj = UnsafePointer(t)
                }
                if j == 0 {
                    d[0].update(from: tj, count: m * fj.cols)
                    prefix.update(from: fj.data, count: m * fj.cols)
                } else {
                    Blas.gemm(true, false, fj.rows, fj.cols, m, 1, prefix, fj.rows, tj, fj.cols, 0, d[j], fj.cols)
                    if j < count - 1 {
                        Blas.gemm(false, false, m, fj.cols, fj.rows, 1, prefix, fj.rows, fj.data, fj.cols, 0, prefixNext, fj.cols)
                        swap(&prefix, &prefixNext)
                    }
                }
            }
        }
    }
}
