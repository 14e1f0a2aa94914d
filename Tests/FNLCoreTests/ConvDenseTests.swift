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
                    var y = [Float](repeating: .nan, count: g.outputCount)
                    try DenseConv.forward(p, x: x, kernel: k, bias: bias, y: &y)
                    assertClose(y, yb, 1e-5, "y \(g) chunk \(chunk)")
                    var dx = [Float](repeating: .nan, count: g.inputCount)
                    var dk = [Float](repeating: .nan, count: g.kernelCount)
                    var db = [Float](repeating: .nan, count: g.cOut)
                    try DenseConv.backward(p, gradOutput: gy, x: x, kernel: k, dx: &dx, dKernel: &dk, dbias: &db)
                    assertClose(dx, dxR, 1e-5, "dx \(g)")
                    assertClose(dk, dkR, 1e-5, "dK \(g)")
                    assertClose(db, dbR, 1e-5, "dbias \(g)")
                }
            }
        }
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
