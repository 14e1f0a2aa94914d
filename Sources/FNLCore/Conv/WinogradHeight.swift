/// Winograd F(m, 3), m = 2 or 4, along the height axis when kh = 3 and the height stride and
/// dilation are 1 (any padding): the kh x 1 stage of the fused low-rank convolution (z = its
/// intermediate, r its rank) and the height taps of the dense convolution (z = the
/// width-lowered input, r = c_in*kw; `DenseConv+Winograd.swift`):
///
///     y[o, n, h, w] = sum_{a < 3} sum_j A'[o, a*r + j] z[j, n, h - ph + a, w]
///
/// Output rows come in tiles of m (h = m t ... m t + m - 1) that read the P = m + 2 input rows
/// d_k = z[., n, m t - ph + k, .] (zero outside 0..<H). With the matrices B^T (P x P), G (P x 3)
/// and A^T (m x P) of `Transform`, the stage is P matrix products, one per transformed point xi:
///
///     Zt_xi = sum_k B^T[xi, k] d_k                  (r x tiles*W: the input transform)
///     Aw_xi = sum_a G[xi, a] A'[., a*r : a*r + r]   (c_out x r: the kernel transform)
///     Yt_xi = Aw_xi Zt_xi,                          y[m t + i] = sum_xi A^T[i, xi] Yt_xi
///
/// P products of r x c_out per m output pixels instead of 3m: F(2, 3) does 4 per 2 (1.5x fewer
/// multiplications than lowering the three taps), F(4, 3) 6 per 4 (2x fewer). The backward
/// pass is the adjoint of each step:
///
///     dYt_xi = sum_i A^T[i, xi] g[m t + i]
///     dAw_xi = dYt_xi Zt_xi^T,   dA'[., a*r + j] = sum_xi G[xi, a] dAw_xi[., j]
///     dZt_xi = Aw_xi^T dYt_xi,   dz[m t - ph + k] += sum_xi B^T[xi, k] dZt_xi.
///
/// The transformed matrices of point xi start `xi * rows * ld` floats into their buffer; their
/// columns are ordered (image, tile, w) with leading dimension `ld`.
public struct WinogradHeight {
    /// The matrices of F(m, 3) (Lavin and Gray, "Fast Algorithms for Convolutional Neural
    /// Networks", interpolation points 0, 1, -1 (, 2, -2) and infinity).
    public struct Transform: Equatable {
        /// Output rows per tile.
        public let m: Int
        /// B^T (points x points), G (points x 3), A^T (m x points), row-major.
        let bt: [Float], g: [Float], at: [Float]
        /// Transformed points (products) per tile: m + 2.
        public var points: Int { m + 2 }

        public static let f23 = Transform(
            m: 2,
            bt: [1, 0, -1, 0,
                 0, 1, 1, 0,
                 0, -1, 1, 0,
                 0, 1, 0, -1],
            g: [1, 0, 0,
                0.5, 0.5, 0.5,
                0.5, -0.5, 0.5,
                0, 0, 1],
            at: [1, 1, 1, 0,
                 0, 1, -1, -1])

        public static let f43 = Transform(
            m: 4,
            bt: [4, 0, -5, 0, 1, 0,
                 0, -4, -4, 1, 1, 0,
                 0, 4, -4, -1, 1, 0,
                 0, -2, -1, 2, 1, 0,
                 0, 2, -1, -2, 1, 0,
                 0, 4, 0, -5, 0, 1],
            g: [1.0 / 4, 0, 0,
                -1.0 / 6, -1.0 / 6, -1.0 / 6,
                -1.0 / 6, 1.0 / 6, -1.0 / 6,
                1.0 / 24, 1.0 / 12, 1.0 / 6,
                1.0 / 24, -1.0 / 12, 1.0 / 6,
                0, 0, 1],
            at: [1, 1, 1, 1, 1, 0,
                 0, 1, -1, 2, -2, 0,
                 0, 1, 1, 4, 4, 0,
                 0, 1, -1, 8, -8, 1])

