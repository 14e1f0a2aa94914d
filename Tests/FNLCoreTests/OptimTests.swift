import XCTest
@testable import FNLCore

/// Helpers shared by the optimizer tests: owned float buffers and float64 references.
final class Buffers {
    var storage: [UnsafeMutablePointer<Float>] = []
    deinit { storage.forEach { $0.deallocate() } }

    func make(_ values: [Float]) -> UnsafeMutablePointer<Float> {
        let p = UnsafeMutablePointer<Float>.allocate(capacity: values.count)
        p.initialize(from: values, count: values.count)
        storage.append(p)
        return p
    }

    func random(_ n: Int, _ rng: inout SplitMix, scale: Float = 1) -> UnsafeMutablePointer<Float> {
        make((0..<n).map { _ in rng.normal() * scale })
    }
}

struct SplitMix {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    mutating func uniform() -> Float { Float(next() >> 40) / Float(1 << 24) }
    mutating func normal() -> Float {
        let u1 = max(uniform(), 1e-7), u2 = uniform()
        return (-2 * log(u1)).squareRoot() * cos(2 * Float.pi * u2)
    }
}

func array(_ p: UnsafePointer<Float>, _ n: Int) -> [Double] { (0..<n).map { Double(p[$0]) } }

/// float64 FD gradient of (lam/2)||U V^T||_F^2 for U (m x r), V (n x r): lam W V, lam W^T U.
func fdReference(_ u: [Double], _ v: [Double], m: Int, n: Int, r: Int, lam: Double) -> ([Double], [Double]) {
    var w = [Double](repeating: 0, count: m * n)
    for i in 0..<m { for j in 0..<n { for k in 0..<r { w[i * n + j] += u[i * r + k] * v[j * r + k] } } }
    var du = [Double](repeating: 0, count: m * r), dv = [Double](repeating: 0, count: n * r)
    for i in 0..<m { for j in 0..<n { for k in 0..<r {
        du[i * r + k] += lam * w[i * n + j] * v[j * r + k]
        dv[j * r + k] += lam * w[i * n + j] * u[i * r + k]
    } } }
    return (du, dv)
}

final class OptimSGDTests: XCTestCase {
    func testMomentumNesterovAndFrobeniusDecayMatchFloat64Reference() throws {
        var rng = SplitMix(state: 1)
        let b = Buffers()
        let (m, n, r) = (7, 5, 3)
        let sizes = [m * r, n * r, 37]
        let params = sizes.map { b.random($0, &rng) }
        let grads = sizes.map { b.random($0, &rng) }
        let bufs = sizes.map { b.make([Float](repeating: 0, count: $0)) }
        var ref = zip(params, sizes).map { array($0, $1) }
        var refBuf = sizes.map { [Double](repeating: 0, count: $0) }
        let (lam, lr, mu) = (0.05, 0.1, 0.9)
        let decay: [Float] = [0, 0, Float(lam)]
        let t = try OptimTensors(params: params, grads: grads.map { UnsafePointer($0) }, sizes: sizes, decay: decay)
        let product = FactorProduct(batch: 1, m: m, n: n, ranks: [r], u: 0, v: 1, middle: [])
        for step in 0..<4 {
            let (du, dv) = fdReference(ref[0], ref[1], m: m, n: n, r: r, lam: lam)
            let fd = [du, dv, [Double](repeating: 0, count: sizes[2])]
            for i in 0..<3 {
                let g = array(grads[i], sizes[i])
                for j in 0..<sizes[i] {
                    let d = g[j] + Double(decay[i]) * ref[i][j] + fd[i][j]
                    refBuf[i][j] = step == 0 ? d : mu * refBuf[i][j] + d
                    ref[i][j] -= lr * (d + mu * refBuf[i][j])
                }
            }
            try SGD.step(t, buffers: bufs, products: [product], fdLambda: [Float(lam)],
                         SGD.Hyper(lr: Float(lr), momentum: Float(mu), nesterov: true, firstStep: step == 0))
        }
        for i in 0..<3 {
            assertClose(array(params[i], sizes[i]), ref[i], rtol: 1e-5, atol: 1e-5, "w\(i)")
            assertClose(array(bufs[i], sizes[i]), refBuf[i], rtol: 1e-5, atol: 1e-5, "buf\(i)")
        }
    }

