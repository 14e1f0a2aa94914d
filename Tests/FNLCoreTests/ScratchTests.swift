import XCTest
@testable import FNLCore

final class ScratchTests: XCTestCase {
    func testAllocatesAndReturns() throws {
        let r = try withScratch(10, "t") { p -> Float in
            for i in 0..<10 { p[i] = Float(i) }
            return (0..<10).reduce(0) { $0 + p[$1] }
        }
        XCTAssertEqual(r, 45)
        XCTAssertEqual(try withScratch(0, "t") { _ in 1 }, 1)
    }

    func testListIsContiguousAndDisjoint() throws {
        try withScratch([3, 0, 5], "t") { ps in
            XCTAssertEqual(ps.count, 3)
            XCTAssertEqual(ps[1] - ps[0], 3)
            XCTAssertEqual(ps[2] - ps[0], 3)
            for i in 0..<5 { ps[2][i] = 1 }
        }
    }

    func testImpossibleSizesThrowOutOfMemory() {
        for count in [Int.max, Int.max / 4 + 1, 1 << 60] {
            XCTAssertThrowsError(try withScratch(count, "the test") { _ in XCTFail("body ran") }) { e in
                guard case .outOfMemory(let m)? = e as? FNLError else { return XCTFail("\(e)") }
                XCTAssertTrue(m.contains("the test"))
            }
        }
        XCTAssertThrowsError(try withScratch([Int.max, Int.max], "sum") { _ in }) { e in
            guard case .outOfMemory? = e as? FNLError else { return XCTFail("\(e)") }
        }
    }

    func testErrorsPropagateFromTheBody() {
        XCTAssertThrowsError(try withScratch(4, "t") { _ in throw FNLError.invalid("inner") }) {
            XCTAssertEqual($0 as? FNLError, .invalid("inner"))
        }
    }
}
