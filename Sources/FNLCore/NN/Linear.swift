/// Fully connected layers on a batch x (N x n_in), row-major, through BLAS.
///
/// Dense:      y = x W^T + b                      W: (n_out x n_in)
/// Low-rank:   y = x (U M_1 ... M_d V^T)^T + b = x V M_d^T ... M_1^T U^T + b
///             U: (n_out x r_0), M_j: (r_{j-1} x r_j), V: (n_in x r_d)
///
/// Never forms W for the low-rank form: the batch passes through the chain
/// t_d = x V, t_{j-1} = t_j M_j^T, y = t_0 U^T, at O(N (r_d n_in + sum r_{j-1} r_j + r_0 n_out)).
/// Backward (g_0 = dy U, g_j = g_{j-1} M_j):
///     dU = dy^T t_0,  dM_j = g_{j-1}^T t_j,  dV = x^T g_d,  dx = g_d V^T,  db = sum_rows dy
/// The chain t_j is recomputed in the backward call (no state is kept between calls).
public enum LinearLayer {
    static func checkDims(_ n: Int, _ nIn: Int, _ nOut: Int) throws {
        try Dimensions.checkMatrix(n, nIn, "x")
        try Dimensions.checkMatrix(n, nOut, "y")
        try Dimensions.checkMatrix(nOut, nIn, "W")
    }

    static func addBias(_ y: UnsafeMutablePointer<Float>, _ n: Int, _ nOut: Int, _ bias: UnsafePointer<Float>?) {
        guard let bias else { return }
        for i in 0..<n {
            let row = y + i * nOut
            for j in 0..<nOut { row[j] += bias[j] }
        }
    }

    static func biasGrad(_ dy: UnsafePointer<Float>, _ n: Int, _ nOut: Int, _ db: UnsafeMutablePointer<Float>?,
                         accumulate: Bool) {
        guard let db else { return }
        withUnsafeTemporaryAllocation(of: Double.self, capacity: nOut) { acc in
            acc.initialize(repeating: 0)
            for i in 0..<n {
                let row = dy + i * nOut
                for j in 0..<nOut { acc[j] += Double(row[j]) }
            }
            for j in 0..<nOut { db[j] = Float(acc[j]) + (accumulate ? db[j] : 0) }
        }
    }

    public static func forward(_ x: UnsafePointer<Float>, n: Int, nIn: Int, nOut: Int,
                               w: UnsafePointer<Float>, bias: UnsafePointer<Float>?,
                               y: UnsafeMutablePointer<Float>) throws {
        try checkDims(n, nIn, nOut)
        Blas.gemm(false, true, n, nOut, nIn, 1, x, nIn, w, nIn, 0, y, nOut)
        addBias(y, n, nOut, bias)
    }

    /// dW (+)= dy^T x, db (+)= column sums of dy, dx = dy W (when dx is given).
    public static func backward(_ dy: UnsafePointer<Float>, _ x: UnsafePointer<Float>, n: Int, nIn: Int, nOut: Int,
                                w: UnsafePointer<Float>, accumulate: Bool,
                                dw: UnsafeMutablePointer<Float>, db: UnsafeMutablePointer<Float>?,
                                dx: UnsafeMutablePointer<Float>?) throws {
        try checkDims(n, nIn, nOut)
        Blas.gemm(true, false, nOut, nIn, n, 1, dy, nOut, x, nIn, accumulate ? 1 : 0, dw, nIn)
        biasGrad(dy, n, nOut, db, accumulate: accumulate)
        if let dx { Blas.gemm(false, false, n, nIn, nOut, 1, dy, nOut, w, nIn, 0, dx, nIn) }
    }

    /// The low-rank chain's dimensions: ranks r_0..r_d (d = middle count).
    public struct Chain {
        public let n: Int, nIn: Int, nOut: Int
        public let ranks: [Int]
        public let u: UnsafePointer<Float>, v: UnsafePointer<Float>
        public let middle: [UnsafePointer<Float>]

        public init(n: Int, nIn: Int, nOut: Int, ranks: [Int], u: UnsafePointer<Float>, v: UnsafePointer<Float>,
                    middle: [UnsafePointer<Float>]) throws {
            try require(ranks.count == middle.count + 1, "ranks must hold one more entry than middle")
            try Dimensions.checkMatrix(n, nIn, "x")
            try Dimensions.checkMatrix(n, nOut, "y")
            for (j, r) in ranks.enumerated() {
                try require(r >= 1, "rank r_\(j) must be >= 1, got \(r)")
                try Dimensions.checkMatrix(n, r, "intermediate x V (rank \(r))")
            }
            try Dimensions.checkMatrix(nOut, ranks[0], "U")
            try Dimensions.checkMatrix(nIn, ranks[ranks.count - 1], "V")
            for j in 1..<ranks.count { try Dimensions.checkMatrix(ranks[j - 1], ranks[j], "middle[\(j - 1)]") }
            self.n = n; self.nIn = nIn; self.nOut = nOut; self.ranks = ranks
            self.u = u; self.v = v; self.middle = middle
        }

