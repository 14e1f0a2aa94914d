import XCTest
@testable import FNLCore

final class ConvIm2ColTests: XCTestCase {
    /// The dense lowering equals its definition entry by entry (padding reads zero), for a
    /// padded leading dimension.
    func testLowerMatchesDefinition() throws {
        var rng = ConvRandom(1)
        for g in convTestGeometries {
            let l = DenseConv.Plan(unsafe: g).lowering
            let x = rng.array(g.inputCount)
            let cols = g.batch * g.outPlane, ld = cols + 5
            var out = [Float](repeating: .nan, count: l.rowCount * ld)
            x.withUnsafeBufferPointer { xp in
                out.withUnsafeMutableBufferPointer { l.lower(xp.baseAddress!, images: g.batch, into: $0.baseAddress!, ld: ld) }
            }
            for c in 0..<g.cIn { for a in 0..<g.kh { for b in 0..<g.kw {
                let row = (c * g.kh + a) * g.kw + b
                for n in 0..<g.batch { for i in 0..<g.h.output { for j in 0..<g.w.output {
                    let hh = i * g.h.stride - g.h.padding + a * g.h.dilation
                    let ww = j * g.w.stride - g.w.padding + b * g.w.dilation
                    let inside = hh >= 0 && hh < g.h.size && ww >= 0 && ww < g.w.size
                    let want = inside ? x[((n * g.cIn + c) * g.h.size + hh) * g.w.size + ww] : 0
                    XCTAssertEqual(out[row * ld + (n * g.h.output + i) * g.w.output + j], want)
                } } }
            } } }
        }
    }

    /// liftAdd is the adjoint of lower: <lower(x), Y> = <x, liftAdd(Y)>, for the dense
    /// lowering and the two stages of the fused low-rank path.
    func testLiftIsAdjointOfLower() throws {
        var rng = ConvRandom(2)
        for g in convTestGeometries {
            let p = try LowRankConv.Plan(g, ranks: [2], path: .fused)
            let midPlane = g.h.size * g.w.output
            let lowerings: [(Lowering, Int)] = [
                (DenseConv.Plan(unsafe: g).lowering, g.inputCount),
                (p.stage1, g.inputCount),
                (p.stage2(channelStride: g.batch * midPlane), 2 * g.batch * midPlane),
            ]
            for (l, inCount) in lowerings {
                let x = rng.array(inCount)
                let ld = g.batch * l.outPlane
                var y = rng.array(l.rowCount * ld)
                var lx = [Float](repeating: 0, count: l.rowCount * ld)
                var ly = [Float](repeating: .nan, count: inCount)
                x.withUnsafeBufferPointer { xp in
                    lx.withUnsafeMutableBufferPointer { l.lower(xp.baseAddress!, images: g.batch, into: $0.baseAddress!, ld: ld) }
                }
                let lhs = zip(lx, y).reduce(0.0) { $0 + Double($1.0) * Double($1.1) }
                y.withUnsafeMutableBufferPointer { yp in
                    ly.withUnsafeMutableBufferPointer { l.liftAdd(yp.baseAddress!, images: g.batch, ld: ld, into: $0.baseAddress!) }
                }
                let rhs = zip(x, ly).reduce(0.0) { $0 + Double($1.0) * Double($1.1) }
                XCTAssertEqual(lhs, rhs, accuracy: 1e-4 * max(1, abs(lhs)), "\(g)")
            }
        }
    }

    func testLayoutRoundTripAndBiasSums() {
        var rng = ConvRandom(3)
        let (c, plane, images) = (3, 7, 4)
        let y = rng.array(c * plane * images), bias: [Float] = [1, -2, 0.5]
        let ld = images * plane + 3
        var g = [Float](repeating: 0, count: c * ld)
        var sums = [Double](repeating: 0, count: c * images)
        BatchLayout.gather(y, channels: c, plane: plane, images: images, into: &g, ld: ld, sums: &sums)
        var back = [Float](repeating: 0, count: y.count)
        BatchLayout.scatter(g, ld: ld, channels: c, plane: plane, images: images, bias: bias, into: &back)
        for n in 0..<images { for o in 0..<c { for q in 0..<plane {
            let i = (n * c + o) * plane + q
            XCTAssertEqual(back[i], y[i] + bias[o])
        } } }
        for o in 0..<c { for n in 0..<images {
            let want = (0..<plane).reduce(0.0) { $0 + Double(y[(n * c + o) * plane + $1]) }
            XCTAssertEqual(sums[o * images + n], want, accuracy: 1e-5)
        } }
    }
}

extension DenseConv.Plan {
    /// Test helper for geometries known to be valid.
    init(unsafe g: ConvGeometry, chunk: Int = 0) { self = try! DenseConv.Plan(g, chunkImages: chunk) }
}
