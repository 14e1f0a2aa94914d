import XCTest
@testable import FNLCore

/// Channel planes with gaps: plane c at `lead + c * stride` of a NaN-filled buffer (NaN before,
/// between and after the planes), so that a read outside the planes poisons a result and a
/// write outside them is visible.
private final class Planes {
    let count: Int, plane: Int, stride: Int, lead = 8
    var storage: [Float]
    init(count: Int, plane: Int, gap: Int) {
        self.count = count; self.plane = plane; stride = plane + gap
        storage = [Float](repeating: .nan, count: 8 + count * (plane + gap) + 8)
    }
    func fill(_ rng: inout ConvRandom) {
        for c in 0..<count { for i in 0..<plane { storage[lead + c * stride + i] = rng.next() } }
    }
    subscript(c: Int, i: Int) -> Float {
        get { storage[lead + c * stride + i] }
        set { storage[lead + c * stride + i] = newValue }
    }
    /// Every float outside the planes is still NaN.
    var gapsUntouched: Bool {
        storage.indices.allSatisfy { i in
            let k = i - lead
            let inside = k >= 0 && k < count * stride && k % stride < plane
            return inside || storage[i].isNaN
        }
    }
}

/// in[c, i + (t - padding) * step] of the definition, zero outside the plane.
private func tapValue(_ conv: AxisConv, _ x: Planes, _ c: Int, _ i: Int, _ j: Int, _ t: Int) -> Double {
    var r = i, s = j
    if conv.axis == .height { r += t - conv.padding } else { s += t - conv.padding }
    if r < 0 || r >= conv.rows || s < 0 || s >= conv.cols { return 0 }
    return Double(x[c, r * conv.cols + s])
}

/// out[o, i] = bias[o] + sum_{c, t} w[o, c, t] in[c, i + (t - padding) step] in float64;
/// w is [outChannels][inChannels][kernel].
private func referenceForward(_ conv: AxisConv, _ w: [Float], _ bias: [Float]?, _ x: Planes, outChannels: Int) -> [Double] {
    let k = conv.kernel, cin = x.count
    var y = [Double](repeating: 0, count: outChannels * conv.outRows * conv.outCols)
    for o in 0..<outChannels { for i in 0..<conv.outRows { for j in 0..<conv.outCols {
        var s = Double(bias?[o] ?? 0)
        for c in 0..<cin { for t in 0..<k { s += Double(w[(o * cin + c) * k + t]) * tapValue(conv, x, c, i, j, t) } }
        y[(o * conv.outRows + i) * conv.outCols + j] = s
    } } }
    return y
}

/// dW[o, c, t] = sum_i g[o, i] in[c, i + (t - padding) step] in float64, as [o][c][t].
private func referenceWeightGradient(_ conv: AxisConv, _ g: Planes, _ x: Planes) -> [Double] {
    let k = conv.kernel, cin = x.count, cout = g.count
    var dw = [Double](repeating: 0, count: cout * cin * k)
    for o in 0..<cout { for c in 0..<cin { for t in 0..<k {
        var s = 0.0
        for i in 0..<conv.outRows { for j in 0..<conv.outCols {
            s += Double(g[o, i * conv.outCols + j]) * tapValue(conv, x, c, i, j, t)
        } }
        dw[(o * cin + c) * k + t] = s
    } } }
    return dw
}

/// max |a - b| <= tol * max(1, max |b|), NaN failing.
private func assertNear(_ a: [Double], _ b: [Double], _ tol: Double, _ what: String,
                        file: StaticString = #filePath, line: UInt = #line) {
    XCTAssertEqual(a.count, b.count, what, file: file, line: line)
    let scale = max(1, b.map { abs($0) }.max() ?? 0)
    let err = zip(a, b).map { abs($0 - $1) }.max() ?? 0
    XCTAssertTrue(err <= tol * scale, "\(what): error \(err) > \(tol) x \(scale)", file: file, line: line)
}

