import XCTest
@testable import FNLCore

final class ConvLowRankTests: XCTestCase {
    struct Factors {
        var u: [Float], v: [Float], middle: [[Float]]
        /// The dense kernel K = matrix_to_conv(U M V^T) in float32.
        func kernel(_ g: ConvGeometry, _ ranks: [Int]) -> [Float] {
            let rows = g.cOut * g.kh, cols = g.cIn * g.kw
            var left = u.map { Double($0) }, width = ranks[0]
            for (j, m) in middle.enumerated() {
                var next = [Double](repeating: 0, count: rows * ranks[j + 1])
                for i in 0..<rows { for q in 0..<ranks[j + 1] { for t in 0..<width {
                    next[i * ranks[j + 1] + q] += left[i * width + t] * Double(m[t * ranks[j + 1] + q])
                } } }
                left = next; width = ranks[j + 1]
            }
            var k = [Float](repeating: 0, count: g.kernelCount)
            for o in 0..<g.cOut { for a in 0..<g.kh { for c in 0..<g.cIn { for b in 0..<g.kw {
                var s = 0.0
                for t in 0..<width { s += left[(o * g.kh + a) * width + t] * Double(v[(c * g.kw + b) * width + t]) }
                k[((o * g.cIn + c) * g.kh + a) * g.kw + b] = Float(s)
            } } } }
            _ = cols
            return k
        }
    }

    func factors(_ g: ConvGeometry, _ ranks: [Int], _ rng: inout ConvRandom) -> Factors {
        Factors(u: rng.array(g.cOut * g.kh * ranks[0]), v: rng.array(g.cIn * g.kw * ranks[ranks.count - 1]),
                middle: (0..<(ranks.count - 1)).map { rng.array(ranks[$0] * ranks[$0 + 1]) })
    }

    /// Random factors, input, output gradient and bias for `g`, and the float64 direct
    /// convolution of the composed kernel plus bias.
    func randomCase(_ g: ConvGeometry, _ ranks: [Int], _ rng: inout ConvRandom)
        -> (f: Factors, x: [Float], gy: [Float], bias: [Float], yR: [Double]) {
        let f = factors(g, ranks, &rng)
        let x = rng.array(g.inputCount), gy = rng.array(g.outputCount), bias = rng.array(g.cOut)
        var yR = naiveConv(x, f.kernel(g, ranks), g)
        for i in 0..<yR.count { yR[i] += Double(bias[(i / g.outPlane) % g.cOut]) }
        return (f, x, gy, bias, yR)
    }

    func run(_ p: LowRankConv.Plan, _ f: Factors, _ x: [Float], _ bias: [Float]?, _ gy: [Float], saved: Bool = false)
        throws -> RunResult {
        let g = p.geometry
        var y = [Float](repeating: .nan, count: g.outputCount)
        var z = [Float](repeating: .nan, count: max(p.intermediateCount, 1))
        var dx = [Float](repeating: .nan, count: g.inputCount)
        var du = [Float](repeating: .nan, count: f.u.count), dv = [Float](repeating: .nan, count: f.v.count)
        var dm = f.middle.map { [Float](repeating: .nan, count: $0.count) }
        var db = [Float](repeating: .nan, count: g.cOut)
        try withPointers(f.middle) { mids in
            try withMutablePointers(&dm) { dms in
                try z.withUnsafeMutableBufferPointer { zp in
                    let zs = saved ? zp.baseAddress : nil
                    try LowRankConv.forward(p, x: x, u: f.u, v: f.v, middle: mids, bias: bias, y: &y, intermediate: zs)
                    try LowRankConv.backward(p, gradOutput: gy, x: x, u: f.u, v: f.v, middle: mids,
                                             intermediate: zs.map { UnsafePointer($0) }, dx: &dx, du: &du, dv: &dv,
                                             dMiddle: dms, dbias: bias == nil ? nil : db.withUnsafeMutableBufferPointer { $0.baseAddress })
                }
            }
        }
        return (y, dx, du, dv, dm, db)
    }

