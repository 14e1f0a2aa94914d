import XCTest
@testable import FNLCore

final class ConvGeometryTests: XCTestCase {
    func testOutputSizes() throws {
        // (size, kernel, stride, padding, dilation) -> output, as torch.nn.Conv2d.
        let cases: [(Int, Int, Int, Int, Int, Int)] = [
            (7, 3, 2, 1, 1, 4), (8, 3, 1, 1, 1, 8), (5, 5, 1, 2, 1, 5), (9, 3, 1, 2, 2, 9),
            (11, 3, 3, 0, 1, 3), (4, 1, 2, 0, 1, 2), (1, 1, 1, 0, 1, 1), (6, 5, 3, 2, 1, 2),
        ]
        for (n, k, s, p, d, out) in cases {
            let a = try ConvAxis(size: n, kernel: k, stride: s, padding: p, dilation: d, name: "height")
            XCTAssertEqual(a.output, out, "\(a)")
        }
    }

    /// valid(t) is exactly the set of outputs whose input index lies inside the image.
    func testValidRangesMatchBruteForce() throws {
        for n in 1...9 {
            for k in 1...4 {
                for s in 1...3 {
                    for p in 0...3 {
                        for d in 1...2 {
                            guard let a = try? ConvAxis(size: n, kernel: k, stride: s, padding: p, dilation: d, name: "w")
                            else { continue }
                            for t in 0..<k {
                                let expected = (0..<a.output).filter {
                                    let i = $0 * s - p + t * d
                                    return i >= 0 && i < n
                                }
                                XCTAssertEqual(Array(a.valid(t)), expected, "\(a) tap \(t)")
                            }
                        }
                    }
                }
            }
        }
    }

    func testInvalidOptions() {
        XCTAssertThrowsError(try ConvAxis(size: 4, kernel: 3, stride: 0, padding: 0, dilation: 1, name: "height")) {
            XCTAssertTrue("\($0)".contains("the stride along the height must be in 1.."), "\($0)")
        }
        XCTAssertThrowsError(try ConvAxis(size: 4, kernel: 3, stride: 1, padding: -1, dilation: 1, name: "width"))
        XCTAssertThrowsError(try ConvAxis(size: 4, kernel: 3, stride: 1, padding: 0, dilation: 0, name: "width"))
        XCTAssertThrowsError(try ConvAxis(size: 4, kernel: 3, stride: 1, padding: 0, dilation: 2, name: "width")) {
            XCTAssertTrue("\($0)".contains("the dilated kernel width 5"), "\($0)")
        }
        XCTAssertThrowsError(try ConvGeometry(batch: 1, cIn: 1, height: 1, width: 1, cOut: 1, kh: 1, kw: 1,
                                              padding: (1 << 30, 1 << 30))) {
            XCTAssertTrue("\($0)".contains("exceeds the BLAS limit"), "\($0)")
        }
        XCTAssertThrowsError(try ConvGeometry(batch: 0, cIn: 1, height: 1, width: 1, cOut: 1, kh: 1, kw: 1))
    }

    func testAbiGeometry() throws {
        let raw: [Int64] = [2, 3, 9, 8, 4, 3, 5, 2, 1, 1, 2, 1, 2]
        let g = try raw.withUnsafeBufferPointer { try ConvGeometry(abi: $0.baseAddress!) }
        XCTAssertEqual(g.batch, 2); XCTAssertEqual(g.cIn, 3); XCTAssertEqual(g.cOut, 4)
        XCTAssertEqual(g.h.output, 5); XCTAssertEqual(g.w.output, 4)
        XCTAssertEqual(g.kernelCount, 4 * 3 * 3 * 5)
    }

    func testChunksAndLeadingDimensions() {
        XCTAssertEqual(ConvWorkspace.chunk(batch: 10, perImage: 1, forced: 4), 4)   // 3 chunks: 4, 4, 2 -> balanced 4
        XCTAssertEqual(ConvWorkspace.chunk(batch: 10, perImage: 1, forced: 6), 5)   // 2 chunks of 5
        XCTAssertEqual(ConvWorkspace.chunk(batch: 3, perImage: Int.max), 1)
        for cols in [1, 15, 16, 64, 1024, 8192, 8193] {
            let ld = ConvWorkspace.leadingDimension(cols)
            XCTAssertGreaterThanOrEqual(ld, cols)
            XCTAssertEqual(ld % 16, 0)
            XCTAssertEqual((ld / 16) % 2, 1, "ld \(ld) should hold an odd number of cache lines")
        }
        XCTAssertEqual(ConvWorkspace.saturatingSumOfProducts([[Int.max, 2], [1]]), Int.max)
        XCTAssertEqual(ConvWorkspace.saturatingSumOfProducts([[3, 4], [5]]), 17)
    }
}