/// Runs `forward` with NaN sentinels around the planes and a NaN-filled scratch; returns the
/// output planes (and checks that nothing outside them was written).
private func runForward(_ conv: AxisConv, _ w: [Float], _ bias: [Float]?, _ x: Planes, outChannels: Int,
                        gap: Int, file: StaticString = #filePath, line: UInt = #line) -> Planes {
    let cin = x.count, k = conv.kernel
    var packed = [Float](repeating: .nan, count: conv.packedCount(outChannels: outChannels, inChannels: cin))
    w.withUnsafeBufferPointer { wp in
        packed.withUnsafeMutableBufferPointer {
            conv.pack(wp.baseAddress!, outChannels: outChannels, inChannels: cin,
                      outStride: cin * k, inStride: k, tapStride: 1, into: $0.baseAddress!)
        }
    }
    let y = Planes(count: outChannels, plane: conv.outRows * conv.outCols, gap: gap)
    var scratch = [Float](repeating: .nan, count: conv.scratchCount(inChannels: cin, outChannels: outChannels))
    let biasArray = bias ?? []
    x.storage.withUnsafeBufferPointer { xp in
        y.storage.withUnsafeMutableBufferPointer { yp in
            scratch.withUnsafeMutableBufferPointer { sp in
                biasArray.withUnsafeBufferPointer { bp in
                    conv.forward(packed, outChannels: outChannels, inChannels: cin,
                                 input: xp.baseAddress! + x.lead, inStride: x.stride,
                                 output: yp.baseAddress! + y.lead, outStride: y.stride,
                                 bias: bias == nil ? nil : bp.baseAddress!, scratch: sp.baseAddress!)
                }
            }
        }
    }
    XCTAssertTrue(y.gapsUntouched, "forward wrote outside the output planes", file: file, line: line)
    return y
}

private func planeValues(_ p: Planes) -> [Double] {
    (0..<p.count).flatMap { c in (0..<p.plane).map { Double(p[c, $0]) } }
}

final class AxisConvTests: XCTestCase {
    /// Planes covering 1x1, single rows and columns, odd sizes, W = 8 and multiples of 8.
    let shapes: [(Int, Int)] = [(1, 1), (1, 7), (7, 1), (5, 9), (8, 8), (3, 8), (13, 17), (16, 16), (2, 11)]
    let channelPairs: [(Int, Int)] = [(1, 1), (3, 5), (5, 3), (8, 19), (19, 8), (1, 5), (5, 1), (3, 3)]

    /// Every geometry of the test: both axes, kernels 1, 3 and 5, every padding, every shape
    /// whose output is non-empty.
    func geometries() -> [AxisConv] {
        var list: [AxisConv] = []
        for axis in [AxisConv.Axis.height, .width] { for k in [1, 3, 5] { for p in 0..<k { for (h, w) in shapes {
            if let conv = try? AxisConv(axis: axis, rows: h, cols: w, kernel: k, padding: p) { list.append(conv) }
        } } } }
        return list
    }

    func testInitValidates() {
        assertInvalid("kernel length") { _ = try AxisConv(axis: .height, rows: 4, cols: 4, kernel: 0, padding: 0) }
        assertInvalid("kernel length") { _ = try AxisConv(axis: .width, rows: 4, cols: 4, kernel: 17, padding: 0) }
        assertInvalid("padding") { _ = try AxisConv(axis: .width, rows: 4, cols: 4, kernel: 3, padding: 3) }
        assertInvalid("padding") { _ = try AxisConv(axis: .width, rows: 4, cols: 4, kernel: 3, padding: -1) }
        assertInvalid("at least one row") { _ = try AxisConv(axis: .height, rows: 0, cols: 4, kernel: 1, padding: 0) }
        assertInvalid("output is empty") { _ = try AxisConv(axis: .height, rows: 2, cols: 9, kernel: 5, padding: 1) }
        assertInvalid("output is empty") { _ = try AxisConv(axis: .width, rows: 9, cols: 1, kernel: 3, padding: 0) }
        XCTAssertNoThrow(try AxisConv(axis: .width, rows: 1, cols: 1, kernel: 5, padding: 2))
        let c = try! AxisConv(axis: .height, rows: 7, cols: 5, kernel: 5, padding: 1)
        XCTAssertEqual(c.outRows, 5); XCTAssertEqual(c.outCols, 5)
        let d = try! AxisConv(axis: .width, rows: 7, cols: 5, kernel: 3, padding: 2)
        XCTAssertEqual(d.outRows, 7); XCTAssertEqual(d.outCols, 7)
    }