    func testThreadedLargeGroupEqualsSerialChunks() throws {
        var rng = SplitMix(state: 2)
        let b = Buffers()
        let n = OptimTensors.parallelThreshold + 12345
        let w1 = b.random(n, &rng), g = b.random(n, &rng)
        let w2 = b.make(array(w1, n).map { Float($0) })
        let buf1 = b.make([Float](repeating: 0, count: n)), buf2 = b.make([Float](repeating: 0, count: n))
        let big = try OptimTensors(params: [w1], grads: [UnsafePointer(g)], sizes: [n], decay: [0.01])
        try SGD.step(big, buffers: [buf1], SGD.Hyper(lr: 0.1, momentum: 0.9, firstStep: true))
        // The same arithmetic element by element in float32.
        for i in 0..<n {
            let d = g[i] + 0.01 * w2[i]
            buf2[i] = d
            w2[i] = w2[i] - 0.1 * d
        }
        XCTAssertEqual(array(w1, n), array(w2, n))
        XCTAssertEqual(array(buf1, n), array(buf2, n))
    }

    func testBadHyperparametersAndNaNGradientsThrowBeforeAnyUpdate() throws {
        let b = Buffers()
        let w = b.make([1, 2]), g = b.make([0.5, .nan])
        let t = try OptimTensors(params: [w], grads: [UnsafePointer(g)], sizes: [2], decay: [0])
        XCTAssertThrowsError(try SGD.step(t, buffers: nil, SGD.Hyper(lr: 0.1))) { e in
            XCTAssertTrue("\(e)".contains("grads[0]"), "\(e)")
        }
        XCTAssertEqual(array(w, 2), [1, 2])
        XCTAssertThrowsError(try SGD.step(t, buffers: nil, SGD.Hyper(lr: -1), checkFinite: false))
        XCTAssertThrowsError(try SGD.step(t, buffers: nil, SGD.Hyper(lr: 0.1, nesterov: true), checkFinite: false))
        XCTAssertThrowsError(try SGD.step(t, buffers: nil, SGD.Hyper(lr: 0.1, momentum: 0.9), checkFinite: false))
        XCTAssertThrowsError(try OptimTensors(params: [w], grads: [UnsafePointer(g)], sizes: [0], decay: [0]))
        XCTAssertThrowsError(try OptimTensors(params: [w], grads: [UnsafePointer(g)], sizes: [2], decay: [-1]))
    }
}

final class OptimFactorDecayTermsTests: XCTestCase {
    /// Several products of one group, of ranks through the Swift and BLAS Gram paths, with
    /// per-product coefficients: each term equals the float64 FD gradient of its product.
    func testTermsOfSeveralProductsMatchFloat64() throws {
        var rng = SplitMix(state: 8)
        let b = Buffers()
        let shapes = [(48, 48, 5), (32, 16, 3), (7, 9, 1), (40, 13, 19), (5, 6, 2)]
        var sizes: [Int] = [11]
        var products: [FactorProduct] = []
        for (m, n, r) in shapes {
            products.append(FactorProduct(batch: 1, m: m, n: n, ranks: [r], u: sizes.count, v: sizes.count + 1, middle: []))
            sizes += [m * r, n * r]
        }
        let params = sizes.map { b.random($0, &rng) }, grads = sizes.map { UnsafePointer(b.random($0, &rng)) }
        let lambda: [Float] = [0.1, 0.2, 0.3, 0.4, 0.5]
        let t = try OptimTensors(params: params, grads: grads, sizes: sizes, decay: sizes.map { _ in 0 })
        try FactorDecayTerms.with(t, products, lambda: lambda, workspace: nil) { fd in
            XCTAssertNil(fd[0])
            for (c, p) in products.enumerated() {
                let (du, dv) = fdReference(array(params[p.u], sizes[p.u]), array(params[p.v], sizes[p.v]),
                                           m: p.m, n: p.n, r: p.ranks[0], lam: Double(lambda[c]))
                let scale = max(1, du.map(abs).max()!, dv.map(abs).max()!)
                assertClose(array(fd[p.u]!, sizes[p.u]), du, rtol: 1e-4, atol: 1e-5 * scale, "fd U of product \(c)")
                assertClose(array(fd[p.v]!, sizes[p.v]), dv, rtol: 1e-4, atol: 1e-5 * scale, "fd V of product \(c)")
            }
        }
    }

