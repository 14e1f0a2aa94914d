/// Winograd F(4, 3) transforms written out (`WinogradHeight` dispatches here when m = 4), in
/// SIMD8 steps along the row, a last partial step reading and writing only the row's
/// remaining floats. The steps are `@inline(__always)` functions called directly at the full
/// and the partial site (static ones where they would capture many values): local functions
/// passed on as closures, or capturing six row pointers, were compiled out of line, and the
/// transforms then took as long as the products they feed. Rows in the padding read as zeros, output rows past the end are
/// not written. With the rows d_k = z[4t - ph + k] of tile t (B^T, A^T of `Transform.f43`):
///
///     Zt_0 = 4 d0 - 5 d2 + d4          Zt_3 = -2 d1 - d2 + 2 d3 + d4
///     Zt_1 = -4 d1 - 4 d2 + d3 + d4    Zt_4 = 2 d1 - d2 - 2 d3 + d4
///     Zt_2 = 4 d1 - 4 d2 - d3 + d4     Zt_5 = 4 d1 - 5 d3 + d5
///
///     y[4t]     = m0 + m1 + m2 + m3 + m4      y[4t + 2] = m1 + m2 + 4 m3 + 4 m4
///     y[4t + 1] = m1 - m2 + 2 m3 - 2 m4       y[4t + 3] = m1 - m2 + 8 m3 - 8 m4 + m5
///
/// and the backward pass their adjoints. They replace generic row passes over the matrix
/// entries; measured on the AVX2 EPYC (1 thread, dense 3x3 conv C=64, the F(4, 3) shapes), the
/// forward went from 27.9-29.4 to 22.2-23.5 ms at N=128 H=W=16 and from 45.1-47.4 to
/// 40.5-43.2 ms at N=64 H=W=32, the backward from 54.0-54.4 to 48.9-50.7 ms at H=W=16.
extension WinogradHeight {
    /// Zt_xi (6 x channels x ld) from `images` images of z: channel c of image n is the
    /// height x width plane at z + c * channelStride + n * imageStride.
    func inputTransformF43(_ z: UnsafePointer<Float>, channels: Int, channelStride: Int, imageStride: Int,
                           images: Int, into zt: UnsafeMutablePointer<Float>, ld: Int) {
        let w = width, point = channels * ld
        // Rows in the padding read a row of zeros.
        withUnsafeTemporaryAllocation(of: Float.self, capacity: w) { zeros in
            zeros.initialize(repeating: 0)
            let zero = UnsafePointer(zeros.baseAddress!)
            for c in 0..<channels {
                for n in 0..<images {
                    let plane = z + c * channelStride + n * imageStride
                    var col = zt + c * ld + n * columnsPerImage
                    for t in 0..<tiles {
                        let first = 4 * t - padding
                        @inline(__always) func row(_ k: Int) -> UnsafePointer<Float> {
                            first + k >= 0 && first + k < height ? plane + (first + k) * w : zero
                        }
                        let rows = (row(0), row(1), row(2), row(3), row(4), row(5))
                        var i = 0
                        while i + 8 <= w { Self.inputStepF43(rows, col, point, i, 8); i += 8 }
                        if i < w { Self.inputStepF43(rows, col, point, i, w - i) }
                        col += w
                    }
                }
            }
        }
    }