    /// forward equals its float64 definition, with and without bias, for non-adjacent planes.
    func testForwardMatchesReference() {
        var rng = ConvRandom(11)
        for (n, conv) in geometries().enumerated() {
            let (cin, cout) = channelPairs[n % channelPairs.count]
            let x = Planes(count: cin, plane: conv.rows * conv.cols, gap: n % 3 * 5)
            x.fill(&rng)
            let w = rng.array(cout * cin * conv.kernel)
            let bias: [Float]? = n % 2 == 0 ? rng.array(cout) : nil
            let y = runForward(conv, w, bias, x, outChannels: cout, gap: n % 4 * 3)
            assertNear(planeValues(y), referenceForward(conv, w, bias, x, outChannels: cout), 1e-5,
                       "\(conv.axis) \(conv.rows)x\(conv.cols) k=\(conv.kernel) p=\(conv.padding) \(cin)->\(cout)")
        }
    }

    /// Every channel count of the blocks' remainders (1, 3, 5, 8, 19 in and out) at k = 3.
    func testForwardChannelCounts() {
        var rng = ConvRandom(12)
        for axis in [AxisConv.Axis.height, .width] { for (h, w) in [(8, 8), (5, 9)] {
            let conv = try! AxisConv(axis: axis, rows: h, cols: w, kernel: 3, padding: 1)
            for cin in [1, 3, 5, 8, 19] { for cout in [1, 3, 5, 8, 19] {
                let x = Planes(count: cin, plane: h * w, gap: 3)
                x.fill(&rng)
                let wt = rng.array(cout * cin * 3), bias = rng.array(cout)
                let y = runForward(conv, wt, bias, x, outChannels: cout, gap: 1)
                assertNear(planeValues(y), referenceForward(conv, wt, bias, x, outChannels: cout), 1e-5,
                           "\(axis) \(h)x\(w) \(cin)->\(cout)")
            } }
        } }
    }

    /// weightGradient equals its float64 definition; accumulate adds to what dW held; dW in
    /// three layouts ([o][c][t] and [o][t][c] with gaps, and [c][t][o]). Both paths: the one chosen by the
    /// plane size, then each forced (over outputs, over output-channel vectors).
    func testWeightGradientMatchesReference() {
        var rng = ConvRandom(13)
        for path in [nil, false, true] as [Bool?] {
            for (n, conv) in geometries().enumerated() {
                let (cin, cout) = channelPairs[(n + 3) % channelPairs.count]
                checkWeightGradient(conv, inChannels: cin, outChannels: cout, variant: n, transposed: path, &rng)
            }
        }
    }

    /// The gradient over output-channel vectors at the channel counts of its blocks (1, 3, 8,
    /// 9, 19, 64 output channels: one to three vectors per block and their remainders; pairs
    /// past a multiple of 4, 8 and 24) on small and odd planes, both axes, kernels 3 and 5.
    func testWeightGradientChannelVectors() {
        var rng = ConvRandom(16)
        var n = 0
        let planes = [(8, 8), (5, 9), (16, 16), (3, 8), (7, 1), (1, 13)]
        for axis in [AxisConv.Axis.height, .width] { for (h, w) in planes { for k in [3, 5] {
            guard let conv = try? AxisConv(axis: axis, rows: h, cols: w, kernel: k, padding: k / 2) else { continue }
            for (cin, cout) in [(1, 1), (3, 9), (9, 3), (8, 8), (19, 64), (64, 19), (1, 64), (9, 17)] {
                if h * w >= 256 && cin * cout > 64 * 8 { continue }   // the float64 reference is slow
                checkWeightGradient(conv, inChannels: cin, outChannels: cout, variant: n, transposed: true, &rng)
                n += 1
            }
        } } }
        // The choice by plane size: 8x8 and 16x16 outputs go over output-channel vectors.
        XCTAssertTrue(try! AxisConv(axis: .width, rows: 8, cols: 8, kernel: 3, padding: 1).gradientTransposed(outChannels: 19))
        XCTAssertTrue(try! AxisConv(axis: .height, rows: 16, cols: 16, kernel: 3, padding: 1).gradientTransposed(outChannels: 64))
    }

