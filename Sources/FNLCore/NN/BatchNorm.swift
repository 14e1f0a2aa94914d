#if canImport(Glibc)
import Glibc
#endif

/// Batch normalization over (N, C, S) data (S = H*W for images, 1 or L for 1-d), per channel c:
///
///     mean_c = (1/(N S)) sum x,   var_c = (1/(N S)) sum (x - mean_c)^2        (training)
///     y = gamma_c (x - mean_c) / sqrt(var_c + eps) + beta_c
///
/// Training updates the running statistics as PyTorch does:
/// running_mean = (1 - momentum) running_mean + momentum mean_c, and running_var likewise with
/// the unbiased variance var_c N S / (N S - 1). Evaluation uses the running statistics.
/// Statistics are reduced with float32 SIMD partial sums gathered in float64 (two passes:
/// mean, then centred squares). Channels run in parallel.
///
/// Fused epilogue (one pass instead of three, for Conv-BN-ReLU and the residual block's
/// relu(bn(x) + shortcut)): the forward passes optionally add a `residual` of x's shape and
/// apply ReLU, y = act(gamma xhat + beta + residual); the backward pass then takes that output
/// y and differentiates through the ReLU first (g = dy where y > 0, else 0), optionally
/// writing g (the gradient of the residual input) to `maskedGrad`.
public enum BatchNorm {
    public struct Shape {
        public let n: Int, c: Int, s: Int
        public init(n: Int, c: Int, s: Int) throws {
            try require(n >= 1 && c >= 1 && s >= 1, "x must be non-empty, got (N, C, S) = (\(n), \(c), \(s))")
            _ = try Dimensions.product([n, c, s], "x")
            self.n = n; self.c = c; self.s = s
        }
        var count: Int { n * c * s }
    }

    static func checkEps(_ eps: Float) throws {
        try require(eps.isFinite && eps > 0, "eps must be a finite number > 0, got \(eps)")
    }

    /// Training-mode forward. Writes y, the batch mean and invstd = 1/sqrt(var + eps) per
    /// channel, and updates the running statistics in place when given.
    public static func forwardTrain(_ x: UnsafePointer<Float>, _ sh: Shape,
                                    gamma: UnsafePointer<Float>, beta: UnsafePointer<Float>,
                                    eps: Float, momentum: Float,
                                    runningMean: UnsafeMutablePointer<Float>?, runningVar: UnsafeMutablePointer<Float>?,
                                    residual: UnsafePointer<Float>? = nil, relu: Bool = false,
                                    y: UnsafeMutablePointer<Float>,
                                    mean: UnsafeMutablePointer<Float>, invstd: UnsafeMutablePointer<Float>) throws {
        try checkEps(eps)
        try require(momentum.isFinite && momentum >= 0 && momentum <= 1, "momentum must be in [0, 1], got \(momentum)")
        let (n, c, s) = (sh.n, sh.c, sh.s)
        let m = n * s
        try require(m > 1, "training needs more than one value per channel, got input of (N, C, S) = (\(n), \(c), \(s))")
        var bad = [Int](repeating: 0, count: c)
        bad.withUnsafeMutableBufferPointer { badp in
            Threads.parallelFor(c, work: 6 * sh.count) { ch in
                var total = 0.0
                for b in 0..<n { total += Reduce.sum(x + (b * c + ch) * s, s) }
                let mu = total / Double(m)
                let muf = Float(mu)
                var sq = 0.0
                for b in 0..<n { sq += Reduce.centeredSquares(x + (b * c + ch) * s, s, muf) }
                // Correct for rounding mu to float: sum (x - muf)^2 = sum (x - mu)^2 + m (mu - muf)^2.
                let d = mu - Double(muf)
                let variance = max(0, sq / Double(m) - d * d)
                guard mu.isFinite, variance.isFinite else { badp[ch] = 1; return }
                let inv = 1.0 / (variance + Double(eps)).squareRoot()
                mean[ch] = muf
                invstd[ch] = Float(inv)
                let scale = gamma[ch] * Float(inv)
                let shift = beta[ch] - muf * scale
                for b in 0..<n {
                    let off = (b * c + ch) * s
                    affine(x + off, residual.map { $0 + off }, y + off, s, scale, shift, relu: relu)
                }
                if let runningMean, let runningVar {
                    let mom = Double(momentum)
                    let unbiased = m > 1 ? variance * Double(m) / Double(m - 1) : variance
                    runningMean[ch] = Float((1 - mom) * Double(runningMean[ch]) + mom * mu)
                    runningVar[ch] = Float((1 - mom) * Double(runningVar[ch]) + mom * unbiased)
                }
            }
        }
        if let ch = bad.firstIndex(of: 1) {
            throw FNLError.invalid("x contains NaN or inf (or overflows) in channel \(ch)")
        }
    }

