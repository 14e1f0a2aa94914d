import XCTest
@testable import FNLCore

final class DiagnosticsTests: XCTestCase {
    func testNuclearNormsMatchJacobiSVD() throws {
        for (k, (m, n, ranks)) in chainShapes.enumerated() {
            let ch = Chain(batch: 2, m: m, n: n, ranks: ranks, seed: UInt64(400 + k))
            let got = try Diagnostics.nuclearNorms(try ch.chain())
            let ref = (0..<2).map { jacobiSVD(ch.W($0)).s.reduce(0, +) }
            assertClose(got, ref, rtol: 1e-4, atol: 1e-5, "nuclear \(m)x\(n) \(ranks)")
        }
    }

    func testNuclearNormOverFloat32Range() throws {
        for scale: Float in [5e37, 1e-30, 1e-44] {
            let u = Buffer([1, -2, 3, 0.5, 4, 1].map { $0 * scale }), v = Buffer([1, 2, 3, 4, 5, 6].map { $0 * scale })
            let c = try FactorChain(batch: 1, m: 3, n: 3, ranks: [2], u: u.c, v: v.c, middle: [])
            let W = DMat(3, 2, u.doubles) * DMat(3, 2, v.doubles).t
            assertClose(try Diagnostics.nuclearNorms(c), [jacobiSVD(W).s.reduce(0, +)], rtol: 1e-5, atol: 0, "scale \(scale)")
        }
    }

    func testBalance() throws {
        for (m, n, r) in [(1, 1, 1), (6, 5, 3), (1, 9, 4), (20, 30, 7)] {
            let ch = Chain(batch: 2, m: m, n: n, ranks: [r], seed: UInt64(m * n))
            let got = try Diagnostics.balance(try ch.chain())
            let ref = (0..<2).map { b -> Double in (ch.U(b).t * ch.U(b) - ch.V(b).t * ch.V(b)).frobenius2.squareRoot() }
            assertClose(got, ref, rtol: 1e-5, atol: 1e-6, "balance \(m)x\(n) r\(r)")
        }
        let ch = Chain(m: 4, n: 3, ranks: [2, 2], seed: 3)
        assertInvalid("without middle matrices") { _ = try Diagnostics.balance(try ch.chain()) }
    }

    func testBalanceOverflowIsRecomputed() throws {
        let u = Buffer([1e38, 2e38, -1e38, 0.5e38]), v = Buffer([1e37, 2, 3, 4, 5, 6])
        let c = try FactorChain(batch: 1, m: 2, n: 3, ranks: [2], u: u.c, v: v.c, middle: [])
        let U = DMat(2, 2, u.doubles), V = DMat(3, 2, v.doubles)
        assertClose(try Diagnostics.balance(c), [(U.t * U - V.t * V).frobenius2.squareRoot()], rtol: 1e-5, atol: 0)
    }
}