        var depth: Int { middle.count }

        /// Offsets of t_0..t_d in one scratch block.
        func offsets() throws -> ([Int], Int) {
            var offs: [Int] = []
            var total = 0
            for r in ranks {
                offs.append(total)
                let (t, o) = total.addingReportingOverflow(n * r)
                if o { throw FNLError.invalid("the intermediates are too large") }
                total = t
            }
            return (offs, total)
        }

        /// Fills t_d = x V, t_{j-1} = t_j M_j^T for j = d..1.
        func chain(_ x: UnsafePointer<Float>, _ t: UnsafeMutablePointer<Float>, _ offs: [Int]) {
            let d = depth
            Blas.gemm(false, false, n, ranks[d], nIn, 1, x, nIn, v, ranks[d], 0, t + offs[d], ranks[d])
            var j = d
            while j >= 1 {
                // t_{j-1} (n x r_{j-1}) = t_j (n x r_j) M_j^T, M_j: r_{j-1} x r_j
                Blas.gemm(false, true, n, ranks[j - 1], ranks[j], 1, t + offs[j], ranks[j], middle[j - 1], ranks[j],
                          0, t + offs[j - 1], ranks[j - 1])
                j -= 1
            }
        }
    }

    public static func lowRankForward(_ x: UnsafePointer<Float>, _ c: Chain, bias: UnsafePointer<Float>?,
                                      y: UnsafeMutablePointer<Float>) throws {
        let (offs, total) = try c.offsets()
        try withScratch(total, "low-rank linear forward") { t in
            c.chain(x, t, offs)
            Blas.gemm(false, true, c.n, c.nOut, c.ranks[0], 1, t + offs[0], c.ranks[0], c.u, c.ranks[0], 0, y, c.nOut)
        }
        addBias(y, c.n, c.nOut, bias)
    }

    public static func lowRankBackward(_ dy: UnsafePointer<Float>, _ x: UnsafePointer<Float>, _ c: Chain,
                                       accumulate: Bool,
                                       du: UnsafeMutablePointer<Float>, dv: UnsafeMutablePointer<Float>,
                                       dMiddle: [UnsafeMutablePointer<Float>], db: UnsafeMutablePointer<Float>?,
                                       dx: UnsafeMutablePointer<Float>?) throws {
        try require(dMiddle.count == c.depth, "dmiddle must hold \(c.depth) buffers, got \(dMiddle.count)")
        let (offs, total) = try c.offsets()
        let maxR = c.ranks.max() ?? 1
        let beta: Float = accumulate ? 1 : 0
        try withScratch([total, c.n * maxR, c.n * maxR], "low-rank linear backward") { s in
            let t = s[0]
            var g = s[1], gNext = s[2]
            c.chain(x, t, offs)
            let r0 = c.ranks[0]
            // g_0 = dy U (n x r_0); dU = dy^T t_0
            Blas.gemm(false, false, c.n, r0, c.nOut, 1, dy, c.nOut, c.u, r0, 0, g, r0)
            Blas.gemm(true, false, c.nOut, r0, c.n, 1, dy, c.nOut, t + offs[0], r0, beta, du, r0)
            for j in stride(from: 1, through: c.depth, by: 1) {
                let rp = c.ranks[j - 1], rj = c.ranks[j]
                // dM_j = g_{j-1}^T t_j (r_{j-1} x r_j);  g_j = g_{j-1} M_j (n x r_j)
                Blas.gemm(true, false, rp, rj, c.n, 1, g, rp, t + offs[j], rj, beta, dMiddle[j - 1], rj)
                Blas.gemm(false, false, c.n, rj, rp, 1, g, rp, c.middle[j - 1], rj, 0, gNext, rj)
                swap(&g, &gNext)
            }
            let rd = c.ranks[c.depth]
            // dV = x^T g_d (n_in x r_d); dx = g_d V^T
            Blas.gemm(true, false, c.nIn, rd, c.n, 1, x, c.nIn, g, rd, beta, dv, rd)
            if let dx { Blas.gemm(false, true, c.n, c.nIn, rd, 1, g, rd, c.v, rd, 0, dx, c.nIn) }
        }
        biasGrad(dy, c.n, c.nOut, db, accumulate: accumulate)
    }
}
