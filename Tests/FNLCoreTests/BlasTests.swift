import XCTest
@testable import FNLCore

final class BlasTests: XCTestCase {
    func testGemmAllTransposesTinyAndLarge() {
        for (m, n, k) in [(1, 1, 1), (2, 3, 4), (7, 5, 3), (40, 30, 20), (1, 64, 33), (64, 1, 9)] {
            for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
                let A = Buffer(randn: m * k, seed: 1), B = Buffer(randn: k * n, seed: 2), C = Buffer(randn: m * n, seed: 3)
                let Ad = ta ? DMat(k, m, A.array).t : DMat(m, k, A.array)
                let Bd = tb ? DMat(n, k, B.array).t : DMat(k, n, B.array)
                let expected = 0.5 * (Ad * Bd) + 2.0 * DMat(m, n, C.array)
                Blas.gemm(ta, tb, m, n, k, 0.5, A.c, ta ? m : k, B.c, tb ? k : n, 2, C.ptr, n)
                assertClose(C.array, expected.a, rtol: 1e-5, atol: 1e-5, "gemm \(m)x\(n)x\(k) \(ta) \(tb)")
                // beta = 0 ignores (even non-finite) contents of C.
                let D = Buffer([Float](repeating: .nan, count: m * n))
                Blas.gemm(ta, tb, m, n, k, 1, A.c, ta ? m : k, B.c, tb ? k : n, 0, D.ptr, n)
                assertClose(D.array, (Ad * Bd).a, rtol: 1e-5, atol: 1e-5, "beta 0")
            }
        }
    }

    func testGemmEmptyIsNoOp() {
        let c = Buffer([1, 2])
        Blas.gemm(false, false, 0, 2, 3, 1, c.c, 3, c.c, 2, 0, c.ptr, 2)
        XCTAssertEqual(c.array, [1, 2])
    }

    func testGram() {
        for (rows, k) in [(1, 1), (3, 2), (5, 5), (50, 12), (7, 40)] {
            let A = Buffer(randn: rows * k, seed: UInt64(rows + k)), G = Buffer(zeros: k * k)
            Blas.gram(A.c, rows, k, G.ptr)
            let Ad = DMat(rows, k, A.array)
            assertClose(G.array, (Ad.t * Ad).a, rtol: 1e-5, atol: 1e-5, "gram \(rows)x\(k)")
        }
    }

    func testReductionsInFloat64() {
        for count in [0, 1, 7, 8, 9, 100] {
            let a = Buffer(randn: count, seed: 5), b = Buffer(randn: count, seed: 6)
            let ss = a.doubles.reduce(0) { $0 + $1 * $1 }
            let dot = zip(a.doubles, b.doubles).reduce(0) { $0 + $1.0 * $1.1 }
            XCTAssertEqual(Blas.sumOfSquares(a.c, count), ss, accuracy: 1e-12 * max(1, ss))
            XCTAssertEqual(Blas.dot(a.c, b.c, count), dot, accuracy: 1e-12 * max(1, abs(dot)))
        }
        let big = Buffer([Float](repeating: .greatestFiniteMagnitude, count: 20))
        XCTAssertTrue(Blas.sumOfSquares(big.c, 20).isFinite)
    }

    func testCopyAndIdentity() {
        let a = Buffer([1, 2, 3, 4, 5, 6]), d = Buffer(zeros: 6)
        Blas.copy(a.c, 2, 3, d.ptr, transpose: true)
        XCTAssertEqual(d.array, [1, 4, 2, 5, 3, 6])
        Blas.copy(a.c, 2, 3, d.ptr)
        XCTAssertEqual(d.array, a.array)
        let i = Buffer([Float](repeating: 7, count: 9))
        Blas.identity(3, i.ptr)
        XCTAssertEqual(i.array, [1, 0, 0, 0, 1, 0, 0, 0, 1])
    }
}
