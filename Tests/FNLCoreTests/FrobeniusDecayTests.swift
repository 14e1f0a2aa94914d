import XCTest
@testable import FNLCore

final class FrobeniusDecayTests: XCTestCase {
    /// Reference gradients through the formed W (float64): G = lam W.
    func referenceGradients(_ ch: Chain, _ b: Int, _ lam: Double) -> [DMat] {
        let d = ch.mids.count
        let G = lam * ch.W(b)
        var right = [ch.V(b).t]              // right[k] = M_{d-k+1} .. M_d V^T
        for j in stride(from: d - 1, through: 0, by: -1) { right.append(ch.M(j, b) * right.last!) }
        right.reverse()                      // right[j] = M_{j+1} .. M_d V^T
        var out = [G * right[0].t, G.t * ch.left(b, upTo: d)]
        for j in 0..<d { out.append(ch.left(b, upTo: j).t * G * right[j + 1].t) }
        return out
    }

    func testSquaredNormsAndPenalty() throws {
        for (k, (m, n, ranks)) in chainShapes.enumerated() {
            let ch = Chain(batch: 2, m: m, n: n, ranks: ranks, seed: UInt64(200 + k))
            let c = try ch.chain()
            let sq = try FrobeniusDecay.squaredNorms(c)
            let ref = (0..<2).map { ch.W($0).frobenius2 }
            assertClose(sq, ref, rtol: 1e-5, atol: 1e-6, "squared norms \(ranks)")
            let p = try FrobeniusDecay.penalty(c, lambda: 0.3)
            assertClose([p], [0.15 * ref.reduce(0, +)], rtol: 1e-5, atol: 1e-7, "penalty")
        }
    }

    func testGradientMatchesReferenceAndAccumulates() throws {
        for (k, (m, n, ranks)) in chainShapes.enumerated() {
            for batch in [1, 2] {
                let ch = Chain(batch: batch, m: m, n: n, ranks: ranks, seed: UInt64(300 + k))
                let c = try ch.chain()
                let lam: Float = 0.7
                let du = Buffer(zeros: batch * c.uCount), dv = Buffer(zeros: batch * c.vCount)
                let dm = (0..<c.depth).map { Buffer(zeros: batch * c.middleCount($0)) }
                try FrobeniusDecay.gradient(c, lambda: lam, accumulate: false, dU: du.ptr, dV: dv.ptr, dMiddle: dm.map { $0.ptr })
                let outs = [du, dv] + dm
                for b in 0..<batch {
                    let ref = referenceGradients(ch, b, Double(lam))
                    for (i, g) in ref.enumerated() {
                        let cnt = g.a.count
                        assertClose(Array(outs[i].array[(b * cnt)..<((b + 1) * cnt)]), g.a, rtol: 1e-4,
                                    atol: 1e-5 * max(1, g.maxAbs), "gradient \(i) of \(ranks) b\(b)")
                    }
                }
                // accumulate: adds the same gradient again.
                let before = outs.map { $0.doubles }
                try FrobeniusDecay.gradient(c, lambda: lam, accumulate: true, dU: du.ptr, dV: dv.ptr, dMiddle: dm.map { $0.ptr })
                for (o, x) in zip(outs, before) {
                    assertClose(o.array, x.map { 2 * $0 }, rtol: 1e-6, atol: 1e-7, "accumulated")
                }
            }
        }
    }

    /// The depth-0 kernel of the optimizers: ranks 1-5 (the Swift Gram path and its threshold),
    /// 19 (ResNet-20 at rank-scale 0.1), odd and one-row factors, batches, beta 0 and 1.
    func testPairGradientMatchesFloat64ReferenceOverManyShapes() throws {
        let shapes = [(1, 1, 1), (2, 3, 1), (5, 7, 2), (9, 4, 3), (16, 8, 4), (33, 17, 4), (48, 48, 5),
                      (7, 300, 3), (1025, 3, 2), (192, 96, 19), (96, 48, 10), (3, 2, 6), (64, 32, 6)]
        for (k, (m, n, r)) in shapes.enumerated() {
            for batch in [1, 2] {
                let ch = Chain(batch: batch, m: m, n: n, ranks: [r], seed: UInt64(500 + k))
                let c = try ch.chain()
                let du = Buffer(randn: batch * m * r, seed: 1), dv = Buffer(randn: batch * n * r, seed: 2)
                let du0 = du.doubles, dv0 = dv.doubles
                let scratch = Buffer([Float](repeating: .nan, count: FrobeniusDecay.pairScratchCount(rank: r)))
                try FrobeniusDecay.pairGradient(c, lambda: 0.7, beta: 1, dU: du.ptr, dV: dv.ptr,
                                                scratch: scratch.ptr, checkFactors: true)
                for b in 0..<batch {
                    let ref = referenceGradients(ch, b, 0.7)
                    let (cu, cv) = (m * r, n * r)
                    let eu = (0..<cu).map { du0[b * cu + $0] + ref[0].a[$0] }, ev = (0..<cv).map { dv0[b * cv + $0] + ref[1].a[$0] }
                    assertClose(Array(du.array[(b * cu)..<((b + 1) * cu)]), eu, rtol: 1e-4, atol: 1e-5 * max(1, ref[0].maxAbs),
                                "dU \(m)x\(n) r\(r) b\(b)")
                    assertClose(Array(dv.array[(b * cv)..<((b + 1) * cv)]), ev, rtol: 1e-4, atol: 1e-5 * max(1, ref[1].maxAbs),
                                "dV \(m)x\(n) r\(r) b\(b)")
                }
            }
        }
    }

