import XCTest
@testable import FNLCore

final class SVDTests: XCTestCase {
    func testThinSVDReconstructs() throws {
        for (m, n) in [(1, 1), (1, 6), (6, 1), (5, 5), (9, 4), (4, 9), (33, 17)] {
            let A = Buffer(randn: m * n, seed: UInt64(m * 31 + n))
            let ref = jacobiSVD(DMat(m, n, A.array))
            let k = min(m, n)
            let a = Buffer(A.array), s = Buffer(zeros: k), p = Buffer(zeros: m * k), qt = Buffer(zeros: k * n)
            try SVD.thin(a.ptr, m, n, s: s.ptr, p: p.ptr, qt: qt.ptr)
            assertClose(s.array, ref.s, rtol: 1e-5, atol: 1e-5, "s \(m)x\(n)")
            let P = DMat(m, k, p.array), Qt = DMat(k, n, qt.array)
            var S = DMat.zeros(k, k)
            for i in 0..<k { S[i, i] = Double(s.array[i]) }
            assertClose((P * S * Qt).a, A.doubles, rtol: 0, atol: 1e-5 * ref.s[0] * Double(max(m, n)), "P S Q^T \(m)x\(n)")
            assertClose((P.t * P).a, DMat.identity(k).a, rtol: 0, atol: 1e-5, "P^T P")
            assertClose((Qt * Qt.t).a, DMat.identity(k).a, rtol: 0, atol: 1e-5, "Q^T Q")
            for i in 1..<k { XCTAssertGreaterThanOrEqual(s.array[i - 1], s.array[i]) }
            // Values only.
            let a2 = Buffer(A.array), s2 = Buffer(zeros: k)
            try SVD.thin(a2.ptr, m, n, s: s2.ptr, p: nil, qt: nil)
            assertClose(s2.array, ref.s, rtol: 1e-5, atol: 1e-5, "values only")
        }
    }

    func testQROrthonormalize() throws {
        for (m, l) in [(1, 1), (5, 1), (7, 3), (20, 20), (40, 11)] {
            let Y = Buffer(randn: m * l, seed: UInt64(m + l))
            let q = Buffer(Y.array)
            try QR.orthonormalize(q.ptr, m, l)
            let Q = DMat(m, l, q.array), Yd = DMat(m, l, Y.array)
            assertClose((Q.t * Q).a, DMat.identity(l).a, rtol: 0, atol: 1e-5, "Q^T Q \(m)x\(l)")
            assertClose((Q * (Q.t * Yd)).a, Yd.a, rtol: 0, atol: 1e-4, "span")
        }
    }

    func testQRRFactor() throws {
        for (m, l) in [(1, 1), (1, 4), (4, 1), (7, 3), (3, 7), (20, 20)] {
            let Y = Buffer(randn: m * l, seed: UInt64(m * 3 + l))
            let k = min(m, l)
            let y = Buffer(Y.array), r = Buffer(zeros: k * l)
            try QR.rFactor(y.ptr, m, l, r.ptr)
            let R = DMat(k, l, r.array), Yd = DMat(m, l, Y.array)
            for i in 0..<k { for j in 0..<min(i, l) { XCTAssertEqual(R[i, j], 0) } }
            // R^T R = Y^T Y (Q has orthonormal columns).
            assertClose((R.t * R).a, (Yd.t * Yd).a, rtol: 1e-5, atol: 1e-4, "R^T R \(m)x\(l)")
        }
    }

    func testCheckMapsLapackStatuses() {
        XCTAssertNoThrow(try SVD.check(0, "x"))
        XCTAssertThrowsError(try SVD.check(3, "sgesdd")) { XCTAssertEqual($0 as? FNLError, .numerical("LAPACK sgesdd did not converge (info=3)")) }
        XCTAssertThrowsError(try SVD.check(-4, "sgesdd")) {
            guard case .numerical(let m)? = $0 as? FNLError else { return XCTFail() }
            XCTAssertTrue(m.contains("argument 4"))
        }
        XCTAssertThrowsError(try SVD.check(-1010, "sgesdd")) {
            guard case .outOfMemory? = $0 as? FNLError else { return XCTFail("\($0)") }
        }
    }
}