    /// invstd = 1/sqrt(var + eps) of running variances (for evaluation forward and backward).
    public static func invstd(_ variance: UnsafePointer<Float>, _ c: Int, eps: Float,
                              _ out: UnsafeMutablePointer<Float>) throws {
        try checkEps(eps)
        for ch in 0..<c {
            try require(variance[ch].isFinite && variance[ch] >= 0,
                        "running_var must hold finite values >= 0, got \(variance[ch]) at channel \(ch)")
            out[ch] = Float(1.0 / (Double(variance[ch]) + Double(eps)).squareRoot())
        }
    }

    /// Evaluation-mode forward: y = gamma (x - mean) invstd + beta with given statistics.
    public static func forwardEval(_ x: UnsafePointer<Float>, _ sh: Shape,
                                   gamma: UnsafePointer<Float>, beta: UnsafePointer<Float>,
                                   mean: UnsafePointer<Float>, invstd: UnsafePointer<Float>,
                                   residual: UnsafePointer<Float>? = nil, relu: Bool = false,
                                   y: UnsafeMutablePointer<Float>) throws {
        let (n, c, s) = (sh.n, sh.c, sh.s)
        for ch in 0..<c {
            try require(mean[ch].isFinite, "running_mean must be finite, got \(mean[ch]) at channel \(ch)")
        }
        Threads.parallelFor(n * c, work: 2 * sh.count) { plane in
            let ch = plane % c
            let scale = gamma[ch] * invstd[ch]
            let shift = beta[ch] - mean[ch] * scale
            let off = plane * s
            affine(x + off, residual.map { $0 + off }, y + off, s, scale, shift, relu: relu)
        }
    }

    /// y = act(x scale + shift + residual) over `count` values (act: ReLU or the identity).
    static func affine(_ x: UnsafePointer<Float>, _ residual: UnsafePointer<Float>?, _ y: UnsafeMutablePointer<Float>,
                       _ count: Int, _ scale: Float, _ shift: Float, relu: Bool) {
        let sv = SIMD16<Float>(repeating: scale), tv = SIMD16<Float>(repeating: shift)
        let whole = count & ~15
        switch (residual, relu) {
        case (nil, false):
            var i = 0
            while i < whole { NNLanes.store(NNLanes.load(x + i) * sv + tv, y + i); i += 16 }
            for j in whole..<count { y[j] = x[j] * scale + shift }
        case (nil, true):
            var i = 0
            while i < whole { NNLanes.store(NNLanes.relu(NNLanes.load(x + i) * sv + tv), y + i); i += 16 }
            for j in whole..<count { y[j] = NNLanes.relu(x[j] * scale + shift) }
        case (let r?, false):
            var i = 0
            while i < whole { NNLanes.store(NNLanes.load(x + i) * sv + tv + NNLanes.load(r + i), y + i); i += 16 }
            for j in whole..<count { y[j] = x[j] * scale + shift + r[j] }
        case (let r?, true):
            var i = 0
            while i < whole { NNLanes.store(NNLanes.relu(NNLanes.load(x + i) * sv + tv + NNLanes.load(r + i)), y + i); i += 16 }
            for j in whole..<count { y[j] = NNLanes.relu(x[j] * scale + shift + r[j]) }
        }
    }