    /// weightGradient over several images in one call (the sums of every image kept in the
    /// scratch and written once on small planes, one image at a time on large ones) equals the
    /// sum of the per-image float64 references, added to dW or stored over it.
    func testWeightGradientOverImages() {
        var rng = ConvRandom(17)
        var n = 0
        for axis in [AxisConv.Axis.height, .width] { for (h, w) in [(8, 8), (5, 9), (20, 20)] {
            let conv = try! AxisConv(axis: axis, rows: h, cols: w, kernel: 3, padding: 1)
            for (cin, cout) in [(3, 9), (19, 64), (8, 8)] { for images in [1, 2, 5] {
                let x = Planes(count: images * cin, plane: h * w, gap: 3)
                let g = Planes(count: images * cout, plane: conv.outRows * conv.outCols, gap: 5)
                x.fill(&rng); g.fill(&rng)
                var want = [Double](repeating: 0, count: cout * cin * 3)
                for i in 0..<images {
                    let xi = Planes(count: cin, plane: h * w, gap: 0), gi = Planes(count: cout, plane: g.plane, gap: 0)
                    for c in 0..<cin { for p in 0..<(h * w) { xi[c, p] = x[i * cin + c, p] } }
                    for o in 0..<cout { for p in 0..<g.plane { gi[o, p] = g[i * cout + o, p] } }
                    for (e, v) in referenceWeightGradient(conv, gi, xi).enumerated() { want[e] += v }
                }
                let accumulate = n % 2 == 0
                let prior = rng.array(want.count)
                var dw = accumulate ? prior : [Float](repeating: .nan, count: want.count)
                var scratch = [Float](repeating: .nan, count: conv.scratchCount(inChannels: cin, outChannels: cout))
                g.storage.withUnsafeBufferPointer { gp in x.storage.withUnsafeBufferPointer { xp in
                    dw.withUnsafeMutableBufferPointer { dp in scratch.withUnsafeMutableBufferPointer { sp in
                        conv.weightGradient(gradOutput: gp.baseAddress! + g.lead, outChannels: cout, outStride: g.stride,
                                            input: xp.baseAddress! + x.lead, inChannels: cin, inStride: x.stride,
                                            into: dp.baseAddress!, dOutStride: cin * 3, dInStride: 3, dTapStride: 1,
                                            accumulate: accumulate, images: images, gradImageStride: cout * g.stride,
                                            inputImageStride: cin * x.stride, scratch: sp.baseAddress!)
                    } }
                } }
                if accumulate { for e in want.indices { want[e] += Double(prior[e]) } }
                assertNear(dw.map { Double($0) }, want, 1e-5, "\(axis) \(h)x\(w) \(cin)->\(cout) images \(images) acc \(accumulate)")
                n += 1
            } }
        } }
    }

