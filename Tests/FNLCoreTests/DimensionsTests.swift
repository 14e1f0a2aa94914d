import XCTest
@testable import FNLCore

final class DimensionsTests: XCTestCase {
    func testProduct() throws {
        XCTAssertEqual(try Dimensions.product([], "x"), 1)
        XCTAssertEqual(try Dimensions.product([3, 4, 5], "x"), 60)
        XCTAssertEqual(try Dimensions.product([3, 0, 5], "x"), 0)
        assertInvalid("x has a negative dimension -2") { _ = try Dimensions.product([3, -2], "x") }
        assertInvalid("x has absurd size") { _ = try Dimensions.product([1 << 40, 1 << 40], "x") }
        assertInvalid("absurd size") { _ = try Dimensions.product([Int.max, 2], "K") }
    }

    func testBlas() throws {
        XCTAssertEqual(try Dimensions.blas(0, "m"), 0)
        XCTAssertEqual(try Dimensions.blas(Int(Int32.max), "m"), Int32.max)
        assertInvalid("m=2147483648 exceeds the BLAS limit") { _ = try Dimensions.blas(Int(Int32.max) + 1, "m") }
        assertInvalid("exceeds the BLAS limit") { _ = try Dimensions.blas(-1, "m") }
    }

    func testCheckMatrix() throws {
        XCTAssertNoThrow(try Dimensions.checkMatrix(1, 1, "A"))
        XCTAssertNoThrow(try Dimensions.checkMatrix(46340, 46340, "A"))
        assertInvalid("A must be non-empty, got shape (0, 3)") { try Dimensions.checkMatrix(0, 3, "A") }
        assertInvalid("A columns") { try Dimensions.checkMatrix(1, 1 << 31, "A") }
        assertInvalid("A element count") { try Dimensions.checkMatrix(1 << 16, 1 << 16, "A") }
        assertInvalid("A rows") { try Dimensions.checkMatrix(Int.max, Int.max, "A") }
    }
}