    /// y (NCHW, `channels` channels, for `images` images) from Yt_xi (6 x channels x ld),
    /// plus bias.
    func outputTransformF43(_ yt: UnsafePointer<Float>, channels: Int, ld: Int, images: Int,
                            bias: UnsafePointer<Float>?, into y: UnsafeMutablePointer<Float>) {
        let w = width, point = channels * ld, outPlane = outHeight * w
        for n in 0..<images {
            for o in 0..<channels {
                let b = SIMD8<Float>(repeating: bias?[o] ?? 0)
                let out = y + (n * channels + o) * outPlane
                var m = yt + o * ld + n * columnsPerImage
                for t in 0..<tiles {
                    let rows = min(4, outHeight - 4 * t), top = out + 4 * t * w
                    @inline(__always) func step(_ i: Int, _ count: Int) {
                        @inline(__always) func p(_ xi: Int) -> SIMD8<Float> { loadPart(m + xi * point + i, count) }
                        let (m0, m1, m2, m3, m4, m5) = (p(0), p(1), p(2), p(3), p(4), p(5))
                        let sum12 = m1 + m2, diff12 = m1 - m2, sum34 = m3 + m4, diff34 = m3 - m4
                        storePart(b + m0 + sum12 + sum34, top + i, count)
                        if rows > 1 { storePart(b + diff12 + 2 * diff34, top + w + i, count) }
                        if rows > 2 { storePart(b + sum12 + 4 * sum34, top + 2 * w + i, count) }
                        if rows > 3 { storePart(b + diff12 + 8 * diff34 + m5, top + 3 * w + i, count) }
                    }
                    var i = 0
                    while i + 8 <= w { step(i, 8); i += 8 }
                    if i < w { step(i, w - i) }
                    m += w
                }
            }
        }
    }

    /// dYt_xi (6 x channels x ld) from the output gradient g (NCHW, `images` images): the
    /// adjoint of the output transform (rows past the output read as zeros).
    func gradOutputTransformF43(_ g: UnsafePointer<Float>, channels: Int, images: Int,
                                into dyt: UnsafeMutablePointer<Float>, ld: Int) {
        let w = width, point = channels * ld, outPlane = outHeight * w
        for n in 0..<images {
            for o in 0..<channels {
                let plane = g + (n * channels + o) * outPlane
                var col = dyt + o * ld + n * columnsPerImage
                for t in 0..<tiles {
                    let rows = min(4, outHeight - 4 * t), top = plane + 4 * t * w
                    @inline(__always) func step(_ i: Int, _ count: Int) {
                        @inline(__always) func q(_ k: Int) -> SIMD8<Float> { k < rows ? loadPart(top + k * w + i, count) : .zero }
                        let (g0, g1, g2, g3) = (q(0), q(1), q(2), q(3))
                        let sum02 = g0 + g2, sum13 = g1 + g3, four2 = g0 + 4 * g2, eight3 = 2 * g1 + 8 * g3
                        let o = col + i
                        storePart(g0, o, count)
                        storePart(sum02 + sum13, o + point, count)
                        storePart(sum02 - sum13, o + 2 * point, count)
                        storePart(four2 + eight3, o + 3 * point, count)
                        storePart(four2 - eight3, o + 4 * point, count)
                        storePart(g3, o + 5 * point, count)
                    }
                    var i = 0
                    while i + 8 <= w { step(i, 8); i += 8 }
                    if i < w { step(i, w - i) }
                    col += w
                }
            }
        }
    }

    /// dz (overwritten: channels x images planes as in `inputTransform`) from dZt_xi
    /// (6 x channels x ld): dz[4t - ph + k] += sum_xi B^T[xi, k] dZt_xi over the tiles (rows
    /// in the padding dropped; rows two tiles read get both sums, in tile order).
    func gradInputTransformF43(_ dzt: UnsafePointer<Float>, channels: Int, ld: Int, images: Int,
                               into dz: UnsafeMutablePointer<Float>, channelStride: Int, imageStride: Int) {
        let w = width, point = channels * ld
        // Rows in the padding are written to a discarded row.
        withUnsafeTemporaryAllocation(of: Float.self, capacity: w) { discarded in
            discarded.initialize(repeating: 0)
            let sink = discarded.baseAddress!
            for c in 0..<channels {
                for n in 0..<images {
                    let plane = dz + c * channelStride + n * imageStride
                    plane.update(repeating: 0, count: height * w)
                    var m = dzt + c * ld + n * columnsPerImage
                    for t in 0..<tiles {
                        let first = 4 * t - padding
                        @inline(__always) func row(_ k: Int) -> UnsafeMutablePointer<Float> {
                            first + k >= 0 && first + k < height ? plane + (first + k) * w : sink
                        }
                        let rows = (row(0), row(1), row(2), row(3), row(4), row(5))
                        var i = 0
                        while i + 8 <= w { Self.gradInputStepF43(m, point, rows, i, 8); i += 8 }
                        if i < w { Self.gradInputStepF43(m, point, rows, i, w - i) }
                        m += w
                    }
                }
            }
        }
    }

