import XCTest
@testable import FNLCore

final class ConvGeometryTests: XCTestCase {
    func testOutputSize() throws {
        let a = try ConvAxis(size: 7, kernel: 3, stride: 2, padding: 1, dilation: 1, name: "height")
        XCTAssertEqual(a.output, 4)
    }
}