        /// F(4, 3) wherever it needs fewer products than F(2, 3) (3, 4, 7, 8, 11, 12, ...
        /// output rows), else F(2, 3). Measured on the AVX2 EPYC with the written-out SIMD
        /// transforms of both, F(4, 3) over F(2, 3) (median of 5 alternations, 1 thread, k=3,
        /// pad 1), forward / backward: dense C=16 H=W=32 1.26x / 0.99x, C=64 H=W=8 1.48x / 1.25x,
        /// H=W=16 1.35x / 1.17x, N=64 H=W=32 1.29x / 1.09x (2 threads: 1.31-1.36x / 1.03-1.27x);
        /// low-rank products r = 5...64 at the same shapes 0.99x-1.19x / 1.01x-1.18x. (The
        /// rule measured before, with generic row transforms, also asked for at least 16
        /// output rows and products of at least 64 x 128.)
        public static func preferred(outHeight: Int) -> Transform {
            let f2 = f23.points * ((outHeight + 1) / 2), f4 = f43.points * ((outHeight + 3) / 4)
            return f4 < f2 ? f43 : f23
        }
    }

    /// Input rows, output rows, row width (the stage's W: the width-stage output), padding.
    public let height: Int
    public let outHeight: Int
    public let width: Int
    public let padding: Int
    public let transform: Transform

    /// The smallest rank (c_in*kw for the dense convolution) for which it is used by default.
    /// Measured on the 2-core EPYC for the low-rank stage with F(2, 3) (fwd+bwd, N=128, k=3,
    /// pad 1): r = 5 0.93x-0.94x of the lowered stage, r = 16 1.11x-1.15x, r = 19 0.99x-1.12x,
    /// r = 64 1.05x-1.15x; below ~8 the thin products cost more than the multiplications they
    /// save. Dense, c_in*kw = 48 and 192: 1.21x-1.51x.
    public static let minimumRank = 8

    /// Applies to an axis with kernel 3, stride 1 and dilation 1.
    public static func applies(_ axis: ConvAxis) -> Bool {
        axis.kernel == 3 && axis.stride == 1 && axis.dilation == 1 && axis.output >= 1
    }

    /// `tile`: 2 or 4 forces F(2, 3) or F(4, 3); nil takes `Transform.preferred`.
    public init(_ axis: ConvAxis, width: Int, tile: Int? = nil) {
        height = axis.size; outHeight = axis.output; padding = axis.padding; self.width = width
        switch tile {
        case 2?: transform = .f23
        case 4?: transform = .f43
        default: transform = .preferred(outHeight: axis.output)
        }
    }

    /// Output rows per tile and transformed points per tile.
    public var m: Int { transform.m }
    public var points: Int { transform.points }

    /// Whether the transformed matrices of one image with up to `rows` rows stay within the
    /// BLAS limits (else the lowered form is used).
    public func fits(rows: Int) -> Bool {
        let (cols, o1) = columnsPerImage.addingReportingOverflow(32)
        let (n, o2) = (points * rows).multipliedReportingOverflow(by: cols)
        return !o1 && !o2 && n <= Int(Int32.max)
    }

    /// Tiles of m output rows per image.
    public var tiles: Int { (outHeight + m - 1) / m }
    /// Columns of the transformed matrices per image.
    public var columnsPerImage: Int { tiles * width }

    /// Aw_xi (points matrices of cOut x r, consecutive) from A' (cOut x 3r).
    public func kernelTransform(_ a: UnsafePointer<Float>, cOut: Int, rank r: Int, into aw: UnsafeMutablePointer<Float>) {
        let plane = cOut * r, gm = transform.g
        for o in 0..<cOut {
            let row = a + o * 3 * r
            for j in 0..<r {
                let g0 = row[j], g1 = row[r + j], g2 = row[2 * r + j]
                for xi in 0..<points {
                    aw[xi * plane + o * r + j] = gm[3 * xi] * g0 + gm[3 * xi + 1] * g1 + gm[3 * xi + 2] * g2
                }
            }
        }
    }

    /// dA' (cOut x 3r) from the dAw_xi (consecutive cOut x r matrices).
    public func kernelGradientTransform(_ daw: UnsafePointer<Float>, cOut: Int, rank r: Int,
                                        into da: UnsafeMutablePointer<Float>) {
        let plane = cOut * r, gm = transform.g
        for o in 0..<cOut {
            let row = da + o * 3 * r
            for j in 0..<r {
                var s0: Float = 0, s1: Float = 0, s2: Float = 0
                for xi in 0..<points {
                    let d = daw[xi * plane + o * r + j]
                    s0 += gm[3 * xi] * d; s1 += gm[3 * xi + 1] * d; s2 += gm[3 * xi + 2] * d
                }
                row[j] = s0; row[r + j] = s1; row[2 * r + j] = s2
            }
        }
    }

