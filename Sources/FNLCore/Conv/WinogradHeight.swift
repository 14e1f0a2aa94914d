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

        /// F(4, 3) where it was measured faster: at least 16 output rows, products of
        /// `outRows` x `inRows` with inRows >= 128 and outRows >= 64, and fewer products than
        /// F(2, 3). Elsewhere its larger transforms (3 to 5 rows per transformed row, against 1
        /// to 3) cost about what the quarter of the multiplications saves. Measured fwd+bwd on
        /// the 2-core EPYC, F(4, 3) over F(2, 3): dense C=64 (64 x 192 products) H=W=16 and 32
        /// 1.10x-1.16x at 1 thread, 0.93x-1.15x at 2; low-rank r = C = 64 (64 x 64) H=W=16 and
        /// 32 0.96x-1.00x; H=W=8 0.86x-0.98x; C=16 H=W=32 0.82x-0.95x.
        public static func preferred(outHeight: Int, outRows: Int, inRows: Int) -> Transform {
            let f2 = f23.points * ((outHeight + 1) / 2), f4 = f43.points * ((outHeight + 3) / 4)
            return outHeight >= 16 && inRows >= 128 && outRows >= 64 && f4 < f2 ? f43 : f23
        }
    }

    /// Input rows, output rows, row width (the stage's W: the width-stage output), padding.
    public let height: Int
    public let outHeight: Int
    public let width: Int
    public let padding: Int
    public let transform: Transform
    /// The passes of the four row transforms of the generic form (they depend only on the axis
    /// and the tile size); nil for F(2, 3), whose transforms are written out
    /// (`WinogradHeight+F23.swift`), so that its plans are never built.
    private let plans: Plans?

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

    /// `tile`: 2 or 4 forces F(2, 3) or F(4, 3); nil takes `Transform.preferred` for products
    /// of `outRows` x `inRows` (c_out x r).
    public init(_ axis: ConvAxis, width: Int, outRows: Int, inRows: Int, tile: Int? = nil) {
        height = axis.size; outHeight = axis.output; padding = axis.padding; self.width = width
        switch tile {
        case 2?: transform = .f23
        case 4?: transform = .f43
        default: transform = .preferred(outHeight: axis.output, outRows: outRows, inRows: inRows)
        }
        plans = transform.m == 2 ? nil : Plans(transform, height: axis.size, outHeight: axis.output, padding: axis.padding)
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

    /// Runs `passes` on one plane: input row k of the combinations starts at src + k * rowStride,
    /// output row o at out + o * outputStride; tiles `stride` apart in the output and
    /// `sourceStride` apart in the source.
    @inline(__always)
    private func run(_ passes: UnsafeBufferPointer<RowPass>, _ src: UnsafePointer<Float>, rowStride: Int,
                     _ out: UnsafeMutablePointer<Float>, outputStride: Int, stride: Int, sourceStride: Int,
                     constant: Float = 0) {
        for pass in passes {
            pass.apply(src, rowStride: rowStride, to: out + pass.output * outputStride, stride: stride,
                       sourceStride: sourceStride, count: width, constant: constant)
        }
    }

    /// Zt_xi (points x channels x ld) from `images` images of z: channel c of image n is the
    /// height x width plane at z + c * channelStride + n * imageStride.
    public func inputTransform(_ z: UnsafePointer<Float>, channels: Int, channelStride: Int, imageStride: Int,
                               images: Int, into zt: UnsafeMutablePointer<Float>, ld: Int) {
        guard let plans else {
            return inputTransformF23(z, channels: channels, channelStride: channelStride, imageStride: imageStride,
                                     images: images, into: zt, ld: ld)
        }
        let w = width
        plans.input.withUnsafeBufferPointer { plan in
            for c in 0..<channels {
                for n in 0..<images {
                    run(plan, z + c * channelStride + n * imageStride - padding * w, rowStride: w,
                        zt + c * ld + n * columnsPerImage, outputStride: channels * ld, stride: w, sourceStride: m * w)
                }
            }
        }
    }

    /// y (NCHW, `channels` channels, for `images` images) from Yt_xi (points x channels x ld),
    /// plus bias.
    public func outputTransform(_ yt: UnsafePointer<Float>, channels: Int, ld: Int, images: Int,
                                bias: UnsafePointer<Float>?, into y: UnsafeMutablePointer<Float>) {
        guard let plans else {
            return outputTransformF23(yt, channels: channels, ld: ld, images: images, bias: bias, into: y)
        }
        let w = width, outPlane = outHeight * w
        plans.output.withUnsafeBufferPointer { plan in
            for n in 0..<images {
                for o in 0..<channels {
                    run(plan, yt + o * ld + n * columnsPerImage, rowStride: channels * ld,
                        y + (n * channels + o) * outPlane, outputStride: w, stride: m * w, sourceStride: w,
                        constant: bias?[o] ?? 0)
                }
            }
        }
    }

    /// dYt_xi (points x channels x ld) from the output gradient g (NCHW, `images` images).
    public func gradOutputTransform(_ g: UnsafePointer<Float>, channels: Int, images: Int,
                                    into dyt: UnsafeMutablePointer<Float>, ld: Int) {
        guard let plans else { return gradOutputTransformF23(g, channels: channels, images: images, into: dyt, ld: ld) }
        let w = width, outPlane = outHeight * w
        plans.gradOutput.withUnsafeBufferPointer { plan in
            for n in 0..<images {
                for o in 0..<channels {
                    run(plan, g + (n * channels + o) * outPlane, rowStride: w,
                        dyt + o * ld + n * columnsPerImage, outputStride: channels * ld, stride: w, sourceStride: m * w)
                }
            }
        }
    }

    /// dz (overwritten: channels x images planes as in `inputTransform`) from dZt_xi
    /// (points x channels x ld): dz[m t - ph + k] += sum_xi B^T[xi, k] dZt_xi over the tiles.
    public func gradInputTransform(_ dzt: UnsafePointer<Float>, channels: Int, ld: Int, images: Int,
                                   into dz: UnsafeMutablePointer<Float>, channelStride: Int, imageStride: Int) {
        guard let plans else {
            return gradInputTransformF23(dzt, channels: channels, ld: ld, images: images, into: dz,
                                         channelStride: channelStride, imageStride: imageStride)
        }
        let w = width
        plans.gradInput.withUnsafeBufferPointer { plan in
            for c in 0..<channels {
                for n in 0..<images {
                    let plane = dz + c * channelStride + n * imageStride
                    plane.update(repeating: 0, count: height * w)
                    run(plan, dzt + c * ld + n * columnsPerImage, rowStride: channels * ld,
                        plane - padding * w, outputStride: w, stride: m * w, sourceStride: w)
                }
            }
        }
    }

    /// The passes of the four row transforms, by output row of each transform: consecutive
    /// tiles for which the same input rows of the combination exist go together, with only
    /// those rows (the others are zero padding).
    struct Plans {
        let input: [RowPass], output: [RowPass], gradOutput: [RowPass], gradInput: [RowPass]

        init(_ f: Transform, height: Int, outHeight: Int, padding: Int) {
            let m = f.m, p = f.points, tiles = (outHeight + m - 1) / m
            // Tiles whose input row m t - ph + k exists, and whose output row m t + i exists.
            let reads = (0..<p).map { k in
                let lo = max(0, ceilDiv(padding - k, m)), hi = min(tiles, floorDiv(height - 1 + padding - k, m) + 1)
                return lo..<max(lo, hi)
            }
            let writes = (0..<m).map { i in 0..<max(0, min(tiles, floorDiv(outHeight - 1 - i, m) + 1)) }
            let all = 0..<tiles
            // Zt_xi = sum_k B^T[xi, k] d_k (rows k that exist).
            input = Plans.passes(outputs: p, inputs: p, tiles: all, coefficient: { f.bt[$0 * p + $1] },
                                 exists: { reads[$0] }, limit: { _ in all })
            // y[m t + i] = sum_xi A^T[i, xi] Yt_xi (output rows that exist).
            output = Plans.passes(outputs: m, inputs: p, tiles: all, coefficient: { f.at[$0 * p + $1] },
                                  exists: { _ in all }, limit: { writes[$0] })
            // dYt_xi = sum_i A^T[i, xi] g[m t + i] (output rows that exist).
            gradOutput = Plans.passes(outputs: p, inputs: m, tiles: all, coefficient: { f.at[$1 * p + $0] },
                                      exists: { writes[$0] }, limit: { _ in all })
            // dz[m t - ph + k] += sum_xi B^T[xi, k] dZt_xi (input rows that exist); the rows of
            // one k are m apart, so the tiles of one pass never write the same row.
            gradInput = Plans.passes(outputs: p, inputs: p, tiles: all, coefficient: { f.bt[$1 * p + $0] },
                                     exists: { _ in all }, limit: { reads[$0] }, accumulate: true)
        }

        /// `coefficient(out, k)` is the matrix entry, `exists(k)` the tiles for which input row
        /// k exists, `limit(out)` the tiles that have output `out`. The set of existing rows
        /// changes only at the ends of those ranges, so there are O(points) passes, however
        /// many tiles.
        static func passes(outputs: Int, inputs: Int, tiles: Range<Int>, coefficient: (Int, Int) -> Float,
                           exists: (Int) -> Range<Int>, limit: (Int) -> Range<Int>, accumulate: Bool = false) -> [RowPass] {
            var result: [RowPass] = []
            for o in 0..<outputs {
                let used = (0..<inputs).filter { coefficient(o, $0) != 0 }
                let range = limit(o).clamped(to: tiles)
                var cuts = Set([range.lowerBound, range.upperBound])
                for k in used {
                    let e = exists(k).clamped(to: range)
                    cuts.insert(e.lowerBound); cuts.insert(e.upperBound)
                }
                let bounds = cuts.sorted()
                for (lo, hi) in zip(bounds, bounds.dropFirst()) where lo < hi {
                    let rows = used.filter { exists($0).contains(lo) }.map { ($0, coefficient(o, $0)) }
                    result += RowPass.passes(output: o, tiles: lo..<hi, rows: rows, accumulate: accumulate)
                }
            }
            return result
        }
    }
}

