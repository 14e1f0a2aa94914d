import XCTest
@testable import FNLCore

final class ConvLayoutTests: XCTestCase {
    func testIndexMapBothWays() throws {
        for (co, ci, kh, kw) in [(1, 1, 1, 1), (2, 3, 3, 3), (3, 2, 1, 5), (4, 1, 5, 1), (5, 4, 3, 2)] {
            let s = try ConvLayout.Shape(cOut: co, cIn: ci, kh: kh, kw: kw)
            XCTAssertEqual(s.rows, co * kh)
            XCTAssertEqual(s.cols, ci * kw)
            let count = co * ci * kh * kw
            let k = Buffer((0..<count).map(Float.init))
            let w = Buffer(zeros: count)
            ConvLayout.toMatrix(k.c, s, w.ptr)
            for o in 0..<co { for i in 0..<ci { for h in 0..<kh { for x in 0..<kw {
                XCTAssertEqual(k.array[((o * ci + i) * kh + h) * kw + x], w.array[(o * kh + h) * s.cols + i * kw + x])
            } } } }
            let back = Buffer(zeros: count)
            ConvLayout.toKernel(w.c, s, back.ptr)
            XCTAssertEqual(back.array, k.array)
            if ci > 1 && kh > 1 { XCTAssertNotEqual(w.array, k.array, "a bare reshape") }
        }
    }

    func testShapeValidation() {
        assertInvalid("c_out must be >= 1") { _ = try ConvLayout.Shape(cOut: 0, cIn: 1, kh: 1, kw: 1) }
        assertInvalid("kw must be >= 1, got -2") { _ = try ConvLayout.Shape(cOut: 1, cIn: 1, kh: 1, kw: -2) }
        assertInvalid("absurd size") { _ = try ConvLayout.Shape(cOut: 1 << 40, cIn: 1 << 30, kh: 1, kw: 1) }
    }
}
