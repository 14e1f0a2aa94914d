import XCTest
@testable import FNLCore

final class ConvDenseTests: XCTestCase {
    /// Forward and backward against the float64 direct convolution, for one chunk, chunks of
    /// one image and uneven chunks; 1, 2 and 3 threads (the batch split over 1..3 workers).
    func testAgainstDirectConvolution() throws {
        var rng = ConvRandom(10)
        defer { try? Threads.set(Threads.available) }
        for g in convTestGeometries {
            let x = rng.array(g.inputCount), k = rng.array(g.kernelCount), bias = rng.array(g.cOut)
            let gy = rng.array(g.outputCount)
            var yb = naiveConv(x, k, g)
            for i in 0..<yb.count { yb[i] += Double(bias[(i / g.outPlane) % g.cOut]) }
            let (dxR, dkR, dbR) = naiveConvBackward(gy, x, k, g)
            for threads in [1, 2, 3] {
                try Threads.set(threads)
                for chunk in [0, 1, 2, 3] {
                    let p = try DenseConv.Plan(g, chunkImages: chunk)
                    XCTAssertEqual(p.split.workers, min(threads, g.batch))
                    try check(p, x, k, bias, gy, (yb, dxR, dkR, dbR), tolerance: 1e-5, "\(g) chunk \(chunk)")
                }
            }
        }
    }

    /// The Winograd height mode (kh = 3, height stride and dilation 1), F(2, 3) and F(4, 3),
    /// against the direct convolution and the full lowering: heights 1...9 (partial last
    /// tiles of both sizes), height paddings 0...2, widths with kw = 1 and 3, width stride 1
    /// and 2, width padding and dilation, batches 1 and 3, 1 and 2 workers; output rows of 1 to
    /// 5 floats, and of 8 to 19 on odd heights (full vectors of 8 and a partial one).
    func testWinogradModeMatchesDirect() throws {
        var rng = ConvRandom(12)
        var checked = 0
        for height in 1...9 { for ph in 0...2 { for (kw, sw, pw, dw) in [(1, 1, 0, 1), (3, 1, 1, 1), (3, 2, 0, 1), (1, 2, 1, 1), (3, 1, 2, 2)] {
            let width = 3 + height % 3 + (height % 2 == 1 ? 14 : 0), batch = 1 + 2 * (height % 2)
            guard height + 2 * ph >= 3, width + 2 * pw >= dw * (kw - 1) + 1 else { continue }
            let g = try ConvGeometry(batch: batch, cIn: 3, height: height, width: width, cOut: 2, kh: 3, kw: kw,
                                     stride: (1, sw), padding: (ph, pw), dilation: (1, dw))
            let x = rng.array(g.inputCount), k = rng.array(g.kernelCount), bias = rng.array(g.cOut)
            let gy = rng.array(g.outputCount)
            var yR = naiveConv(x, k, g)
            for i in 0..<yR.count { yR[i] += Double(bias[(i / g.outPlane) % g.cOut]) }
            let (dxR, dkR, dbR) = naiveConvBackward(gy, x, k, g)
            for workers in [1, 2] { for tile in [2, 4] {
                let p = try DenseConv.Plan(g, workers: workers, winograd: true, winogradTile: tile)
                XCTAssertEqual(p.winograd?.m, tile)
                try check(p, x, k, bias, gy, (yR, dxR, dkR, dbR), tolerance: 2e-5, "\(g) F(\(tile), 3)")
                checked += 1
            } }
            XCTAssertNil(try DenseConv.Plan(g, winograd: false).winograd)
        } } }
        XCTAssertGreaterThan(checked, 200)
    }

    /// Where the transformed matrices would exceed the BLAS limits (twice the columns of the
    /// lowered form per row of the products), the plan falls back to the full lowering.
    func testWinogradFallsBackWhenTooLarge() throws {
        // Lowered: 8 x 3*2^26 outputs (1.6e9 elements, fits); transformed: 4*8 x 2*2^26 (4.3e9, does not).
        let g = try ConvGeometry(batch: 1, cIn: 1, height: 3, width: 1 << 26, cOut: 8, kh: 3, kw: 1,
                                 stride: (1, 1), padding: (1, 0), dilation: (1, 1))
        let p = try DenseConv.Plan(g, winograd: true)
        XCTAssertNil(p.winograd)
        XCTAssertNotNil(try DenseConv.Plan(try ConvGeometry(batch: 1, cIn: 1, height: 3, width: 64, cOut: 1, kh: 3, kw: 1,
                                                            stride: (1, 1), padding: (1, 0), dilation: (1, 1)),
                                           winograd: true).winograd)
        let lr = try LowRankConv.Plan(g, ranks: [1], path: .fused, winograd: true)
        XCTAssertNil(lr.winograd)
    }

    /// Runs the plan forward and backward and compares y, dx, dK, dbias with the references.
    func check(_ p: DenseConv.Plan, _ x: [Float], _ k: [Float], _ bias: [Float], _ gy: [Float],
               _ want: (y: [Double], dx: [Double], dk: [Double], db: [Double]), tolerance: Double,
               _ what: String) throws {
        let g = p.geometry
        var y = [Float](repeating: .nan, count: g.outputCount)
        try DenseConv.forward(p, x: x, kernel: k, bias: bias, y: &y)
        var dx = [Float](repeating: .nan, count: g.inputCount)
        var dk = [Float](repeating: .nan, count: g.kernelCount)
        var db = [Float](repeating: .nan, count: g.cOut)
        try DenseConv.backward(p, gradOutput: gy, x: x, kernel: k, dx: &dx, dKernel: &dk, dbias: &db)
        assertClose(y, want.y, tolerance, "y " + what)
        assertClose(dx, want.dx, tolerance, "dx " + what)
        assertClose(dk, want.dk, tolerance, "dK " + what)
        assertClose(db, want.db, tolerance, "dbias " + what)
    }

    func testCallerWorkspace() throws {
        var rng = ConvRandom(11)
        let g = convTestGeometries[0]
        let p = try DenseConv.Plan(g, chunkImages: 1)
        let x = rng.array(g.inputCount), k = rng.array(g.kernelCount)
        var ws = [Float](repeating: 0, count: p.forwardWorkspace)
        var y1 = [Float](repeating: 0, count: g.outputCount), y2 = y1
        try DenseConv.forward(p, x: x, kernel: k, bias: nil, y: &y1)
        try ws.withUnsafeMutableBufferPointer { w in
            try DenseConv.forward(p, x: x, kernel: k, bias: nil, y: &y2, workspace: w.baseAddress!, workspaceCount: w.count)
            XCTAssertThrowsError(try DenseConv.forward(p, x: x, kernel: k, bias: nil, y: &y2, workspace: w.baseAddress!,
                                                       workspaceCount: w.count - 1)) {
                XCTAssertTrue("\($0)".contains("the workspace holds"), "\($0)")
            }
        }
        XCTAssertEqual(y1, y2)
    }
}