/// One pass of a linear combination of rows over a range of tiles: for each tile t,
///
///     out[t * stride + i] (=, or += when `add`) c0 src[k0 * rowStride + t * sourceStride + i] + ...
///
/// for i < count and `rows` (0 to 3) terms, plus the caller's constant (the bias) on the first
/// pass of an output that is not accumulated. Combinations of more rows are several passes.
struct RowPass {
    let output: Int
    let tiles: Range<Int>
    let rows: Int
    let k0: Int, k1: Int, k2: Int
    let c0: Float, c1: Float, c2: Float
    let add: Bool

    /// The passes of out (=, or += when `accumulate`) sum_j c_j row_{k_j}, `rows` as (k_j, c_j).
    static func passes(output: Int, tiles: Range<Int>, rows: [(Int, Float)], accumulate: Bool) -> [RowPass] {
        if rows.isEmpty {
            return accumulate ? [] : [RowPass(output: output, tiles: tiles, rows: 0, k0: 0, k1: 0, k2: 0,
                                              c0: 0, c1: 0, c2: 0, add: false)]
        }
        return Swift.stride(from: 0, to: rows.count, by: 3).map { j in
            let g = Array(rows[j..<min(j + 3, rows.count)])
            let term = { (k: Int) in k < g.count ? g[k] : (g[0].0, Float(0)) }
            return RowPass(output: output, tiles: tiles, rows: g.count, k0: term(0).0, k1: term(1).0, k2: term(2).0,
                           c0: term(0).1, c1: term(1).1, c2: term(2).1, add: accumulate || j > 0)
        }
    }

