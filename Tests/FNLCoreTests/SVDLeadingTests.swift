import XCTest
@testable import FNLCore

/// SVD.leading and the exact SI path built on it, on matrices built (in float64, rounded to
/// float32) with known singular values.
final class SVDLeadingTests: XCTestCase {
    /// A row-major m x n matrix with known singular values `s` and random orthonormal vectors
    /// (QR of Gaussian matrices), in float32.
    func matrix(_ m: Int, _ n: Int, _ s: [Float], seed: UInt64) throws -> [Float] {
        let k = s.count
        var rng = Xoshiro256(seed: seed)
        var p = [Float](repeating: 0, count: m * k), q = [Float](repeating: 0, count: n * k)
        try p.withUnsafeMutableBufferPointer { b in rng.fillNormal(b.baseAddress!, m * k); try QR.orthonormalize(b.baseAddress!, m, k) }
        try q.withUnsafeMutableBufferPointer { b in rng.fillNormal(b.baseAddress!, n * k); try QR.orthonormalize(b.baseAddress!, n, k) }
        var w = [Float](repeating: 0, count: m * n)
        for i in 0..<m { for j in 0..<n {
            var acc = 0.0
            for l in 0..<k { acc += Double(p[i * k + l]) * Double(s[l]) * Double(q[j * k + l]) }
            w[i * n + j] = Float(acc)
        } }
        return w
    }

    func testLeadingTripletsMatchKnownSpectrum() throws {
        for (m, n, r) in [(160, 130, 7), (130, 160, 20), (200, 128, 1)] {
            let k = min(m, n)
            let s = (0..<k).map { Float(3.0 / (1.0 + Double($0) / 3.0)) }
            var w = try matrix(m, n, s, seed: UInt64(m * n + r))
            var sv = [Float](repeating: 0, count: k), p = [Float](repeating: 0, count: m * r), qt = [Float](repeating: 0, count: r * n)
            try SVD.leading(&w, m, n, r, s: &sv, p: &p, qt: &qt)
            for i in 0..<r { XCTAssertEqual(sv[i], s[i], accuracy: 2e-5 * s[0], "s[\(i)] of \(m)x\(n)") }
        }
    }

    func testExactSIThroughLeadingTripletsIsBalancedAndOptimal() throws {
        let (m, n, r) = (200, 150, 12)
        XCTAssertTrue(SpectralInit.usesLeadingTriplets(m, n, r))
        XCTAssertFalse(SpectralInit.usesLeadingTriplets(m, n, 100))
        let k = min(m, n)
        let s = (0..<k).map { Float(2.0 / (1.0 + Double($0) / 5.0)) }
        let w = try matrix(m, n, s, seed: 7)
        var u = [Float](repeating: 0, count: m * r), v = [Float](repeating: 0, count: n * r), out = [Float](repeating: 0, count: r)
        let result = try SpectralInit.run(w, m, n, SpectralInit.Options(rank: r), u: &u, v: &v, s: &out)
        var tail = 0.0, total = 0.0
        for i in 0..<k { total += Double(s[i]) * Double(s[i]); if i >= r { tail += Double(s[i]) * Double(s[i]) } }
        XCTAssertEqual(result.relativeError, (tail / total).squareRoot(), accuracy: 1e-5)
        for a in 0..<r {
            for b in 0..<r {
                var gu = 0.0, gv = 0.0
                for i in 0..<m { gu += Double(u[i * r + a]) * Double(u[i * r + b]) }
                for j in 0..<n { gv += Double(v[j * r + a]) * Double(v[j * r + b]) }
                let want = a == b ? Double(s[a]) : 0
                XCTAssertEqual(gu, want, accuracy: 1e-5 * Double(s[0]), "U^T U[\(a), \(b)]")
                XCTAssertEqual(gv, want, accuracy: 1e-5 * Double(s[0]), "V^T V[\(a), \(b)]")
            }
        }
    }

    func testLeadingRejectsBadRank() throws {
        var w = [Float](repeating: 1, count: 12), sv = [Float](repeating: 0, count: 3)
        var p = [Float](repeating: 0, count: 16), qt = [Float](repeating: 0, count: 16)
        XCTAssertThrowsError(try SVD.leading(&w, 4, 3, 4, s: &sv, p: &p, qt: &qt))
        XCTAssertThrowsError(try SVD.leading(&w, 4, 3, 0, s: &sv, p: &p, qt: &qt))
    }
}
