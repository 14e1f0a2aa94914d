import XCTest
@testable import FNLCore

final class SpectralInitTests: XCTestCase {
    /// A matrix with singular values 0.7^i (well separated: the truncation is unique).
    func separated(_ m: Int, _ n: Int, seed: UInt64) -> DMat {
        let k = min(m, n)
        let a = jacobiSVD(DMat(m, k, Buffer(randn: m * k, seed: seed).doubles)).p
        let b = jacobiSVD(DMat(n, k, Buffer(randn: n * k, seed: seed + 1).doubles)).p
        var s = DMat.zeros(k, k)
        for i in 0..<k { s[i, i] = pow(0.7, Double(i)) }
        return a * s * b.t
    }

    func run(_ W: DMat, rank: Int, method: SpectralInit.Method = .exact, seed: UInt64 = 0)
        throws -> (u: DMat, v: DMat, s: [Double], result: SpectralInit.Result) {
        let w = Buffer(W.a.map(Float.init))
        let u = Buffer(zeros: W.rows * rank), v = Buffer(zeros: W.cols * rank), s = Buffer(zeros: rank)
        let res = try SpectralInit.run(w.c, W.rows, W.cols, .init(rank: rank, method: method, seed: seed),
                                       u: u.ptr, v: v.ptr, s: s.ptr)
        let kept = min(rank, W.rows, W.cols)
        return (DMat(W.rows, rank, u.array), DMat(W.cols, rank, v.array), Array(s.doubles[0..<kept]), res)
    }

    func testExactProperties() throws {
        for (m, n) in [(1, 1), (1, 7), (7, 1), (5, 5), (13, 7), (7, 13), (31, 17)] {
            let k = min(m, n)
            for rank in Set([1, max(1, k / 2), k, k + 3]).sorted() {
                let W = DMat(m, n, Buffer(randn: m * n, seed: UInt64(m * 100 + n)).doubles)
                let ref = jacobiSVD(W)
                let (U, V, s, res) = try run(W, rank: rank)
                let kept = min(rank, k)
                assertClose(s, Array(ref.s[0..<kept]), rtol: 1e-5, atol: 1e-5, "s \(m)x\(n) r\(rank)")
                var S = DMat.zeros(rank, rank)
                for i in 0..<kept { S[i, i] = ref.s[i] }
                let tol = 1e-5 * ref.s[0] * Double(max(m, n))
                assertClose((U.t * U).a, S.a, rtol: 0, atol: tol, "U^T U")
                assertClose((V.t * V).a, S.a, rtol: 0, atol: tol, "V^T V")
                let tail = ref.s[kept...].reduce(0) { $0 + $1 * $1 }
                assertClose([res.tailEnergy, res.totalEnergy], [tail, W.frobenius2], rtol: 1e-4, atol: 1e-4 * W.frobenius2)
                assertClose([res.relativeError], [(tail / W.frobenius2).squareRoot()], rtol: 0, atol: 1e-4)
                for row in 0..<m { for i in kept..<rank { XCTAssertEqual(U[row, i], 0) } }
                for row in 0..<n { for i in kept..<rank { XCTAssertEqual(V[row, i], 0) } }
            }
        }
    }

    func testExactIsBestRankRApproximation() throws {
        for (m, n, r) in [(12, 9, 3), (9, 12, 4), (20, 6, 6)] {
            let W = separated(m, n, seed: UInt64(m + n))
            let ref = jacobiSVD(W)
            var S = DMat.zeros(r, r)
            for i in 0..<r { S[i, i] = ref.s[i] }
            let P = DMat(m, r, (0..<m).flatMap { i in (0..<r).map { ref.p[i, $0] } })
            let Q = DMat(n, r, (0..<n).flatMap { i in (0..<r).map { ref.q[i, $0] } })
            let best = P * S * Q.t
            let (U, V, _, _) = try run(W, rank: r)
            assertClose((U * V.t).a, best.a, rtol: 0, atol: 1e-5, "U V^T \(m)x\(n) r\(r)")
        }
    }

    func testRandomizedCloseToExactAndReproducible() throws {
        let m = 120, n = 90, r = 5
        let A = DMat(m, r, Buffer(randn: m * r, seed: 1).doubles), B = DMat(n, r, Buffer(randn: n * r, seed: 2).doubles)
        let W = A * B.t + 1e-3 * DMat(m, n, Buffer(randn: m * n, seed: 3).doubles)
        let exact = try run(W, rank: r)
        let a = try run(W, rank: r, method: .randomized, seed: 42)
        let b = try run(W, rank: r, method: .randomized, seed: 42)
        XCTAssertEqual(a.u, b.u)
        XCTAssertEqual(a.v, b.v)
        assertClose(a.s, exact.s, rtol: 1e-3, atol: 0, "singular values")
        let eExact = (W - exact.u * exact.v.t).frobenius2.squareRoot()
        let eRand = (W - a.u * a.v.t).frobenius2.squareRoot()
        XCTAssertLessThanOrEqual(eRand, 1.01 * eExact + 1e-6 * W.frobenius2.squareRoot())
    }

    func testValidation() {
        let w = Buffer(zeros: 12), u = Buffer(zeros: 100), v = Buffer(zeros: 100), s = Buffer(zeros: 100)
        func call(_ m: Int, _ n: Int, _ o: SpectralInit.Options) throws {
            _ = try SpectralInit.run(w.c, m, n, o, u: u.ptr, v: v.ptr, s: s.ptr)
        }
        assertInvalid("rank must be >= 1") { try call(3, 4, .init(rank: 0)) }
        assertInvalid("W must be non-empty") { try call(0, 4, .init(rank: 1)) }
        assertInvalid("exceeds the BLAS limit") { try call(3, 4, .init(rank: 1 << 40)) }
        assertInvalid("oversample must be in") { try call(3, 4, .init(rank: 1, oversample: -1)) }
        assertInvalid("power_iters must be in") { try call(3, 4, .init(rank: 1, powerIterations: 101)) }
        w.ptr[5] = .nan
        assertInvalid("W contains NaN or inf (first at flat index 5") { try call(3, 4, .init(rank: 1)) }
    }

    func testZeroMatrix() throws {
        let (U, V, s, res) = try run(DMat.zeros(4, 3), rank: 2)
        XCTAssertEqual(U.maxAbs, 0)
        XCTAssertEqual(V.maxAbs, 0)
        XCTAssertEqual(s, [0, 0])
        XCTAssertEqual(res.relativeError, 0)
    }
}
