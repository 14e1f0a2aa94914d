/// Winograd F(2, 3) along the height axis when kh = 3 and the height stride and dilation are 1
/// (any padding): the kh x 1 stage of the fused low-rank convolution (z = its intermediate, r
/// its rank) and the height taps of the dense convolution (z = the width-lowered input,
/// r = c_in*kw; `DenseConv+Winograd.swift`):
///
///     y[o, n, h, w] = sum_{a < 3} sum_j A'[o, a*r + j] z[j, n, h - ph + a, w]
///
/// Output rows come in tiles of two (h = 2t, 2t + 1) that read the four input rows
/// d_k = z[., n, 2t - ph + k, .] (zero outside 0..<H). With
///
///     B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1],   G = [1 0 0; 1/2 1/2 1/2; 1/2 -1/2 1/2; 0 0 1],
///     A^T = [1 1 1 0; 0 1 -1 -1],
///
/// the stage is four matrix products, one per transformed point xi:
///
///     Zt_xi = sum_k B^T[xi, k] d_k            (r x tiles*W: the input transform)
///     Aw_xi = sum_a G[xi, a] A'[., a*r : a*r + r]   (c_out x r: the kernel transform)
///     Yt_xi = Aw_xi Zt_xi,                     y[2t] = Yt_0 + Yt_1 + Yt_2,  y[2t+1] = Yt_1 - Yt_2 - Yt_3
///
/// 4 products of r x c_out per pair of output pixels instead of 6: 1.5x fewer multiplications
/// than lowering the three taps. The backward pass is the adjoint of each step:
///
///     dYt_0 = g[2t], dYt_1 = g[2t] + g[2t+1], dYt_2 = g[2t] - g[2t+1], dYt_3 = -g[2t+1]
///     dAw_xi = dYt_xi Zt_xi^T,   dA'[., a*r + j] = sum_xi G[xi, a] dAw_xi[., j]
///     dZt_xi = Aw_xi^T dYt_xi,   dz[2t - ph + k] += sum_xi B^T[xi, k] dZt_xi.
///
/// The transformed matrices of point xi start `xi * rows * ld` floats into their buffer; their
/// columns are ordered (image, tile, w) with leading dimension `ld`.
public struct WinogradHeight {
    /// Input rows, output rows, row width (the stage's W: the width-stage output), padding.
    public let height: Int
    public let outHeight: Int
    public let width: Int
    public let padding: Int

    /// The smallest rank (c_in*kw for the dense convolution) for which it is used by default.
    /// Measured on the 2-core EPYC for the low-rank stage (fwd+bwd, N=128, k=3, pad 1): r = 5
    /// 0.93x-0.94x of the lowered stage, r = 16 1.11x-1.15x, r = 19 0.99x-1.12x, r = 64
    /// 1.05x-1.15x; below ~8 the four thin products cost more than the multiplications they
    /// save. Dense, c_in*kw = 48 and 192: 1.21x-1.51x.
    public static let minimumRank = 8

    /// Applies to an axis with kernel 3, stride 1 and dilation 1.
    public static func applies(_ axis: ConvAxis) -> Bool {
        axis.kernel == 3 && axis.stride == 1 && axis.dilation == 1 && axis.output >= 1
    }

    public init(_ axis: ConvAxis, width: Int) {
        height = axis.size; outHeight = axis.output; padding = axis.padding; self.width = width
    }

    /// Whether the transformed matrices of one image with up to `rows` rows stay within the
    /// BLAS limits (else the lowered form is used: it needs half the columns).
    public func fits(rows: Int) -> Bool {
        let (cols, o1) = columnsPerImage.addingReportingOverflow(32)
        let (n, o2) = (4 * rows).multipliedReportingOverflow(by: cols)
        return !o1 && !o2 && n <= Int(Int32.max)
    }

    /// Tiles of two output rows per image.
    public var tiles: Int { (outHeight + 1) / 2 }
    /// Columns of the transformed matrices per image.
    public var columnsPerImage: Int { tiles * width }

    /// Aw_xi (4 matrices of cOut x r, consecutive) from A' (cOut x 3r).
    public func kernelTransform(_ a: UnsafePointer<Float>, cOut: Int, rank r: Int, into aw: UnsafeMutablePointer<Float>) {
        let plane = cOut * r
        for o in 0..<cOut {
            let row = a + o * 3 * r
            for j in 0..<r {
                let g0 = row[j], g1 = row[r + j], g2 = row[2 * r + j]
                let k = o * r + j
                aw[k] = g0
                aw[plane + k] = 0.5 * (g0 + g1 + g2)
                aw[2 * plane + k] = 0.5 * (g0 - g1 + g2)
                aw[3 * plane + k] = g2
            }
        }
    }