    /// With `checkFactors`, a NaN or inf in U or V (any batch item) throws naming the first
    /// non-finite entry, as the chain's own scan would; huge finite entries pass (their
    /// gradients overflow to inf, as documented).
    func testPairGradientFindsNonFiniteFactorsFromTheGramDiagonal() throws {
        for (bad, which, at) in [(Float.nan, "U", 7), (.infinity, "V", 4), (-.infinity, "U", 0)] {
            let ch = Chain(batch: 2, m: 3, n: 4, ranks: [3], seed: 41)
            (which == "U" ? ch.u : ch.v).ptr[at] = bad
            let c = try FactorChain(batch: 2, m: 3, n: 4, ranks: [3], u: ch.u.c, v: ch.v.c, middle: [], checkFinite: false)
            let du = Buffer(zeros: 18), dv = Buffer(zeros: 24), s = Buffer(zeros: 18)
            assertInvalid("\(which) contains NaN or inf (first at flat index \(at)") {
                try FrobeniusDecay.pairGradient(c, lambda: 1, beta: 0, dU: du.ptr, dV: dv.ptr, scratch: s.ptr, checkFactors: true)
            }
        }
        let u = Buffer([3e19, 1, 2, 3]), v = Buffer([1, 1, 1, 1, 1, 1])
        let c = try FactorChain(batch: 1, m: 2, n: 3, ranks: [2], u: u.c, v: v.c, middle: [], checkFinite: false)
        let du = Buffer(zeros: 4), dv = Buffer(zeros: 6), s = Buffer(zeros: 8)
        try FrobeniusDecay.pairGradient(c, lambda: 1, beta: 0, dU: du.ptr, dV: dv.ptr, scratch: s.ptr, checkFactors: true)
        XCTAssertTrue(dv.array.contains { !$0.isFinite }, "\(dv.array)")
    }

    func testGradientMatchesCentralDifferences() throws {
        let ch = Chain(m: 4, n: 3, ranks: [2, 3, 2], seed: 77)
        let c = try ch.chain()
        let lam = 1.3
        let du = Buffer(zeros: c.uCount), dv = Buffer(zeros: c.vCount)
        let dm = (0..<c.depth).map { Buffer(zeros: c.middleCount($0)) }
        try FrobeniusDecay.gradient(c, lambda: Float(lam), accumulate: false, dU: du.ptr, dV: dv.ptr, dMiddle: dm.map { $0.ptr })
        // Penalty in float64 as a function of the (double) factor entries.
        var U = ch.U(0), V = ch.V(0), Ms = (0..<c.depth).map { ch.M($0, 0) }
        func penalty() -> Double { 0.5 * lam * (Ms.reduce(U, *) * V.t).frobenius2 }
        let h = 1e-6
        func fd(_ get: () -> Double, _ set: (Double) -> Void) -> Double {
            let x = get()
            set(x + h); let hi = penalty()
            set(x - h); let lo = penalty()
            set(x)
            return (hi - lo) / (2 * h)
        }
        let gu = (0..<U.a.count).map { i in fd({ U.a[i] }, { U.a[i] = $0 }) }
        let gv = (0..<V.a.count).map { i in fd({ V.a[i] }, { V.a[i] = $0 }) }
        assertClose(du.array, gu, rtol: 1e-4, atol: 1e-5, "dU vs FD")
        assertClose(dv.array, gv, rtol: 1e-4, atol: 1e-5, "dV vs FD")
        for j in 0..<c.depth {
            let gm = (0..<Ms[j].a.count).map { i in fd({ Ms[j].a[i] }, { Ms[j].a[i] = $0 }) }
            assertClose(dm[j].array, gm, rtol: 1e-4, atol: 1e-5, "dM\(j) vs FD")
        }
    }

    func testLambdaValidation() throws {
        let ch = Chain(m: 3, n: 2, ranks: [2], seed: 1)
        let c = try ch.chain()
        for bad: Float in [-1, .nan, .infinity] {
            assertInvalid("lam must be a finite number >= 0") { _ = try FrobeniusDecay.penalty(c, lambda: bad) }
        }
        let du = Buffer(zeros: 6), dv = Buffer(zeros: 4)
        assertInvalid("expected 0 middle gradient buffers") {
            try FrobeniusDecay.gradient(c, lambda: 1, accumulate: false, dU: du.ptr, dV: dv.ptr, dMiddle: [du.ptr])
        }
        XCTAssertEqual(try FrobeniusDecay.penalty(c, lambda: 0), 0)
    }

    func testOverflowingGramsAreRecomputed() throws {
        let u = Buffer([1e38, 2e38, -1e38, 0.5e38]), v = Buffer([1, 2, 3, 4, 5, 6])
        let c = try FactorChain(batch: 1, m: 2, n: 3, ranks: [2], u: u.c, v: v.c, middle: [])
        let W = DMat(2, 2, u.doubles) * DMat(3, 2, v.doubles).t
        assertClose(try FrobeniusDecay.squaredNorms(c), [W.frobenius2], rtol: 1e-5, atol: 0, "huge entries")
        let tiny = Buffer([1e-30, 2e-30, -1e-30, 0.5e-30])
        let c2 = try FactorChain(batch: 1, m: 2, n: 3, ranks: [2], u: tiny.c, v: v.c, middle: [])
        let W2 = DMat(2, 2, tiny.doubles) * DMat(3, 2, v.doubles).t
        assertClose(try FrobeniusDecay.squaredNorms(c2), [W2.frobenius2], rtol: 1e-5, atol: 0, "tiny entries")
    }
}
