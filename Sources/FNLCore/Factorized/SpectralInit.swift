/// Spectral initialization (SI): from the rank-r truncated SVD W ~ P S Q^T of a dense
/// initialization, U = P sqrt(S) (m x r) and V = Q sqrt(S) (n x r), so U V^T is the best
/// rank-r approximation of W and U^T U = V^T V = S. A rank above min(m, n) pads U and V with
/// zero columns (an overcomplete factorization of the same W).
public enum SpectralInit {
    public enum Method: Int32 {
        /// Exact to float32 rounding: LAPACK sgesdd, or for r <= min(m, n)/5 (min(m, n) >= 128)
        /// sgesvdx's leading r triplets refined by a Rayleigh-Ritz step (see `exactLeading`).
        case exact = 0
        /// Randomized range finder (Halko, Martinsson & Tropp 2011): a Gaussian sketch of
        /// rank + oversample columns, `powerIterations` re-orthonormalized power steps, then an
        /// exact SVD of the small projected matrix. O(m n (r + p)(2q + 2)) instead of O(m n min(m, n)).
        case randomized = 1
    }

    public struct Options {
        public var rank: Int
        public var method: Method
        public var oversample: Int
        public var powerIterations: Int
        public var seed: UInt64
        public init(rank: Int, method: Method = .exact, oversample: Int = 10, powerIterations: Int = 4, seed: UInt64 = 0) {
            self.rank = rank; self.method = method; self.oversample = oversample
            self.powerIterations = powerIterations; self.seed = seed
        }
    }

    /// What the decomposition reports besides the factors.
    public struct Result: Equatable {
        /// ||W||_F^2 in float64.
        public var totalEnergy: Double
        /// ||W - U V^T||_F^2: the squared singular values beyond the rank (exact), or
        /// ||W||^2 minus the captured ones (randomized).
        public var tailEnergy: Double
        /// sqrt(tail / total): the relative Frobenius error of the truncation (0 for W = 0).
        public var relativeError: Double { totalEnergy > 0 ? (tailEnergy / totalEnergy).squareRoot() : 0 }
    }

    /// Writes U (m x rank), V (n x rank) and the leading min(rank, min(m, n)) singular values
    /// into `s` (descending).
    public static func run(_ w: UnsafePointer<Float>, _ m: Int, _ n: Int, _ options: Options,
                           u: UnsafeMutablePointer<Float>, v: UnsafeMutablePointer<Float>,
                           s: UnsafeMutablePointer<Float>) throws -> Result {
        try Dimensions.checkMatrix(m, n, "W")
        let r = options.rank
        try require(r >= 1, "rank must be >= 1, got \(r)")
        try Dimensions.checkMatrix(m, r, "U")
        try Dimensions.checkMatrix(n, r, "V")
        try require(options.oversample >= 0 && options.oversample <= 1 << 20,
                    "oversample must be in 0..\(1 << 20), got \(options.oversample)")
        try require(options.powerIterations >= 0 && options.powerIterations <= 100,
                    "power_iters must be in 0..100, got \(options.powerIterations)")
        try Finite.check(w, m * n, "W")
        let k = min(m, n)
        let total = Blas.sumOfSquares(w, m * n)
        let sketch = min(r + options.oversample, k)
        if options.method == .exact || sketch >= k {
            if usesLeadingTriplets(m, n, r) { return try exactLeading(w, m, n, r, total, u, v, s) }
            return try exact(w, m, n, r, total, u, v, s)
        }
        return try randomizedScaled(w, m, n, r, sketch, options, total, u, v, s)
    }

    /// ||W - U V^T||_F^2 in float64 from the residual formed in a copy of W: no cancellation
    /// against ||W||^2 when the tail is small.
    static func residualEnergy(_ w: UnsafePointer<Float>, _ m: Int, _ n: Int, _ r: Int,
                               _ u: UnsafePointer<Float>, _ v: UnsafePointer<Float>,
                               into a: UnsafeMutablePointer<Float>) -> Double {
        a.update(from: w, count: m * n)
        Blas.gemm(false, true, m, n, r, -1, u, r, v, r, 1, a, n)
        return Blas.sumOfSquares(a, m * n)
    }