    /// One weightGradient call (the public one when `transposed` is nil) against the float64
    /// reference; `variant` picks the gaps, the dW layout and accumulate.
    private func checkWeightGradient(_ conv: AxisConv, inChannels cin: Int, outChannels cout: Int, variant n: Int,
                                     transposed: Bool?, _ rng: inout ConvRandom,
                                     file: StaticString = #filePath, line: UInt = #line) {
        let k = conv.kernel
        let x = Planes(count: cin, plane: conv.rows * conv.cols, gap: n % 3 * 4)
        let g = Planes(count: cout, plane: conv.outRows * conv.outCols, gap: n % 2 * 7)
        x.fill(&rng); g.fill(&rng)
        let want = referenceWeightGradient(conv, g, x)
        // dW as [o][c][t] with 2 gap floats a row, [o][t][c] with 3, or [c][t][o].
        let layout = n % 3
        let transposedLayout = layout == 2
        let rowGap = layout == 0 ? 2 : 3
        let (dOut, dIn, dTap) = transposedLayout ? (1, k * cout, cout)
            : layout == 0 ? (cin * k + rowGap, k, 1) : (cin * k + rowGap, 1, cin)
        let count = transposedLayout ? cin * k * cout : cout * (cin * k + rowGap)
        let accumulate = (n / 3) % 2 == 0
        let prior = rng.array(count)
        var dw = accumulate ? prior : [Float](repeating: .nan, count: count)
        let scratchCount = transposed.map { conv.scratchCount(inChannels: cin, outChannels: cout, transposed: $0) }
            ?? conv.scratchCount(inChannels: cin, outChannels: cout)
        var scratch = [Float](repeating: .nan, count: scratchCount)
        g.storage.withUnsafeBufferPointer { gp in x.storage.withUnsafeBufferPointer { xp in
            dw.withUnsafeMutableBufferPointer { dp in scratch.withUnsafeMutableBufferPointer { sp in
                if let transposed {
                    conv.weightGradient(gradOutput: gp.baseAddress! + g.lead, outChannels: cout, outStride: g.stride,
                                        input: xp.baseAddress! + x.lead, inChannels: cin, inStride: x.stride,
                                        into: dp.baseAddress!, dOutStride: dOut, dInStride: dIn, dTapStride: dTap,
                                        accumulate: accumulate, transposed: transposed, scratch: sp.baseAddress!)
                } else {
                    conv.weightGradient(gradOutput: gp.baseAddress! + g.lead, outChannels: cout, outStride: g.stride,
                                        input: xp.baseAddress! + x.lead, inChannels: cin, inStride: x.stride,
                                        into: dp.baseAddress!, dOutStride: dOut, dInStride: dIn, dTapStride: dTap,
                                        accumulate: accumulate, scratch: sp.baseAddress!)
                }
            } }
        } }
        var got: [Double] = [], expected: [Double] = []
        for o in 0..<cout { for c in 0..<cin { for t in 0..<k {
            let at = o * dOut + c * dIn + t * dTap
            got.append(Double(dw[at]))
            expected.append(want[(o * cin + c) * k + t] + (accumulate ? Double(prior[at]) : 0))
        } } }
        assertNear(got, expected, 1e-5,
                   "\(conv.axis) \(conv.rows)x\(conv.cols) k=\(k) p=\(conv.padding) \(cin)->\(cout) acc=\(accumulate) path=\(String(describing: transposed))",
                   file: file, line: line)
        if !transposedLayout {
            // The gap floats of each row of dW are not written.
            for o in 0..<cout { for e in (cin * k)..<(cin * k + rowGap) {
                let at = o * dOut + e
                XCTAssertTrue(accumulate ? dw[at] == prior[at] : dw[at].isNaN, "dW gap written", file: file, line: line)
            } }
        }
    }