    /// dA' (cOut x 3r) from the four dAw_xi (consecutive cOut x r matrices).
    public func kernelGradientTransform(_ daw: UnsafePointer<Float>, cOut: Int, rank r: Int,
                                        into da: UnsafeMutablePointer<Float>) {
        let plane = cOut * r
        for o in 0..<cOut {
            let row = da + o * 3 * r
            for j in 0..<r {
                let k = o * r + j
                let m0 = daw[k], m1 = daw[plane + k], m2 = daw[2 * plane + k], m3 = daw[3 * plane + k]
                row[j] = m0 + 0.5 * (m1 + m2)
                row[r + j] = 0.5 * (m1 - m2)
                row[2 * r + j] = 0.5 * (m1 + m2) + m3
            }
        }
    }

    /// Ot_xi = Kt_xi It_xi for the four points: Kt (4 x outRows x inRows, consecutive), It
    /// (4 x inRows x ld), Ot (4 x outRows x ld), `columns` columns.
    public static func forwardProducts(_ kt: UnsafePointer<Float>, _ it: UnsafePointer<Float>,
                                       into ot: UnsafeMutablePointer<Float>, outRows: Int, inRows: Int,
                                       columns: Int, ld: Int) {
        for xi in 0..<4 {
            Blas.gemm(false, false, outRows, columns, inRows, 1, kt + xi * outRows * inRows, inRows,
                      it + xi * inRows * ld, ld, 0, ot + xi * outRows * ld, ld)
        }
    }

    /// The products of the backward pass for the four points: dKt_xi = beta dKt_xi + dOt_xi
    /// It_xi^T, then dIt_xi = Kt_xi^T dOt_xi written over It_xi.
    public static func backwardProducts(_ kt: UnsafePointer<Float>, _ dot: UnsafePointer<Float>,
                                        _ it: UnsafeMutablePointer<Float>, beta: Float, into dkt: UnsafeMutablePointer<Float>,
                                        outRows: Int, inRows: Int, columns: Int, ld: Int) {
        let plane = outRows * inRows
        for xi in 0..<4 {
            Blas.gemm(false, true, outRows, inRows, columns, 1, dot + xi * outRows * ld, ld,
                      it + xi * inRows * ld, ld, beta, dkt + xi * plane, inRows)
            Blas.gemm(true, false, inRows, columns, outRows, 1, kt + xi * plane, inRows,
                      dot + xi * outRows * ld, ld, 0, it + xi * inRows * ld, ld)
        }
    }

    /// Input row k (0..<4) of tile t, or nil in the padding.
    @inline(__always)
    private func inputRow(_ t: Int, _ k: Int) -> Int? {
        let h = 2 * t - padding + k
        return h >= 0 && h < height ? h : nil
    }

    /// Zt_xi (4 x channels x ld) from `images` images of z: channel c of image n is the
    /// height x width plane at z + c * channelStride + n * imageStride.
    public func inputTransform(_ z: UnsafePointer<Float>, channels: Int, channelStride: Int, imageStride: Int,
                               images: Int, into zt: UnsafeMutablePointer<Float>, ld: Int) {
        let w = width, point = channels * ld
        for c in 0..<channels {
            for n in 0..<images {
                let plane = z + c * channelStride + n * imageStride
                var col = zt + c * ld + n * columnsPerImage
                for t in 0..<tiles {
                    let d0 = inputRow(t, 0).map { plane + $0 * w }, d1 = inputRow(t, 1).map { plane + $0 * w }
                    let d2 = inputRow(t, 2).map { plane + $0 * w }, d3 = inputRow(t, 3).map { plane + $0 * w }
                    combine(col, d0, 1, d2, -1, w)
                    combine(col + point, d1, 1, d2, 1, w)
                    combine(col + 2 * point, d2, 1, d1, -1, w)
                    combine(col + 3 * point, d1, 1, d3, -1, w)
                    col += w
                }
            }
        }
    }