    /// The randomized method on W scaled by a power of two when its entries are so large (or
    /// small) that the float32 sketches W Omega, W^T Q would overflow (or underflow); the
    /// results are scaled back exactly (s by 1/c, U and V by 1/sqrt(c)).
    static func randomizedScaled(_ w: UnsafePointer<Float>, _ m: Int, _ n: Int, _ r: Int, _ l: Int,
                                 _ o: Options, _ total: Double,
                                 _ u: UnsafeMutablePointer<Float>, _ v: UnsafeMutablePointer<Float>,
                                 _ s: UnsafeMutablePointer<Float>) throws -> Result {
        var maxAbs: Float = 0
        for i in 0..<(m * n) { maxAbs = max(maxAbs, abs(w[i])) }
        if maxAbs == 0 || (maxAbs < 0x1p40 && maxAbs > 0x1p-40) {
            return try randomized(w, m, n, r, l, o, total, u, v, s)
        }
        // c = 2^-exponent brings the largest entry to [1, 2); in float64, as 2^-exponent of a
        // subnormal maximum exceeds the float32 range.
        let c = Double(sign: .plus, exponent: -Int(maxAbs.exponent), significand: 1)
        return try withScratch(m * n, "a rescaled copy of W") { scaled in
            for i in 0..<(m * n) { scaled[i] = Float(Double(w[i]) * c) }
            let inner = try randomized(scaled, m, n, r, l, o, Blas.sumOfSquares(scaled, m * n), u, v, s)
            let back = 1 / c
            for i in 0..<min(r, l) { s[i] = Float(Double(s[i]) * back) }
            let f = Float(back.squareRoot())
            for i in 0..<(m * r) { u[i] *= f }
            for i in 0..<(n * r) { v[i] *= f }
            return Result(totalEnergy: total, tailEnergy: inner.tailEnergy * back * back)
        }
    }

    /// Whether the exact method computes only the leading r triplets (sgesvdx + Rayleigh-Ritz)
    /// instead of the full thin SVD (sgesdd): measured faster for r <= min(m, n)/5 (about 2x
    /// at r = min(m, n)/16, break-even near min(m, n)/4); small matrices keep sgesdd.
    public static func usesLeadingTriplets(_ m: Int, _ n: Int, _ r: Int) -> Bool {
        let k = min(m, n)
        return k >= 128 && r >= 1 && 5 * r <= k
    }

    static func exact(_ w: UnsafePointer<Float>, _ m: Int, _ n: Int, _ r: Int, _ total: Double,
                      _ u: UnsafeMutablePointer<Float>, _ v: UnsafeMutablePointer<Float>,
                      _ s: UnsafeMutablePointer<Float>) throws -> Result {
        let k = min(m, n)
        return try withScratch([m * n, k, m * k, k * n], "the SVD of W") { b in
            let (a, sv, p, qt) = (b[0], b[1], b[2], b[3])
            a.update(from: w, count: m * n)
            try SVD.thin(a, m, n, s: sv, p: p, qt: qt)
            var tail = 0.0
            for i in min(r, k)..<k { tail += Double(sv[i]) * Double(sv[i]) }
            writeFactors(m, n, r, kept: min(r, k), p: p, pCols: k, sv: sv, qt: qt, u: u, v: v, s: s)
            return Result(totalEnergy: total, tailEnergy: tail)
        }
    }