    /// Packing with negative strides from the last element equals packing the explicitly
    /// flipped and transposed array: weight'[c, o, t] = weight[o, c, k-1-t].
    func testPackNegativeStrides() {
        var rng = ConvRandom(14)
        for axis in [AxisConv.Axis.height, .width] { for k in [1, 3, 5] { for (cout, cin) in [(1, 1), (3, 5), (19, 8), (7, 2)] {
            let conv = try! AxisConv(axis: axis, rows: 9, cols: 9, kernel: k, padding: k / 2)
            let w = rng.array(cout * cin * k)
            var flipped = [Float](repeating: 0, count: w.count)
            for o in 0..<cout { for c in 0..<cin { for t in 0..<k { flipped[(c * cout + o) * k + t] = w[(o * cin + c) * k + k - 1 - t] } } }
            let n = conv.packedCount(outChannels: cin, inChannels: cout)
            var a = [Float](repeating: .nan, count: n), b = [Float](repeating: .nan, count: n)
            w.withUnsafeBufferPointer { wp in a.withUnsafeMutableBufferPointer {
                conv.pack(wp.baseAddress! + (k - 1), outChannels: cin, inChannels: cout,
                          outStride: k, inStride: cin * k, tapStride: -1, into: $0.baseAddress!)
            } }
            flipped.withUnsafeBufferPointer { fp in b.withUnsafeMutableBufferPointer {
                conv.pack(fp.baseAddress!, outChannels: cin, inChannels: cout,
                          outStride: cout * k, inStride: k, tapStride: 1, into: $0.baseAddress!)
            } }
            XCTAssertEqual(a, b, "\(axis) k=\(k) \(cout)x\(cin)")
        } } }
    }

    /// <forward(x), g> = <x, adjoint(g)>, the adjoint being forward over the output plane with
    /// weight'[c, o, t] = weight[o, c, k-1-t] (packed through negative strides) and padding
    /// k-1-p.
    func testAdjointIdentity() throws {
        var rng = ConvRandom(15)
        for (n, conv) in geometries().enumerated() where n % 2 == 0 {
            let (cin, cout) = channelPairs[(n / 2) % channelPairs.count]
            let k = conv.kernel
            let adjoint = try AxisConv(axis: conv.axis, rows: conv.outRows, cols: conv.outCols, kernel: k, padding: k - 1 - conv.padding)
            XCTAssertEqual(adjoint.outRows, conv.rows); XCTAssertEqual(adjoint.outCols, conv.cols)
            let x = Planes(count: cin, plane: conv.rows * conv.cols, gap: 2)
            let g = Planes(count: cout, plane: conv.outRows * conv.outCols, gap: 0)
            x.fill(&rng); g.fill(&rng)
            let w = rng.array(cout * cin * k)
            let y = runForward(conv, w, nil, x, outChannels: cout, gap: 1)
            // Adjoint weights packed straight from w: output c, input o, tap t reads w[o, c, k-1-t].
            var packed = [Float](repeating: .nan, count: adjoint.packedCount(outChannels: cin, inChannels: cout))
            w.withUnsafeBufferPointer { wp in packed.withUnsafeMutableBufferPointer {
                adjoint.pack(wp.baseAddress! + (k - 1), outChannels: cin, inChannels: cout,
                             outStride: k, inStride: cin * k, tapStride: -1, into: $0.baseAddress!)
            } }
            let dx = Planes(count: cin, plane: conv.rows * conv.cols, gap: 3)
            var scratch = [Float](repeating: .nan, count: adjoint.scratchCount(inChannels: cout, outChannels: cin))
            g.storage.withUnsafeBufferPointer { gp in dx.storage.withUnsafeMutableBufferPointer { dp in
                scratch.withUnsafeMutableBufferPointer { sp in
                    adjoint.forward(packed, outChannels: cin, inChannels: cout, input: gp.baseAddress! + g.lead, inStride: g.stride,
                                    output: dp.baseAddress! + dx.lead, outStride: dx.stride, bias: nil, scratch: sp.baseAddress!)
                }
            } }
            XCTAssertTrue(dx.gapsUntouched)
            let lhs = zip(planeValues(y), planeValues(g)).reduce(0.0) { $0 + $1.0 * $1.1 }
            let rhs = zip(planeValues(x), planeValues(dx)).reduce(0.0) { $0 + $1.0 * $1.1 }
            let scale = zip(planeValues(x), planeValues(dx)).reduce(0.0) { $0 + abs($1.0 * $1.1) }
            XCTAssertEqual(lhs, rhs, accuracy: 1e-5 * max(1, scale),
                           "\(conv.axis) \(conv.rows)x\(conv.cols) k=\(k) p=\(conv.padding) \(cin)->\(cout)")
        }
    }
}