    @inline(__always)
    func apply(_ src: UnsafePointer<Float>, rowStride: Int, to out: UnsafeMutablePointer<Float>, stride: Int,
               sourceStride: Int, count n: Int, constant: Float) {
        let b = add ? 0 : constant
        let a0 = src + k0 * rowStride, a1 = src + k1 * rowStride, a2 = src + k2 * rowStride
        // One loop per number of rows, so that each is compiled without the unused ones.
        switch rows {
        case 0:
            for t in tiles { (out + t * stride).update(repeating: b, count: n) }
        case 1:
            for t in tiles {
                let k = t * sourceStride
                RowPass.combine(1, out + t * stride, n, add: add, b, a0 + k, c0, a1 + k, c1, a2 + k, c2)
            }
        case 2:
            for t in tiles {
                let k = t * sourceStride
                RowPass.combine(2, out + t * stride, n, add: add, b, a0 + k, c0, a1 + k, c1, a2 + k, c2)
            }
        default:
            for t in tiles {
                let k = t * sourceStride
                RowPass.combine(3, out + t * stride, n, add: add, b, a0 + k, c0, a1 + k, c1, a2 + k, c2)
            }
        }
    }

    /// o[i] (= b +, or +=) c0 s0[i] (+ c1 s1[i] (+ c2 s2[i])) for i < n with `rows` rows, in
    /// explicit SIMD8 / SIMD4 steps (the compiler leaves the plain loops scalar here: rows are
    /// short and the pointers may alias).
    @inline(__always)
    static func combine(_ rows: Int, _ o: UnsafeMutablePointer<Float>, _ n: Int, add: Bool, _ b: Float,
                        _ s0: UnsafePointer<Float>, _ c0: Float, _ s1: UnsafePointer<Float>, _ c1: Float,
                        _ s2: UnsafePointer<Float>, _ c2: Float) {
        var i = 0
        while i + 8 <= n {
            step(SIMD8<Float>.self, rows, o + i, add: add, b, s0 + i, c0, s1 + i, c1, s2 + i, c2)
            i += 8
        }
        if i + 4 <= n {
            step(SIMD4<Float>.self, rows, o + i, add: add, b, s0 + i, c0, s1 + i, c1, s2 + i, c2)
            i += 4
        }
        while i < n {
            var v = c0 * s0[i]
            if rows > 1 { v += c1 * s1[i] }
            if rows > 2 { v += c2 * s2[i] }
            o[i] = add ? o[i] + v : b + v
            i += 1
        }
    }