    /// Ot_xi = Kt_xi It_xi for every point: Kt (points x outRows x inRows, consecutive), It
    /// (points x inRows x ld), Ot (points x outRows x ld), `columns` columns.
    public func forwardProducts(_ kt: UnsafePointer<Float>, _ it: UnsafePointer<Float>,
                                into ot: UnsafeMutablePointer<Float>, outRows: Int, inRows: Int,
                                columns: Int, ld: Int) {
        for xi in 0..<points {
            Blas.gemm(false, false, outRows, columns, inRows, 1, kt + xi * outRows * inRows, inRows,
                      it + xi * inRows * ld, ld, 0, ot + xi * outRows * ld, ld)
        }
    }

    /// The products of the backward pass for every point: dKt_xi = beta dKt_xi + dOt_xi
    /// It_xi^T, then dIt_xi = Kt_xi^T dOt_xi written over It_xi.
    public func backwardProducts(_ kt: UnsafePointer<Float>, _ dot: UnsafePointer<Float>,
                                 _ it: UnsafeMutablePointer<Float>, beta: Float, into dkt: UnsafeMutablePointer<Float>,
                                 outRows: Int, inRows: Int, columns: Int, ld: Int) {
        let plane = outRows * inRows
        for xi in 0..<points {
            Blas.gemm(false, true, outRows, inRows, columns, 1, dot + xi * outRows * ld, ld,
                      it + xi * inRows * ld, ld, beta, dkt + xi * plane, inRows)
            Blas.gemm(true, false, inRows, columns, outRows, 1, kt + xi * plane, inRows,
                      dot + xi * outRows * ld, ld, 0, it + xi * inRows * ld, ld)
        }
    }

    /// Zt_xi (points x channels x ld) from `images` images of z: channel c of image n is the
    /// height x width plane at z + c * channelStride + n * imageStride.
    public func inputTransform(_ z: UnsafePointer<Float>, channels: Int, channelStride: Int, imageStride: Int,
                               images: Int, into zt: UnsafeMutablePointer<Float>, ld: Int) {
        if m == 2 {
            inputTransformF23(z, channels: channels, channelStride: channelStride, imageStride: imageStride,
                              images: images, into: zt, ld: ld)
        } else {
            inputTransformF43(z, channels: channels, channelStride: channelStride, imageStride: imageStride,
                              images: images, into: zt, ld: ld)
        }
    }

    /// y (NCHW, `channels` channels, for `images` images) from Yt_xi (points x channels x ld),
    /// plus bias.
    public func outputTransform(_ yt: UnsafePointer<Float>, channels: Int, ld: Int, images: Int,
                                bias: UnsafePointer<Float>?, into y: UnsafeMutablePointer<Float>) {
        if m == 2 {
            outputTransformF23(yt, channels: channels, ld: ld, images: images, bias: bias, into: y)
        } else {
            outputTransformF43(yt, channels: channels, ld: ld, images: images, bias: bias, into: y)
        }
    }

    /// dYt_xi (points x channels x ld) from the output gradient g (NCHW, `images` images).
    public func gradOutputTransform(_ g: UnsafePointer<Float>, channels: Int, images: Int,
                                    into dyt: UnsafeMutablePointer<Float>, ld: Int) {
        if m == 2 {
            gradOutputTransformF23(g, channels: channels, images: images, into: dyt, ld: ld)
        } else {
            gradOutputTransformF43(g, channels: channels, images: images, into: dyt, ld: ld)
        }
    }

    /// dz (overwritten: channels x images planes as in `inputTransform`) from dZt_xi
    /// (points x channels x ld): dz[m t - ph + k] += sum_xi B^T[xi, k] dZt_xi over the tiles.
    public func gradInputTransform(_ dzt: UnsafePointer<Float>, channels: Int, ld: Int, images: Int,
                                   into dz: UnsafeMutablePointer<Float>, channelStride: Int, imageStride: Int) {
        if m == 2 {
            gradInputTransformF23(dzt, channels: channels, ld: ld, images: images, into: dz,
                                  channelStride: channelStride, imageStride: imageStride)
        } else {
            gradInputTransformF43(dzt, channels: channels, ld: ld, images: images, into: dz,
                                  channelStride: channelStride, imageStride: imageStride)
        }
    }
}
