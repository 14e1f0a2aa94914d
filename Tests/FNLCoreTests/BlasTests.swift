import XCTest
@testable import FNLCore
#if canImport(Glibc)
import Glibc
#endif

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

    /// A^T A in float64 and the bound sum_i |A_ip A_iq| that scales its float32 rounding.
    func gramReference(_ a: [Float], _ rows: Int, _ k: Int) -> (g: [Double], scale: [Double]) {
        var g = [Double](repeating: 0, count: k * k), s = g
        for i in 0..<rows { for p in 0..<k { for q in 0..<k {
            let x = Double(a[i * k + p]) * Double(a[i * k + q])
            g[p * k + q] += x
            s[p * k + q] += abs(x)
        } } }
        return (g, s)
    }

    func assertGram(_ got: [Float], _ a: [Float], _ rows: Int, _ k: Int, _ what: String,
                    file: StaticString = #filePath, line: UInt = #line) {
        let (g, scale) = gramReference(a, rows, k)
        for i in 0..<(k * k) where !(abs(Double(got[i]) - g[i]) <= 2e-6 * scale[i] + 1e-30) {
            XCTFail("\(what): G[\(i / k), \(i % k)] = \(got[i]), float64 \(g[i])", file: file, line: line)
            return
        }
        for p in 0..<k { for q in 0..<p where got[p * k + q] != got[q * k + p] {
            XCTFail("\(what): not symmetric at (\(p), \(q))", file: file, line: line)
            return
        } }
    }

    /// Every path of `gram` against float64: the sum of squares (k = 1), NarrowGram (k <= 4 up to
    /// narrowGramWork), sgemm (up to gemmGramWork; one call, or two when k > 16 is not a multiple
    /// of 16) and ssyrk, on odd and even sizes, one row, and each threshold hit exactly and
    /// exceeded by one row.
    func testGramPathsAndThresholdEdgesMatchFloat64() {
        var shapes: [(Int, Int)] = []
        for k in 1...6 { for rows in [1, 2, 3, 4, 5, 7, 8, 9, 16, 17, 33] { shapes.append((rows, k)) } }
        for k in 2...4 {
            let edge = Blas.narrowGramWork / (k * k)
            shapes += [(edge - 1, k), (edge, k), (edge + 1, k)]
        }
        let k32 = Blas.gemmGramWork / (32 * 32)
        shapes += [(k32, 32), (k32 + 1, 32), (1, 19), (192, 19), (7, 41), (600, 48), (1000, 1), (4097, 1),
                   (5, 16), (33, 17), (3, 33), (20, 47), (2, 64)]       // (sgemm split at 16-column multiples)
        for (idx, (rows, k)) in shapes.enumerated() {
            let a = Buffer(randn: rows * k, seed: UInt64(100 + idx)), g = Buffer([Float](repeating: .nan, count: k * k))
            Blas.gram(a.c, rows, k, g.ptr)
            assertGram(g.array, a.array, rows, k, "gram \(rows)x\(k)")
        }
    }

    /// NarrowGram loads rows as 4 floats: a matrix that ends where an unreadable page begins
    /// must not be read past its last element (this test would crash).
    func testNarrowGramReadsNothingPastTheMatrix() throws {
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        guard let raw = mmap(nil, 2 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0),
              raw != MAP_FAILED else { throw XCTSkip("mmap failed") }
        defer { munmap(raw, 2 * page) }
        XCTAssertEqual(mprotect(raw + page, page, PROT_NONE), 0)
        var rng = Xoshiro256(seed: 9)
        for k in 1...4 {
            for rows in [1, 2, 3, 4, 5, 6, 9, 31] {
                let a = (raw + page).assumingMemoryBound(to: Float.self) - rows * k
                rng.fillNormal(a, rows * k)
                let values = Array(UnsafeBufferPointer(start: a, count: rows * k))
                let g = Buffer(zeros: k * k)
                NarrowGram.run(a, rows, k, g.ptr)
                assertGram(g.array, values, rows, k, "narrow \(rows)x\(k)")
                Blas.gram(a, rows, k, g.ptr)
                assertGram(g.array, values, rows, k, "gram at the page end \(rows)x\(k)")
            }
        }
    }

    func testGemmWithEmptyInnerDimensionScalesC() {
        let c = Buffer([1, 2, 3, 4, 5, 6]), a = Buffer([0]), b = Buffer([0])
        Blas.gemm(false, false, 2, 3, 0, 1, a.c, 0, b.c, 3, 0.5, c.ptr, 3)
        XCTAssertEqual(c.array, [0.5, 1, 1.5, 2, 2.5, 3])
        let d = Buffer([Float](repeating: .nan, count: 4))
        Blas.gemm(true, true, 2, 2, 0, 1, a.c, 2, b.c, 0, 0, d.ptr, 2)
        XCTAssertEqual(d.array, [0, 0, 0, 0])
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