    /// One vector of `combine`: o[0..<V.scalarCount] from the rows, unaligned loads and stores.
    @inline(__always)
    private static func step<V: SIMD>(_: V.Type, _ rows: Int, _ o: UnsafeMutablePointer<Float>, add: Bool, _ b: Float,
                                      _ s0: UnsafePointer<Float>, _ c0: Float, _ s1: UnsafePointer<Float>, _ c1: Float,
                                      _ s2: UnsafePointer<Float>, _ c2: Float) where V.Scalar == Float {
        @inline(__always) func load(_ p: UnsafePointer<Float>) -> V { UnsafeRawPointer(p).loadUnaligned(as: V.self) }
        var v = V(repeating: c0) * load(s0)
        if rows > 1 { v += V(repeating: c1) * load(s1) }
        if rows > 2 { v += V(repeating: c2) * load(s2) }
        v += add ? load(o) : V(repeating: b)
        UnsafeMutableRawPointer(o).storeBytes(of: v, as: V.self)
    }
}

@inline(__always) private func floorDiv(_ a: Int, _ b: Int) -> Int { a >= 0 ? a / b : -((-a + b - 1) / b) }
@inline(__always) private func ceilDiv(_ a: Int, _ b: Int) -> Int { -floorDiv(-a, b) }