    /// A non-finite factor stops the step before any parameter changes, naming the product
    /// and the factor (depth 0 reads it off the Gram diagonals, deeper chains scan).
    func testNonFiniteFactorNamesItsProductAndChangesNothing() throws {
        for depth in [0, 1] {
            var rng = SplitMix(state: 9)
            let b = Buffers()
            var sizes = [4 * 2, 3 * 2, 5 * 3, 4 * 3]      // product 0: U 4x2, V 3x2; product 1: U 5x3, V 4x3
            if depth == 1 { sizes.append(9) }              // product 1: M 3x3
            let params = sizes.map { b.random($0, &rng) }, grads = sizes.map { UnsafePointer(b.random($0, &rng)) }
            params[3][5] = .nan
            let before = zip(params, sizes).map { array($0, $1) }
            let t = try OptimTensors(params: params, grads: grads, sizes: sizes, decay: sizes.map { _ in 0 })
            let products = [FactorProduct(batch: 1, m: 4, n: 3, ranks: [2], u: 0, v: 1, middle: []),
                            FactorProduct(batch: 1, m: 5, n: 4, ranks: depth == 0 ? [3] : [3, 3], u: 2, v: 3,
                                          middle: depth == 0 ? [] : [4])]
            assertInvalid("factor product 1: V contains NaN or inf (first at flat index 5") {
                try SGD.step(t, buffers: nil, products: products, fdLambda: [0.1, 0.1], SGD.Hyper(lr: 0.1))
            }
            for i in 0..<sizes.count where i != 3 { XCTAssertEqual(array(params[i], sizes[i]), before[i]) }
        }
    }

    func testParseChecksIndicesSizesAndOwnership() throws {
        let sizes = [6, 4, 4, 10]
        // depth 1: U 3x2, M 2x2, V 2x2.
        let ok: [Int64] = [1, 1, 3, 2, 2, 2, 0, 2, 1]
        let p = try ok.withUnsafeBufferPointer { try FactorProduct.parse($0, sizes: sizes) }
        XCTAssertEqual(p, [FactorProduct(batch: 1, m: 3, n: 2, ranks: [2, 2], u: 0, v: 2, middle: [1])])
        let bad: [([Int64], String)] = [
            ([0, 1, 3, 2, 2, 0, 9], "out of range"),
            ([0, 1, 3, 2, 2, 0, 0], "twice"),
            ([0, 1, 3, 2, 2, 0, 1, 0, 1, 3, 2, 2, 0, 1], "belongs to"),
            ([0, 1, 3, 5, 2, 0, 1], "must hold"),
            ([0, 1, 3, 2], "truncated"),
            ([-1, 1, 3, 2, 2, 0, 1], "depth"),
            ([0, 1, 3, 2, 0, 0, 1], "r_0"),
            ([0, 2_147_483_647, 2_147_483_647, 2, 2_147_483_647, 0, 1], "absurd"),
        ]
        for (rec, want) in bad {
            XCTAssertThrowsError(try rec.withUnsafeBufferPointer { try FactorProduct.parse($0, sizes: sizes) }) { e in
                XCTAssertTrue("\(e)".contains(want), "\(rec): \(e)")
            }
        }
    }
}

final class OptimAdamWTests: XCTestCase {
    func testAdamWMatchesFloat64Reference() throws {
        var rng = SplitMix(state: 3)
        let b = Buffers()
        let n = 53
        let w = b.random(n, &rng), g = b.random(n, &rng)
        let mBuf = b.make([Float](repeating: 0, count: n)), vBuf = b.make([Float](repeating: 0, count: n))
        var rw = array(w, n), rm = [Double](repeating: 0, count: n), rv = rm
        let (lr, b1, b2, eps, lam) = (0.01, 0.9, 0.999, 1e-8, 0.1)
        let t = try OptimTensors(params: [w], grads: [UnsafePointer(g)], sizes: [n], decay: [Float(lam)])
        for step in 1...3 {
            for j in 0..<n {
                let gj = Double(g[j])
                rm[j] = b1 * rm[j] + (1 - b1) * gj
                rv[j] = b2 * rv[j] + (1 - b2) * gj * gj
                let r = (rm[j] / (1 - pow(b1, Double(step)))) / ((rv[j] / (1 - pow(b2, Double(step)))).squareRoot() + eps)
                rw[j] -= lr * (r + lam * rw[j])
            }
            try AdamW.step(t, expAvg: [mBuf], expAvgSq: [vBuf], lr: Float(lr),
                           moments: try AdamMoments(beta1: Float(b1), beta2: Float(b2), eps: Float(eps), step: step))
        }
        assertClose(array(w, n), rw, rtol: 1e-5, atol: 1e-6, "w")
        XCTAssertThrowsError(try AdamMoments(beta1: 1, beta2: 0.999, eps: 1e-8, step: 1))
        XCTAssertThrowsError(try AdamMoments(beta1: 0.9, beta2: 0.999, eps: 0, step: 1))
        XCTAssertThrowsError(try AdamMoments(beta1: 0.9, beta2: 0.999, eps: 1e-8, step: 0))
    }
}

