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
/// mean, then centred squares), walking the data in memory order with the images split over
/// the threads; the elementwise passes run over (image, channel) planes in parallel.
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
        // Statistics: two passes over x in memory order (images split over the threads, per
        // thread and channel partial sums in float64), then one pass writing y.
        let sums = channelSums(sh) { _, off in (Reduce.sum(x + off, s), 0) }.first
        var mu = [Double](repeating: 0, count: c), muf = [Float](repeating: 0, count: c)
        for ch in 0..<c {
            mu[ch] = sums[ch] / Double(m)
            muf[ch] = Float(mu[ch])
            guard mu[ch].isFinite, muf[ch].isFinite else {
                throw FNLError.invalid("x contains NaN or inf (or overflows) in channel \(ch)")
            }
        }
        let squares = muf.withUnsafeBufferPointer { mp in
            channelSums(sh) { ch, off in (Reduce.centeredSquares(x + off, s, mp[ch]), 0) }.first
        }
        var variance = [Double](repeating: 0, count: c)
        for ch in 0..<c {
            // Correct for rounding mu to float: sum (x - muf)^2 = sum (x - mu)^2 + m (mu - muf)^2.
            let d = mu[ch] - Double(muf[ch])
            variance[ch] = max(0, squares[ch] / Double(m) - d * d)
            guard variance[ch].isFinite else { throw FNLError.invalid("x contains NaN or inf (or overflows) in channel \(ch)") }
        }
        // Every channel is valid: only now are the outputs and running statistics written.
        var scale = [Float](repeating: 0, count: c), shift = scale
        for ch in 0..<c {
            let inv = 1.0 / (variance[ch] + Double(eps)).squareRoot()
            mean[ch] = muf[ch]
            invstd[ch] = Float(inv)
            scale[ch] = gamma[ch] * Float(inv)
            shift[ch] = beta[ch] - muf[ch] * scale[ch]
            if let runningMean, let runningVar {
                let mom = Double(momentum)
                let unbiased = variance[ch] * Double(m) / Double(m - 1)
                runningMean[ch] = Float((1 - mom) * Double(runningMean[ch]) + mom * mu[ch])
                runningVar[ch] = Float((1 - mom) * Double(runningVar[ch]) + mom * unbiased)
            }
        }
        scale.withUnsafeBufferPointer { sc in
            shift.withUnsafeBufferPointer { sf in
                Threads.parallelFor(n * c, work: 2 * sh.count) { plane in
                    let ch = plane % c, off = plane * s
                    affine(x + off, residual.map { $0 + off }, y + off, s, sc[ch], sf[ch], relu: relu)
                }
            }
        }
    }

    /// Per channel sums of the pair `term(channel, offset of the (image, channel) plane)` over
    /// the images, walking the (N, C, S) data in memory order: the images are split into one
    /// contiguous block per thread, each accumulating its own float64 partial sums, added up
    /// at the end (so the summation order follows the thread count).
    static func channelSums(_ sh: Shape, _ term: (Int, Int) -> (Double, Double)) -> (first: [Double], second: [Double]) {
        let (n, c, s) = (sh.n, sh.c, sh.s)
        let workers = max(1, min(Threads.count, n))
        var parts = [Double](repeating: 0, count: workers * 2 * c)
        parts.withUnsafeMutableBufferPointer { pp in
            let base = pp.baseAddress!
            Threads.parallelFor(workers, work: 2 * sh.count) { w in
                let mine = base + w * 2 * c
                for b in (n * w / workers)..<(n * (w + 1) / workers) {
                    for ch in 0..<c {
                        let (a, d) = term(ch, (b * c + ch) * s)
                        mine[2 * ch] += a
                        mine[2 * ch + 1] += d
                    }
                }
            }
        }
        var first = [Double](repeating: 0, count: c), second = first
        for w in 0..<workers {
            for ch in 0..<c {
                first[ch] += parts[(w * c + ch) * 2]
                second[ch] += parts[(w * c + ch) * 2 + 1]
            }
        }
        return (first, second)
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
    /// `maskedGrad` (with `output`) receives g, the gradient of a fused residual input. Two
    /// passes in memory order: the per channel sums (images split over the threads), then dx
    /// and g (planes in parallel).
    public static func backward(_ dy: UnsafePointer<Float>, _ x: UnsafePointer<Float>, _ sh: Shape,
                                gamma: UnsafePointer<Float>, mean: UnsafePointer<Float>, invstd: UnsafePointer<Float>,
                                training: Bool, accumulate: Bool,
                                output: UnsafePointer<Float>? = nil, maskedGrad: UnsafeMutablePointer<Float>? = nil,
                                dx: UnsafeMutablePointer<Float>?,
                                dgamma: UnsafeMutablePointer<Float>, dbeta: UnsafeMutablePointer<Float>) throws {
        let (n, c, s) = (sh.n, sh.c, sh.s)
        let m = Float(n * s)
        // Pass 1 (memory order): per channel sum g and sum g (x - mean), g masked on the fly.
        let (sdy, sdyx) = channelSums(sh) { ch, off in
            if let out = output {
                return Reduce.maskedSumAndCenteredDot(dy + off, out + off, x + off, s, mean[ch])
            }
            return Reduce.sumAndCenteredDot(dy + off, x + off, s, mean[ch])
        }
        for ch in 0..<c where !(sdy[ch].isFinite && sdyx[ch].isFinite) {
            throw FNLError.invalid("grad_y or x contains NaN or inf (or overflows) in channel \(ch)")
        }
        var a = [Float](repeating: 0, count: c), k1 = a, k2 = a
        for ch in 0..<c {
            let inv = invstd[ch]
            let db = Float(sdy[ch]), dg = Float(sdyx[ch] * Double(inv))
            dbeta[ch] = accumulate ? dbeta[ch] + db : db
            dgamma[ch] = accumulate ? dgamma[ch] + dg : dg
            // training: dx = g' g - g'/m (db + xhat dg), g' = gamma invstd, xhat = (x - mu) invstd;
            // evaluation: dx = g' g
            let gi = gamma[ch] * inv
            a[ch] = gi
            k1[ch] = training ? gi * db / m : 0
            k2[ch] = training ? gi * dg * inv / m : 0
        }
        guard dx != nil || (maskedGrad != nil && output != nil) else { return }
        // Pass 2 (memory order, planes in parallel): dx and the masked gradient.
        a.withUnsafeBufferPointer { ap in
            k1.withUnsafeBufferPointer { k1p in
                k2.withUnsafeBufferPointer { k2p in
                    Threads.parallelFor(n * c, work: 3 * sh.count) { plane in
                        let ch = plane % c, off = plane * s
                        inputGradient(dy + off, output.map { $0 + off }, x + off, dx.map { $0 + off },
                                      output == nil ? nil : maskedGrad.map { $0 + off }, s,
                                      a: ap[ch], k1: k1p[ch], k2: k2p[ch], mu: mean[ch])
                    }
                }
            }
        }
    }

    /// With g = dy (masked by output > 0 when given): masked = g (if given) and
    /// dx = a g - k1 - k2 (x - mu) (if given).
    static func inputGradient(_ dy: UnsafePointer<Float>, _ output: UnsafePointer<Float>?, _ x: UnsafePointer<Float>,
                              _ dx: UnsafeMutablePointer<Float>?, _ masked: UnsafeMutablePointer<Float>?,
                              _ count: Int, a: Float, k1: Float, k2: Float, mu: Float) {
        let av = SIMD16<Float>(repeating: a), k1v = SIMD16<Float>(repeating: k1)
        let k2v = SIMD16<Float>(repeating: k2), muv = SIMD16<Float>(repeating: mu), zero = SIMD16<Float>(repeating: 0)
        let whole = count & ~15
        if let out = output {
            var i = 0
            while i < whole {
                let g = zero.replacing(with: NNLanes.load(dy + i), where: NNLanes.load(out + i) .> 0)
                if let masked { NNLanes.store(g, masked + i) }
                if let dx { NNLanes.store(av * g - k1v - k2v * (NNLanes.load(x + i) - muv), dx + i) }
                i += 16
            }
            for j in whole..<count {
                let g = out[j] > 0 ? dy[j] : 0
                masked?[j] = g
                dx?[j] = a * g - k1 - k2 * (x[j] - mu)
            }
        } else if let dx {
            var i = 0
            while i < whole {
                NNLanes.store(av * NNLanes.load(dy + i) - k1v - k2v * (NNLanes.load(x + i) - muv), dx + i)
                i += 16
            }
            for j in whole..<count { dx[j] = a * dy[j] - k1 - k2 * (x[j] - mu) }
        }
    }
}