    /// Exact SI through the leading r triplets only (sgesvdx), refined by one Rayleigh-Ritz
    /// step: with P (m x r) and Q (n x r) re-orthonormalized by QR, the SVD of the r x r matrix
    /// P^T W Q = P_b S Q_b^T gives U = P P_b sqrt(S), V = Q Q_b sqrt(S). sgesvdx's vectors are
    /// accurate subspaces but only orthogonal to ~1e-5 within clusters of close values; after the
    /// refinement U^T U = V^T V = diag(S) holds to float32 rounding, and the values are those of
    /// the subspaces (second-order accurate). The tail energy is ||W - U V^T||_F^2, summed in
    /// float64 from the residual (no cancellation against ||W||^2 when the tail is small).
    static func exactLeading(_ w: UnsafePointer<Float>, _ m: Int, _ n: Int, _ r: Int, _ total: Double,
                             _ u: UnsafeMutablePointer<Float>, _ v: UnsafeMutablePointer<Float>,
                             _ s: UnsafeMutablePointer<Float>) throws -> Result {
        let k = min(m, n)
        return try withScratch([m * n, k, m * r, r * n, n * r, m * r, r * r, r * r, r * r],
                               "the SVD of W") { b in
            let (a, sv, p, qt, q, z, bm, pb, qbt) = (b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8])
            a.update(from: w, count: m * n)
            try SVD.leading(a, m, n, r, s: sv, p: p, qt: qt)
            Blas.copy(qt, r, n, q, transpose: true)                        // Q (n x r)
            try QR.orthonormalize(p, m, r)
            try QR.orthonormalize(q, n, r)
            Blas.gemm(false, false, m, r, n, 1, w, n, q, r, 0, z, r)         // Z = W Q (m x r)
            Blas.gemm(true, false, r, r, m, 1, p, r, z, r, 0, bm, r)         // B = P^T W Q (r x r)
            try SVD.thin(bm, r, r, s: sv, p: pb, qt: qbt)                    // B = P_b S Q_b^T
            Blas.gemm(false, false, m, r, r, 1, p, r, pb, r, 0, z, r)        // P P_b (m x r)
            Blas.gemm(false, true, r, n, r, 1, qbt, r, q, r, 0, qt, n)       // (Q Q_b)^T (r x n)
            writeFactors(m, n, r, kept: r, p: z, pCols: r, sv: sv, qt: qt, u: u, v: v, s: s)
            return Result(totalEnergy: total, tailEnergy: residualEnergy(w, m, n, r, u, v, into: a))
        }
    }

    static func randomized(_ w: UnsafePointer<Float>, _ m: Int, _ n: Int, _ r: Int, _ l: Int,
                           _ o: Options, _ total: Double,
                           _ u: UnsafeMutablePointer<Float>, _ v: UnsafeMutablePointer<Float>,
                           _ s: UnsafeMutablePointer<Float>) throws -> Result {
        // l < min(m, n) here, so both orthonormalizations below act on tall matrices.
        return try withScratch([n * l, m * l, l * n, l, l * l, m * l, m * n], "the randomized SVD of W") { b in
            let (z, y, bm, sv, pb, p, residual) = (b[0], b[1], b[2], b[3], b[4], b[5], b[6])
            var rng = Xoshiro256(seed: o.seed)
            rng.fillNormal(z, n * l)                                        // Omega (n x l)
            Blas.gemm(false, false, m, l, n, 1, w, n, z, l, 0, y, l)         // Y = W Omega
            for _ in 0..<o.powerIterations {
                try QR.orthonormalize(y, m, l)
                Blas.gemm(true, false, n, l, m, 1, w, n, y, l, 0, z, l)      // Z = W^T Q
                try QR.orthonormalize(z, n, l)
                Blas.gemm(false, false, m, l, n, 1, w, n, z, l, 0, y, l)     // Y = W Z
            }
            try QR.orthonormalize(y, m, l)                                   // Q (m x l)
            Blas.gemm(true, false, l, n, m, 1, y, l, w, n, 0, bm, n)         // B = Q^T W (l x n)
            try SVD.thin(bm, l, n, s: sv, p: pb, qt: z)                      // B = P_b S Q^T
            Blas.gemm(false, false, m, l, l, 1, y, l, pb, l, 0, p, l)        // P = Q P_b
            writeFactors(m, n, r, kept: min(r, l), p: p, pCols: l, sv: sv, qt: z, u: u, v: v, s: s)
            return Result(totalEnergy: total, tailEnergy: residualEnergy(w, m, n, r, u, v, into: residual))
        }
    }

    /// U[:, i] = P[:, i] sqrt(s_i), V[:, i] = Q[:, i] sqrt(s_i) for i < kept; zero columns after.
    static func writeFactors(_ m: Int, _ n: Int, _ r: Int, kept: Int,
                             p: UnsafePointer<Float>, pCols: Int, sv: UnsafePointer<Float>,
                             qt: UnsafePointer<Float>,
                             u: UnsafeMutablePointer<Float>, v: UnsafeMutablePointer<Float>,
                             s: UnsafeMutablePointer<Float>) {
        for i in 0..<kept { s[i] = sv[i] }
        for row in 0..<m {
            for i in 0..<r { u[row * r + i] = i < kept ? p[row * pCols + i] * sv[i].squareRoot() : 0 }
        }
        v.update(repeating: 0, count: n * r)
        for i in 0..<kept {
            let scale = sv[i].squareRoot()
            for col in 0..<n { v[col * r + i] = qt[i * n + col] * scale }
        }
    }
}