    /// The fused and compose paths equal the dense convolution of the composed kernel, and
    /// their factor gradients equal the chain rule applied to the dense kernel gradient.
    func testPathsMatchDenseOfComposedKernel() throws {
        var rng = ConvRandom(20)
        for g in convTestGeometries {
            let full = min(g.cOut * g.kh, g.cIn * g.kw)
            for ranks in [[1], [max(1, full / 2)], [full + 2], [3, 1, 2]] {
                let f = factors(g, ranks, &rng)
                let k = f.kernel(g, ranks)
                let x = rng.array(g.inputCount), gy = rng.array(g.outputCount), bias = rng.array(g.cOut)
                var yR = naiveConv(x, k, g)
                for i in 0..<yR.count { yR[i] += Double(bias[(i / g.outPlane) % g.cOut]) }
                let (dxR, dkR, dbR) = naiveConvBackward(gy, x, k, g)
                var results: [[Float]] = []
                for path in [LowRankConv.Path.fused, .compose] {
                    for (chunk, workers) in [(0, 1), (1, 1), (0, 2), (1, 3)] {
                        let p = try LowRankConv.Plan(g, ranks: ranks, path: path, chunkImages: chunk, workers: workers)
                        XCTAssertEqual(p.batchSplit.workers, min(workers, g.batch))
                        XCTAssertEqual(p.rank, ranks.min())
                        let r = try run(p, f, x, bias, gy, saved: path == .fused && chunk == 1)
                        assertClose(r.y, yR, 2e-5, "y \(path) \(g) \(ranks)")
                        assertClose(r.dx, dxR, 2e-5, "dx \(path) \(g) \(ranks)")
                        assertClose(r.db, dbR, 2e-5, "dbias")
                        results.append(r.du + r.dv + r.dm.flatMap { $0 })
                    }
                }
                // dU from the dense dK (depth 0): dW = toMatrix(dK), dU = dW V.
                if ranks.count == 1 {
                    let rows = g.cOut * g.kh, cols = g.cIn * g.kw, r = ranks[0]
                    var duR = [Double](repeating: 0, count: rows * r)
                    for o in 0..<g.cOut { for a in 0..<g.kh { for c in 0..<g.cIn { for b in 0..<g.kw {
                        let dw = dkR[((o * g.cIn + c) * g.kh + a) * g.kw + b]
                        for t in 0..<r { duR[(o * g.kh + a) * r + t] += dw * Double(f.v[(c * g.kw + b) * r + t]) }
                    } } } }
                    _ = cols
                    assertClose(Array(results[0][0..<(rows * r)]), duR, 5e-5, "dU \(g)")
                }
                for other in results.dropFirst() { assertClose(other, results[0], 5e-5, "factor grads across paths") }
            }
        }
    }

    /// The direct stages (`LowRankConv+Direct.swift`, forward and backward) equal the matrix-product stages and the direct convolution, over kernels 3x3, 1x5, 5x3
    /// at every padding of the range, heights and widths 1...9, batches 1 and 3, 1 to 3
    /// workers, chains with and without a middle matrix, with and without the saved
    /// intermediate.
    func testDirectStagesMatchProducts() throws {
        var rng = ConvRandom(29)
        var checked = 0
        for (kh, kw) in [(3, 3), (1, 5), (5, 3)] { for ph in 0..<kh { for pw in 0..<kw {
            for (height, width) in [(1, 1), (4, 9), (9, 2), (8, 8)] { for batch in [1, 3] {
                guard height + 2 * ph >= kh, width + 2 * pw >= kw else { continue }
                let g = try ConvGeometry(batch: batch, cIn: 3, height: height, width: width, cOut: 5, kh: kh, kw: kw,
                                         stride: (1, 1), padding: (ph, pw), dilation: (1, 1))
                for ranks in [[2], [9, 3]] {
                    let (f, x, gy, bias, yR) = randomCase(g, ranks, &rng)
                    let workers = 1 + checked % 3, saved = checked % 2 == 0
                    let direct = try LowRankConv.Plan(g, ranks: ranks, path: .fused, workers: workers)
                    let products = try LowRankConv.Plan(g, ranks: ranks, path: .fusedProducts, workers: workers)
                    XCTAssertTrue(direct.usesDirectStages)
                    XCTAssertFalse(products.usesDirectStages)
                    try assertPlansAgree(direct, products, f, x, bias, gy, saved: saved, reference: yR,
                                         "\(g) ranks \(ranks) workers \(workers) saved \(saved)")
                    checked += 1
                }
            } }
        } } }
        XCTAssertGreaterThan(checked, 150)
    }

