import XCTest
@testable import FNLCore

final class FactorChainTests: XCTestCase {
    let one = Buffer([1, 2, 3, 4, 5, 6, 7, 8])

    func chain(batch: Int = 1, m: Int, n: Int, ranks: [Int], middles: Int? = nil) throws -> FactorChain {
        try FactorChain(batch: batch, m: m, n: n, ranks: ranks, u: one.c, v: one.c,
                        middle: Array(repeating: one.c, count: middles ?? ranks.count - 1))
    }

    func testValidShapes() throws {
        let c = try chain(m: 2, n: 2, ranks: [2, 1, 2])
        XCTAssertEqual(c.depth, 2)
        XCTAssertEqual(c.rankIn, 2)
        XCTAssertEqual(c.rankOut, 2)
        XCTAssertEqual(c.uCount, 4)
        XCTAssertEqual(c.middleCount(0), 2)
    }

    func testInvalidShapesThrow() {
        assertInvalid("batch must be >= 1") { _ = try self.chain(batch: 0, m: 2, n: 2, ranks: [2]) }
        assertInvalid("ranks must have depth+1=2 entries") { _ = try self.chain(m: 2, n: 2, ranks: [2], middles: 1) }
        assertInvalid("rank r_1 must be >= 1") { _ = try self.chain(m: 2, n: 2, ranks: [2, 0]) }
        assertInvalid("U must be non-empty") { _ = try self.chain(m: 0, n: 2, ranks: [2]) }
        assertInvalid("V must be non-empty") { _ = try self.chain(m: 2, n: 0, ranks: [2]) }
        assertInvalid("exceeds the BLAS limit") { _ = try self.chain(m: 1 << 32, n: 1, ranks: [1]) }
        assertInvalid("element count") { _ = try self.chain(m: 1 << 20, n: 1, ranks: [1 << 12]) }
        assertInvalid("the composed W") { _ = try self.chain(m: 1 << 16, n: 1 << 16, ranks: [1]) }
        assertInvalid("absurd size") { _ = try self.chain(batch: Int.max / 2, m: 2, n: 2, ranks: [2]) }
    }

    func testNonFiniteFactorsAreNamed() {
        let bad = Buffer([1, .nan, 3, 4])
        let good = Buffer([1, 2, 3, 4])
        assertInvalid("U contains NaN or inf (first at flat index 1") {
            _ = try FactorChain(batch: 1, m: 2, n: 2, ranks: [2], u: bad.c, v: good.c, middle: [])
        }
        assertInvalid("V contains NaN") {
            _ = try FactorChain(batch: 1, m: 2, n: 2, ranks: [2], u: good.c, v: bad.c, middle: [])
        }
        assertInvalid("middle[1] contains NaN") {
            _ = try FactorChain(batch: 1, m: 2, n: 2, ranks: [2, 2, 1], u: good.c, v: good.c, middle: [good.c, bad.c])
        }
        XCTAssertNoThrow(try FactorChain(batch: 1, m: 2, n: 2, ranks: [2], u: bad.c, v: good.c, middle: [], checkFinite: false))
    }

    func testMiddleProduct() throws {
        let ch = Chain(m: 3, n: 3, ranks: [2, 4, 3, 2], seed: 5)
        let c = try ch.chain()
        let out = Buffer(zeros: 64), tmp = Buffer(zeros: 64)
        c.middleProduct(0, from: 0, to: 3, out.ptr, tmp.ptr)
        let ref = ch.M(0, 0) * ch.M(1, 0) * ch.M(2, 0)
        assertClose(Array(out.array[0..<4]), ref.a, rtol: 1e-5, atol: 1e-6)
        c.middleProduct(0, from: 1, to: 1, out.ptr, tmp.ptr)
        XCTAssertEqual(Array(out.array[0..<16]), DMat.identity(4).a.map(Float.init))
        c.middleProduct(0, from: 1, to: 3, out.ptr, tmp.ptr)
        assertClose(Array(out.array[0..<8]), (ch.M(1, 0) * ch.M(2, 0)).a, rtol: 1e-5, atol: 1e-6)
    }

    func testWithNormalizedItem() throws {
        let ch = Chain(batch: 2, m: 3, n: 4, ranks: [2, 3], seed: 8)
        let c = try ch.chain()
        try c.withNormalizedItem(1) { item, scale in
            XCTAssertEqual(item.batch, 1)
            let w = Buffer(zeros: 12)
            try Compose.compose(item, into: w.ptr)
            assertClose(w.array.map { Double($0) * scale }, ch.W(1).a, rtol: 1e-5, atol: 1e-6)
        }
    }
}