    /// One step of `inputTransformF43`: floats i..<i+count of the six input rows to the six
    /// transformed points (`point` floats apart from out).
    @inline(__always)
    private static func inputStepF43(_ r: (UnsafePointer<Float>, UnsafePointer<Float>, UnsafePointer<Float>,
                                           UnsafePointer<Float>, UnsafePointer<Float>, UnsafePointer<Float>),
                                     _ out: UnsafeMutablePointer<Float>, _ point: Int, _ i: Int, _ count: Int) {
        let d0 = loadPart(r.0 + i, count), d1 = loadPart(r.1 + i, count), d2 = loadPart(r.2 + i, count)
        let d3 = loadPart(r.3 + i, count), d4 = loadPart(r.4 + i, count), d5 = loadPart(r.5 + i, count)
        let o = out + i
        storePart(4 * d0 - 5 * d2 + d4, o, count)
        storePart(d4 + d3 - 4 * (d1 + d2), o + point, count)
        storePart(d4 - d3 + 4 * (d1 - d2), o + 2 * point, count)
        storePart(d4 - d2 + 2 * (d3 - d1), o + 3 * point, count)
        storePart(d4 - d2 + 2 * (d1 - d3), o + 4 * point, count)
        storePart(4 * d1 - 5 * d3 + d5, o + 5 * point, count)
    }

    /// One step of `gradInputTransformF43`: floats i..<i+count of the six points (`point`
    /// floats apart from src) added to the six rows, in row order (rows 4 and 5 of a tile are
    /// rows 0 and 1 of the next).
    @inline(__always)
    private static func gradInputStepF43(_ src: UnsafePointer<Float>, _ point: Int,
                                         _ r: (UnsafeMutablePointer<Float>, UnsafeMutablePointer<Float>,
                                               UnsafeMutablePointer<Float>, UnsafeMutablePointer<Float>,
                                               UnsafeMutablePointer<Float>, UnsafeMutablePointer<Float>),
                                         _ i: Int, _ count: Int) {
        let m0 = loadPart(src + i, count), m1 = loadPart(src + point + i, count)
        let m2 = loadPart(src + 2 * point + i, count), m3 = loadPart(src + 3 * point + i, count)
        let m4 = loadPart(src + 4 * point + i, count), m5 = loadPart(src + 5 * point + i, count)
        let sum12 = m1 + m2, diff21 = m2 - m1, sum34 = m3 + m4, diff34 = m3 - m4
        @inline(__always) func add(_ row: UnsafeMutablePointer<Float>, _ v: SIMD8<Float>) {
            storePart(loadPart(row + i, count) + v, row + i, count)
        }
        add(r.0, 4 * m0)
        add(r.1, 4 * (diff21 + m5) - 2 * diff34)
        add(r.2, -5 * m0 - 4 * sum12 - sum34)
        add(r.3, 2 * diff34 - diff21 - 5 * m5)
        add(r.4, m0 + sum12 + sum34)
        add(r.5, m5)
    }
}

/// The first `count` (1...8) floats at p as a vector (the other lanes zero).
@inline(__always)
func loadPart(_ p: UnsafePointer<Float>, _ count: Int) -> SIMD8<Float> {
    if count == 8 { return UnsafeRawPointer(p).loadUnaligned(as: SIMD8<Float>.self) }
    var v = SIMD8<Float>()
    for l in 0..<count { v[l] = p[l] }
    return v
}

@inline(__always)
func loadPart(_ p: UnsafeMutablePointer<Float>, _ count: Int) -> SIMD8<Float> { loadPart(UnsafePointer(p), count) }

/// Stores the first `count` (1...8) lanes of v at p.
@inline(__always)
func storePart(_ v: SIMD8<Float>, _ p: UnsafeMutablePointer<Float>, _ count: Int) {
    if count == 8 { UnsafeMutableRawPointer(p).storeBytes(of: v, as: SIMD8<Float>.self); return }
    for l in 0..<count { p[l] = v[l] }
}
