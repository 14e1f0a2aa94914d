import XCTest
import CFNLEngine
@testable import FNLEngine

final class ConvExportsTests: XCTestCase {
    func testPlaceholder() {}
}
