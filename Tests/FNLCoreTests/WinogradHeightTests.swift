import XCTest
@testable import FNLCore

/// The written-out row transforms of F(2, 3) and F(4, 3) (`WinogradHeight+F23.swift`,
/// `WinogradHeight+F43.swift`) against the matrices B^T and A^T of `Transform`, applied in
/// float64 row by row: heights 1...9 and 16 (partial last tiles), paddings 0...2, rows of
/// 1, 5, 8 and 13 floats (shorter than a vector, one vector, one and a partial one), two
/// images and three channels at strides with gaps. The gaps and the floats past ld hold NaN:
/// a transform that reads outside its planes poisons its result, one that writes outside
/// them is seen.
final class WinogradHeightTests: XCTestCase {
    func testTransformsMatchTheirMatrices() throws {
        var rng = ConvRandom(43)
        var checked = 0
        for tile in [2, 4] { for height in Array(1...9) + [16] { for padding in 0...2 { for width in [1, 5, 8, 13] {
            guard height + 2 * padding >= 3 else { continue }
            let axis = try ConvAxis(size: height, kernel: 3, stride: 1, padding: padding, dilation: 1, name: "height")
            let wino = WinogradHeight(axis, width: width, tile: tile)
            let f = wino.transform, m = f.m, p = f.points, tiles = wino.tiles
            let channels = 3, images = 2, plane = height * width, outPlane = axis.output * width
            let channelStride = images * plane + 3, imageStride = plane + 1
            let ld = images * wino.columnsPerImage + 5, point = channels * ld
            let what = "F(\(m), 3) height \(height) padding \(padding) width \(width)"

            // Input transform: Zt[xi][c][n, t, w] = sum_k B^T[xi, k] z[c, n, m t - ph + k, w].
            var z = [Float](repeating: .nan, count: channels * channelStride)
            for c in 0..<channels { for n in 0..<images { for i in 0..<plane {
                z[c * channelStride + n * imageStride + i] = rng.next()
            } } }
            var zt = [Float](repeating: .nan, count: p * point)
            wino.inputTransform(z, channels: channels, channelStride: channelStride, imageStride: imageStride,
                                images: images, into: &zt, ld: ld)
            var ztR = [Double](repeating: 0, count: p * point)
            for xi in 0..<p { for c in 0..<channels { for n in 0..<images { for t in 0..<tiles { for w in 0..<width {
                var s = 0.0
                for k in 0..<p {
                    let h = m * t - padding + k
                    if h >= 0 && h < height { s += Double(f.bt[xi * p + k]) * Double(z[c * channelStride + n * imageStride + h * width + w]) }
                }
                ztR[xi * point + c * ld + (n * tiles + t) * width + w] = s
            } } } } }
            assertColumns(zt, ztR, p * channels, ld, images * wino.columnsPerImage, "input transform " + what)

            // Output transform: y[n, o, m t + i, w] = bias[o] + sum_xi A^T[i, xi] Yt[xi][o][n, t, w].
            var yt = [Float](repeating: .nan, count: p * point)
            for row in 0..<(p * channels) { for j in 0..<(images * wino.columnsPerImage) { yt[row * ld + j] = rng.next() } }
            let bias = rng.array(channels)
            var y = [Float](repeating: .nan, count: images * channels * outPlane + 8)
            wino.outputTransform(yt, channels: channels, ld: ld, images: images, bias: bias, into: &y)
            var yR = [Double](repeating: .nan, count: y.count)
            for n in 0..<images { for o in 0..<channels { for oh in 0..<axis.output { for w in 0..<width {
                let t = oh / m, i = oh % m
                var s = Double(bias[o])
                for xi in 0..<p { s += Double(f.at[i * p + xi]) * Double(yt[xi * point + o * ld + (n * tiles + t) * width + w]) }
                yR[(n * channels + o) * outPlane + oh * width + w] = s
            } } } }
            assertMatches(y, yR, "output transform " + what)

            // Gradient of the output transform: dYt[xi][o][n, t, w] = sum_i A^T[i, xi] g[n, o, m t + i, w].
            let g = rng.array(images * channels * outPlane)
            var dyt = [Float](repeating: .nan, count: p * point)
            wino.gradOutputTransform(g, channels: channels, images: images, into: &dyt, ld: ld)
            var dytR = [Double](repeating: 0, count: p * point)
            for xi in 0..<p { for o in 0..<channels { for n in 0..<images { for t in 0..<tiles { for w in 0..<width {
                var s = 0.0
                for i in 0..<m where m * t + i < axis.output {
                    s += Double(f.at[i * p + xi]) * Double(g[(n * channels + o) * outPlane + (m * t + i) * width + w])
                }
                dytR[xi * point + o * ld + (n * tiles + t) * width + w] = s
            } } } } }
            assertColumns(dyt, dytR, p * channels, ld, images * wino.columnsPerImage, "gradient output transform " + what)

            // Gradient of the input transform: dz[c, n, h, w] = sum over (t, k) with m t - ph + k = h
            // of sum_xi B^T[xi, k] dZt[xi][c][n, t, w].
            var dz = [Float](repeating: .nan, count: channels * channelStride)
            wino.gradInputTransform(yt, channels: channels, ld: ld, images: images, into: &dz,
                                    channelStride: channelStride, imageStride: imageStride)
            var dzR = [Double](repeating: .nan, count: dz.count)
            for c in 0..<channels { for n in 0..<images { for h in 0..<height { for w in 0..<width {
                var s = 0.0
                for t in 0..<tiles { for k in 0..<p where m * t - padding + k == h {
                    for xi in 0..<p { s += Double(f.bt[xi * p + k]) * Double(yt[xi * point + c * ld + (n * tiles + t) * width + w]) }
                } }
                dzR[c * channelStride + n * imageStride + h * width + w] = s
            } } } }
            assertMatches(dz, dzR, "gradient input transform " + what)
            checked += 1
        } } } }
        XCTAssertGreaterThan(checked, 200)
    }

    /// `rows` rows of `ld` floats: the first `columns` of each as `want`, the rest still NaN.
    private func assertColumns(_ got: [Float], _ want: [Double], _ rows: Int, _ ld: Int, _ columns: Int, _ what: String,
                               file: StaticString = #filePath, line: UInt = #line) {
        var expected = want
        for r in 0..<rows { for j in columns..<ld { expected[r * ld + j] = .nan } }
        assertMatches(got, expected, what, file: file, line: line)
    }

    /// got is NaN exactly where want is (the floats nothing may write), and elsewhere within
    /// 1e-5 x max(1, max |want|) of want.
    private func assertMatches(_ got: [Float], _ want: [Double], _ what: String,
                               file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(got.count, want.count, what, file: file, line: line)
        let scale = max(1, want.filter { !$0.isNaN }.map { abs($0) }.max() ?? 0)
        var worst = 0.0, misplaced = 0
        for (a, b) in zip(got, want) {
            if b.isNaN || a.isNaN { misplaced += a.isNaN == b.isNaN ? 0 : 1; continue }
            worst = max(worst, abs(Double(a) - b))
        }
        XCTAssertEqual(misplaced, 0, "NaN where a value belongs or a value where nothing may write: " + what,
                       file: file, line: line)
        XCTAssertLessThanOrEqual(worst, 1e-5 * scale, what, file: file, line: line)
    }
}