final class OptimLAMBTests: XCTestCase {
    func testTrustRatiosWithFrobeniusDecayAndZeroNormEdgeCases() throws {
        var rng = SplitMix(state: 4)
        let b = Buffers()
        let (m, n, r) = (6, 4, 2)
        let sizes = [m * r, n * r, 20, 9]
        let params = [b.random(sizes[0], &rng), b.random(sizes[1], &rng), b.random(20, &rng),
                      b.make([Float](repeating: 0, count: 9))]                     // zero weights
        let grads = [b.random(sizes[0], &rng), b.random(sizes[1], &rng),
                     b.make([Float](repeating: 0, count: 20)), b.random(9, &rng)]  // zero gradient
        let ms = sizes.map { b.make([Float](repeating: 0, count: $0)) }
        let vs = sizes.map { b.make([Float](repeating: 0, count: $0)) }
        let (lr, lam, eps) = (0.01, 0.1, 1e-6)
        let decay: [Float] = [0, 0, 0, Float(lam)]
        let t = try OptimTensors(params: params, grads: grads.map { UnsafePointer($0) }, sizes: sizes, decay: decay)
        let product = FactorProduct(batch: 1, m: m, n: n, ranks: [r], u: 0, v: 1, middle: [])
        let before = zip(params, sizes).map { array($0, $1) }
        let (du, dv) = fdReference(before[0], before[1], m: m, n: n, r: r, lam: lam)
        let fd = [du, dv, [Double](repeating: 0, count: 20), [Double](repeating: 0, count: 9)]
        var trust = [Double](repeating: -1, count: 4)
        try LAMB.step(t, expAvg: ms, expAvgSq: vs, products: [product], fdLambda: [Float(lam)], lr: Float(lr),
                      moments: try AdamMoments(beta1: 0.9, beta2: 0.999, eps: Float(eps), step: 1), trust: &trust)
        for i in 0..<4 {
            let g = array(grads[i], sizes[i])
            // Step 1: m_hat = g, v_hat = g^2.
            let u = (0..<sizes[i]).map { j in g[j] / (abs(g[j]) + eps) + Double(decay[i]) * before[i][j] + fd[i][j] }
            let wn = before[i].map { $0 * $0 }.reduce(0, +).squareRoot(), un = u.map { $0 * $0 }.reduce(0, +).squareRoot()
            let ratio = wn > 0 && un > 0 ? wn / un : 1
            XCTAssertEqual(trust[i], ratio, accuracy: 1e-5 * ratio, "trust \(i)")
            assertClose(array(params[i], sizes[i]), (0..<sizes[i]).map { before[i][$0] - lr * ratio * u[$0] },
                        rtol: 1e-5, atol: 1e-6, "w\(i)")
        }
        XCTAssertEqual(trust[3], 1)
    }
}

final class OptimNormMatchingTests: XCTestCase {
    func testRescalesDeepProductToTargetAndKeepsBalance() throws {
        var rng = SplitMix(state: 5)
        let b = Buffers()
        let (m, n, r) = (5, 4, 3)
        let sizes = [m * r, r * r, n * r, 4]
        let params = sizes.map { b.random($0, &rng) }
        let zeroU = b.make([Float](repeating: 0, count: m * r))
        let p = FactorProduct(batch: 1, m: m, n: n, ranks: [r, r], u: 0, v: 2, middle: [1])
        let before = try NormMatching.norms([p], params: params)[0]
        let old = zip(params, sizes).map { array($0, $1) }
        let returned = try NormMatching.rescale([p], params: params, sizes: sizes, targets: [2.5])
        XCTAssertEqual(returned[0], before, accuracy: 1e-12)
        XCTAssertEqual(try NormMatching.norms([p], params: params)[0], 2.5, accuracy: 1e-4)
        let s = pow(2.5 / before, 1.0 / 3)
        for i in 0..<3 { assertClose(array(params[i], sizes[i]), old[i].map { $0 * s }, rtol: 1e-5, atol: 1e-7, "f\(i)") }
        XCTAssertEqual(array(params[3], 4), old[3], "tensors outside the product are untouched")
        // A zero product is left unchanged; bad targets are rejected before any change.
        var zp = params; zp[0] = zeroU
        XCTAssertEqual(try NormMatching.rescale([p], params: zp, sizes: sizes, targets: [1])[0], 0)
        XCTAssertEqual(array(zeroU, m * r), [Double](repeating: 0, count: m * r))
        XCTAssertThrowsError(try NormMatching.rescale([p], params: params, sizes: sizes, targets: [-1]))
        XCTAssertThrowsError(try NormMatching.rescale([p], params: params, sizes: sizes, targets: [.nan]))
        XCTAssertThrowsError(try NormMatching.rescale([p], params: params, sizes: sizes, targets: []))
    }
}
