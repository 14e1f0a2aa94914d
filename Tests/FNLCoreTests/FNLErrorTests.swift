import XCTest
@testable import FNLCore

final class FNLErrorTests: XCTestCase {
    func testMessagesAndRequire() {
        XCTAssertEqual(FNLError.invalid("a").message, "a")
        XCTAssertEqual(FNLError.outOfMemory("b").description, "b")
        XCTAssertEqual(FNLError.numerical("c").message, "c")
        XCTAssertNoThrow(try require(true, "never"))
        XCTAssertThrowsError(try require(false, "x must be > 0")) { XCTAssertEqual($0 as? FNLError, .invalid("x must be > 0")) }
        var evaluated = false
        try? require(true, { evaluated = true; return "lazy" }())
        XCTAssertFalse(evaluated, "the message is built only on failure")
    }
}