    /// Backward. With xhat = (x - mean) invstd and g the gradient at the normalization's output
    /// (g = dy, or with `output` given g = dy where output > 0 else 0: the fused ReLU), per channel:
    ///
    ///     dbeta = sum g,   dgamma = sum g xhat                                     (both modes)
    ///     training:   dx = gamma invstd / (N S) (N S g - dbeta - xhat dgamma)
    ///     evaluation: dx = gamma invstd g          (statistics are constants)
    ///
    /// dgamma and dbeta are added into the given buffers when `accumulate`; dx may be nil.
    /// `maskedGrad` (with `output`) receives g, the gradient of a fused residual input; dx may
    /// be the same buffer as maskedGrad only when maskedGrad is not needed afterwards (it is
    /// overwritten by dx).
    public static func backward(_ dy: UnsafePointer<Float>, _ x: UnsafePointer<Float>, _ sh: Shape,
                                gamma: UnsafePointer<Float>, mean: UnsafePointer<Float>, invstd: UnsafePointer<Float>,
                                training: Bool, accumulate: Bool,
                                output: UnsafePointer<Float>? = nil, maskedGrad: UnsafeMutablePointer<Float>? = nil,
                                dx: UnsafeMutablePointer<Float>?,
                                dgamma: UnsafeMutablePointer<Float>, dbeta: UnsafeMutablePointer<Float>) throws {
        let (n, c, s) = (sh.n, sh.c, sh.s)
        let m = Float(n * s)
        // Where g is stored when it is not dy itself (then dx is computed from it, in place).
        let gStore: UnsafeMutablePointer<Float>? = output == nil ? nil : (maskedGrad ?? dx)
        var bad = [Int](repeating: 0, count: c)
        bad.withUnsafeMutableBufferPointer { badp in
            Threads.parallelFor(c, work: 6 * sh.count) { ch in
                var sdy = 0.0, sdyx = 0.0
                let mu = mean[ch]
                for b in 0..<n {
                    let off = (b * c + ch) * s
                    let sums: (Double, Double)
                    if let out = output {
                        if let st = gStore {
                            NNLanes.mask(dy + off, out + off, st + off, s)
                            sums = Reduce.sumAndCenteredDot(st + off, x + off, s, mu)
                        } else {
                            sums = Reduce.maskedSumAndCenteredDot(dy + off, out + off, x + off, s, mu)
                        }
                    } else {
                        sums = Reduce.sumAndCenteredDot(dy + off, x + off, s, mu)
                    }
                    sdy += sums.0
                    sdyx += sums.1
                }
                guard sdy.isFinite, sdyx.isFinite else { badp[ch] = 1; return }
                let inv = invstd[ch]
                let db = Float(sdy), dg = Float(sdyx * Double(inv))
                dbeta[ch] = accumulate ? dbeta[ch] + db : db
                dgamma[ch] = accumulate ? dgamma[ch] + dg : dg
                guard let dx else { return }
                let src: UnsafePointer<Float> = gStore.map { UnsafePointer($0) } ?? dy
                let g = gamma[ch] * inv
                // training: dx = g dy - g/m (db + xhat dg), xhat = (x - mu) inv;  evaluation: dx = g dy
                let a = g, k1 = training ? g * db / m : 0, k2 = training ? g * dg * inv / m : 0
                for b in 0..<n {
                    let off = (b * c + ch) * s
                    inputGradient(src + off, x + off, dx + off, s, a: a, k1: k1, k2: k2, mu: mu)
                }
            }
        }
        if let ch = bad.firstIndex(of: 1) {
            throw FNLError.invalid("grad_y or x contains NaN or inf (or overflows) in channel \(ch)")
        }
    }

    /// dx = a g - k1 - k2 (x - mu) (dx may be g).
    static func inputGradient(_ g: UnsafePointer<Float>, _ x: UnsafePointer<Float>, _ dx: UnsafeMutablePointer<Float>,
                              _ count: Int, a: Float, k1: Float, k2: Float, mu: Float) {
        let av = SIMD16<Float>(repeating: a), k1v = SIMD16<Float>(repeating: k1)
        let k2v = SIMD16<Float>(repeating: k2), muv = SIMD16<Float>(repeating: mu)
        var i = 0
        while i + 16 <= count {
            NNLanes.store(av * NNLanes.load(g + i) - k1v - k2v * (NNLanes.load(x + i) - muv), dx + i)
            i += 16
        }
        while i < count { dx[i] = a * g[i] - k1 - k2 * (x[i] - mu); i += 1 }
    }
}