    /// The direct path with its kh x 1 stage by Winograd (`LowRankConv+DirectWinograd.swift`,
    /// forced on at small ranks) equals the direct kh x 1 stage and the direct convolution:
    /// F(2, 3) and F(4, 3), heights 1...9 and 16 (partial last tiles), height paddings 0...2,
    /// widths 1, 5 and 13 (rows shorter than a vector, a full and a partial one) with kw = 1 and
    /// 3, batches 1 and 3 (3 in chunks of 2: kernel-gradient sums over a partial last chunk),
    /// 1 to 3 workers, chains with and without a middle matrix, with and without the saved
    /// intermediate.
    func testDirectWinogradMatchesDirect() throws {
        var rng = ConvRandom(31)
        var checked = 0
        for height in Array(1...9) + [16] { for ph in 0...2 { for width in [1, 5, 13] { for batch in [1, 3] {
            let (kw, pw) = (height + width) % 2 == 0 ? (3, 1) : (1, 0)
            guard height + 2 * ph >= 3 else { continue }
            let g = try ConvGeometry(batch: batch, cIn: 3, height: height, width: width, cOut: 4, kh: 3, kw: kw,
                                     stride: (1, 1), padding: (ph, pw), dilation: (1, 1))
            for ranks in [[2], [6, 3]] {
                let (f, x, gy, bias, yR) = randomCase(g, ranks, &rng)
                let tile = 2 + 2 * (checked % 2), workers = 1 + checked % 3, saved = checked % 4 < 2
                let chunk = batch == 3 ? 2 : 0
                let wino = try LowRankConv.Plan(g, ranks: ranks, path: .fused, chunkImages: chunk, workers: workers,
                                                winogradTile: tile, directWinograd: true)
                let direct = try LowRankConv.Plan(g, ranks: ranks, path: .fused, chunkImages: chunk, workers: workers,
                                                  directWinograd: false)
                XCTAssertTrue(wino.usesDirectWinograd)
                XCTAssertFalse(direct.usesDirectWinograd)
                try assertPlansAgree(wino, direct, f, x, bias, gy, saved: saved, reference: yR,
                                     "\(g) ranks \(ranks) workers \(workers) saved \(saved) F(\(tile), 3)")
                checked += 1
            }
        } } } }
        XCTAssertGreaterThan(checked, 300)
    }

    /// By default the direct path takes the Winograd kh x 1 stage for r and c_out >= 32 with
    /// kh = 3 and height stride and dilation 1, and not below or for other kernels.
    func testDirectWinogradDefault() throws {
        func plan(_ c: Int, _ r: Int, kh: Int = 3) throws -> LowRankConv.Plan {
            let g = try ConvGeometry(batch: 2, cIn: c, height: 8, width: 8, cOut: c, kh: kh, kw: 3,
                                     stride: (1, 1), padding: (kh / 2, 1), dilation: (1, 1))
            return try LowRankConv.Plan(g, ranks: [r], path: .fused)
        }
        XCTAssertTrue(try plan(64, 64).usesDirectWinograd)
        XCTAssertTrue(try plan(32, 32).usesDirectWinograd)
        XCTAssertFalse(try plan(64, 19).usesDirectWinograd)
        XCTAssertFalse(try plan(16, 32).usesDirectWinograd)
        XCTAssertFalse(try plan(64, 64, kh: 5).usesDirectWinograd)
    }

    /// Stage 2 by Winograd F(2, 3) and F(4, 3) equals the lowered stage 2 and the direct
    /// convolution, over heights 1...9 (partial last tiles), paddings 0...2, widths 1, 5 and 13
    /// (rows shorter than a vector of 8, one full vector and a partial one),
    /// batches 1 and 3, 1 and 2 workers, with and without the saved intermediate and bias.
    func testWinogradStage2MatchesLowered() throws {
        var rng = ConvRandom(21)
        var checked = 0
        for height in 1...9 { for padding in 0...2 { for width in [1, 5, 13] { for batch in [1, 3] {
            guard height + 2 * padding >= 3 else { continue }
            let g = try ConvGeometry(batch: batch, cIn: 3, height: height, width: width, cOut: 4, kh: 3, kw: 3,
                                     stride: (1, 1), padding: (padding, 1), dilation: (1, 1))
            for ranks in [[2], [3, 2]] {
                let (f, x, gy, bias, yR) = randomCase(g, ranks, &rng)
                for workers in [1, 2] { for tile in [2, 4] {
                    let wino = try LowRankConv.Plan(g, ranks: ranks, path: .fused, workers: workers, winograd: true,
                                                    winogradTile: tile)
                    let lowered = try LowRankConv.Plan(g, ranks: ranks, path: .fusedProducts, workers: workers,
                                                       winograd: false)
                    XCTAssertEqual(wino.winograd?.m, tile)
                    XCTAssertNil(lowered.winograd)
                    let saved = workers == 2
                    try assertPlansAgree(wino, lowered, f, x, bias, gy, saved: saved, reference: yR,
                                         "\(g) ranks \(ranks) workers \(workers) F(\(tile), 3)")
                    checked += 1
                } }
            }
        } } } }
        XCTAssertGreaterThan(checked, 250)
    }

    typealias RunResult = (y: [Float], dx: [Float], du: [Float], dv: [Float], dm: [[Float]], db: [Float])

