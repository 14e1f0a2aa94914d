import XCTest
@testable import FNLCore

final class ComposeTests: XCTestCase {
    func testComposeMatchesDoubleReference() throws {
        for (k, (m, n, ranks)) in chainShapes.enumerated() {
            for batch in [1, 3] {
                let ch = Chain(batch: batch, m: m, n: n, ranks: ranks, seed: UInt64(100 + k))
                let w = Buffer(zeros: batch * m * n)
                try Compose.compose(try ch.chain(), into: w.ptr)
                for b in 0..<batch {
                    let ref = ch.W(b)
                    assertClose(Array(w.array[(b * m * n)..<((b + 1) * m * n)]), ref.a, rtol: 1e-5,
                                atol: 1e-5 * max(1, ref.maxAbs), "compose \(m)x\(n) \(ranks) b\(b)")
                }
            }
        }
    }

    func testComposeWideAndTallOrders() throws {
        // m <= n multiplies (U M) V^T, m > n U (M V^T): both orders agree with the reference.
        for (m, n) in [(3, 50), (50, 3)] {
            let ch = Chain(m: m, n: n, ranks: [5, 2, 7], seed: 9)
            let w = Buffer(zeros: m * n)
            try Compose.compose(try ch.chain(), into: w.ptr)
            assertClose(w.array, ch.W(0).a, rtol: 1e-5, atol: 1e-5, "\(m)x\(n)")
        }
    }
}