    /// y (NCHW, `channels` channels, for `images` images) from Yt_xi (4 x channels x ld),
    /// plus bias.
    public func outputTransform(_ yt: UnsafePointer<Float>, channels: Int, ld: Int, images: Int,
                                bias: UnsafePointer<Float>?, into y: UnsafeMutablePointer<Float>) {
        let w = width, point = channels * ld, outPlane = outHeight * w
        for n in 0..<images {
            for o in 0..<channels {
                let b = bias?[o] ?? 0
                let out = y + (n * channels + o) * outPlane
                var m = yt + o * ld + n * columnsPerImage
                for t in 0..<tiles {
                    let m0 = m, m1 = m + point, m2 = m + 2 * point, m3 = m + 3 * point
                    let top = out + 2 * t * w
                    for i in 0..<w { top[i] = m0[i] + m1[i] + m2[i] + b }
                    if 2 * t + 1 < outHeight {
                        let bottom = top + w
                        for i in 0..<w { bottom[i] = m1[i] - m2[i] - m3[i] + b }
                    }
                    m += w
                }
            }
        }
    }

    /// dYt_xi (4 x channels x ld) from the output gradient g (NCHW, `images` images).
    public func gradOutputTransform(_ g: UnsafePointer<Float>, channels: Int, images: Int,
                                    into dyt: UnsafeMutablePointer<Float>, ld: Int) {
        let w = width, point = channels * ld, outPlane = outHeight * w
        for n in 0..<images {
            for o in 0..<channels {
                let plane = g + (n * channels + o) * outPlane
                var col = dyt + o * ld + n * columnsPerImage
                for t in 0..<tiles {
                    let top = UnsafePointer(plane + 2 * t * w)
                    let bottom: UnsafePointer<Float>? = 2 * t + 1 < outHeight ? top + w : nil
                    combine(col, top, 1, nil, 0, w)
                    combine(col + point, top, 1, bottom, 1, w)
                    combine(col + 2 * point, top, 1, bottom, -1, w)
                    combine(col + 3 * point, bottom, -1, nil, 0, w)
                    col += w
                }
            }
        }
    }

    /// dz (overwritten: channels x images planes as in `inputTransform`) from dZt_xi
    /// (4 x channels x ld): dz[2t - ph + k] += sum_xi B^T[xi, k] dZt_xi over the tiles.
    public func gradInputTransform(_ dzt: UnsafePointer<Float>, channels: Int, ld: Int, images: Int,
                                   into dz: UnsafeMutablePointer<Float>, channelStride: Int, imageStride: Int) {
        let w = width, point = channels * ld
        for c in 0..<channels {
            for n in 0..<images {
                let plane = dz + c * channelStride + n * imageStride
                plane.update(repeating: 0, count: height * w)
                var m = dzt + c * ld + n * columnsPerImage
                for t in 0..<tiles {
                    let m0 = m, m1 = m + point, m2 = m + 2 * point, m3 = m + 3 * point
                    // Row k of B (= column k of B^T): k0 [1 0 0 0], k1 [0 1 -1 1], k2 [-1 1 1 0], k3 [0 0 0 -1].
                    if let h = inputRow(t, 0) { addInto(plane + h * w, m0, w) }
                    if let h = inputRow(t, 1) {
                        let d = plane + h * w
                        for i in 0..<w { d[i] += m1[i] - m2[i] + m3[i] }
                    }
                    if let h = inputRow(t, 2) {
                        let d = plane + h * w
                        for i in 0..<w { d[i] += m1[i] + m2[i] - m0[i] }
                    }
                    if let h = inputRow(t, 3) {
                        let d = plane + h * w
                        for i in 0..<w { d[i] -= m3[i] }
                    }
                    m += w
                }
            }
        }
    }

    /// out[i] = sa * a[i] + sb * b[i] for i < count, a missing row reading as zeros.
    @inline(__always)
    private func combine(_ out: UnsafeMutablePointer<Float>, _ a: UnsafePointer<Float>?, _ sa: Float,
                         _ b: UnsafePointer<Float>?, _ sb: Float, _ count: Int) {
        switch (a, b) {
        case let (a?, b?): for i in 0..<count { out[i] = sa * a[i] + sb * b[i] }
        case let (a?, nil): for i in 0..<count { out[i] = sa * a[i] }
        case let (nil, b?): for i in 0..<count { out[i] = sb * b[i] }
        case (nil, nil): out.update(repeating: 0, count: count)
        }
    }
}