    /// Plan `a` gives y = the float64 `reference` and the outputs of plan `b` on the same case.
    func assertPlansAgree(_ a: LowRankConv.Plan, _ b: LowRankConv.Plan, _ f: Factors, _ x: [Float], _ bias: [Float]?,
                          _ gy: [Float], saved: Bool, reference yR: [Double], _ what: String,
                          file: StaticString = #filePath, line: UInt = #line) throws {
        assertRunsAgree(try run(a, f, x, bias, gy, saved: saved), try run(b, f, x, bias, gy, saved: saved),
                        reference: yR, what, file: file, line: line)
    }

    /// Run `a` gives y = the float64 `reference` and the outputs of run `b`.
    func assertRunsAgree(_ a: RunResult, _ b: RunResult, reference yR: [Double], _ what: String,
                         file: StaticString = #filePath, line: UInt = #line) {
        assertClose(a.y, yR, 2e-5, "y " + what, file: file, line: line)
        assertClose(a.y, b.y.map { Double($0) }, 2e-5, "y vs the other run " + what, file: file, line: line)
        assertClose(a.dx, b.dx.map { Double($0) }, 2e-5, "dx " + what, file: file, line: line)
        assertClose(a.du, b.du.map { Double($0) }, 2e-5, "dU " + what, file: file, line: line)
        assertClose(a.dv, b.dv.map { Double($0) }, 2e-5, "dV " + what, file: file, line: line)
        assertClose(a.db, b.db.map { Double($0) }, 2e-5, "dbias " + what, file: file, line: line)
        for (m, n) in zip(a.dm, b.dm) { assertClose(m, n.map { Double($0) }, 2e-5, "dM " + what, file: file, line: line) }
    }

    func testAutoPathByOperationCount() throws {
        let g = try ConvGeometry(batch: 8, cIn: 16, height: 8, width: 8, cOut: 16, kh: 3, kw: 3, padding: (1, 1))
        XCTAssertEqual(try LowRankConv.Plan(g, ranks: [4]).path, .fused)
        XCTAssertEqual(try LowRankConv.Plan(g, ranks: [48]).path, .compose)
        XCTAssertEqual(try LowRankConv.Plan(g, ranks: [48, 4, 48]).path, .fused)   // split at the rank-4 middle
        XCTAssertEqual(try LowRankConv.Plan(g, ranks: [48, 4, 48]).split, 1)
        let p = try LowRankConv.Plan(g, ranks: [4])
        XCTAssertLessThan(p.fusedFlops, p.composeFlops)
        XCTAssertEqual(p.intermediateCount, 4 * 8 * 8 * 8)
        XCTAssertEqual(try LowRankConv.Plan(g, ranks: [48]).intermediateCount, 0)
        XCTAssertThrowsError(try LowRankConv.Plan(g, ranks: [0]))
        XCTAssertThrowsError(try LowRankConv.Plan(g, ranks: []))
    }

    func testFactorValidation() throws {
        let g = try ConvGeometry(batch: 1, cIn: 2, height: 4, width: 4, cOut: 2, kh: 3, kw: 3, padding: (1, 1))
        let p = try LowRankConv.Plan(g, ranks: [2])
        var u = [Float](repeating: 0.1, count: 12), v = u
        u[3] = .nan
        var y = [Float](repeating: 0, count: g.outputCount)
        let x = [Float](repeating: 1, count: g.inputCount)
        XCTAssertThrowsError(try LowRankConv.forward(p, x: x, u: u, v: v, middle: [], bias: nil, y: &y)) {
            XCTAssertTrue("\($0)".contains("U contains NaN or inf"), "\($0)")
        }
        u[3] = 0; v[0] = .infinity
        XCTAssertThrowsError(try LowRankConv.forward(p, x: x, u: u, v: v, middle: [], bias: nil, y: &y))
    }
}

func withPointers<R>(_ arrays: [[Float]], _ body: ([UnsafePointer<Float>]) throws -> R) rethrows -> R {
    var copies = arrays
    return try withMutablePointers(&copies) { try body($0.map { UnsafePointer($0) }) }
}

func withMutablePointers<R>(_ arrays: inout [[Float]], _ body: ([UnsafeMutablePointer<Float>]) throws -> R) rethrows -> R {
    var ptrs: [UnsafeMutablePointer<Float>] = []
    defer { ptrs.forEach { $0.deallocate() } }
    for a in arrays {
        let p = UnsafeMutablePointer<Float>.allocate(capacity: max(a.count, 1))
        p.initialize(from: a, count: a.count)
        ptrs.append(p)
    }
    let r = try body(ptrs)
    for i in 0..<arrays.count { arrays[i] = Array(UnsafeBufferPointer(start: ptrs[i], count: arrays[i].count)) }
    return r
}
