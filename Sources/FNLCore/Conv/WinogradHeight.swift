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

        /// F(4, 3) where it was measured faster: at least 16 output rows, products with at least
        /// 64 rows on both sides (`rows`: the smaller side) and fewer products than F(2, 3).
        /// Elsewhere its larger transforms (3 to 5 rows per transformed row, against 1 to 3)
        /// cost more than the quarter of the multiplications it saves: fwd+bwd on the 2-core
        /// EPYC, 1 thread, F(4, 3) over F(2, 3): dense C=64 H=W=16 and 32 1.10x-1.16x, low-rank
        /// C=64 r=64 H=W=16 and 32 1.04x; H=W=8 0.88x-0.98x, C=16 H=W=32 0.92x-0.99x, r=19 0.95x-0.99x.
        public static func preferred(outHeight: Int, rows: Int) -> Transform {
            let f2 = f23.points * ((outHeight + 1) / 2), f4 = f43.points * ((outHeight + 3) / 4)
            return outHeight >= 16 && rows >= 64 && f4 < f2 ? f43 : f23
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

    /// `tile`: 2 or 4 forces F(2, 3) or F(4, 3); nil takes `Transform.preferred` for products
    /// whose smaller side has `rows` rows.
    public init(_ axis: ConvAxis, width: Int, rows: Int, tile: Int? = nil) {
        height = axis.size; outHeight = axis.output; padding = axis.padding; self.width = width
        switch tile {
        case 2?: transform = .f23
        case 4?: transform = .f43
        default: transform = .preferred(outHeight: axis.output, rows: rows)
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

    /// Tiles whose input row m t - ph + k exists (0 <= row < height).
    private func tilesReading(row k: Int) -> Range<Int> {
        let lo = max(0, ceilDiv(padding - k, m)), hi = min(tiles, floorDiv(height - 1 + padding - k, m) + 1)
        return lo..<max(lo, hi)
    }

    /// Tiles whose output row m t + i exists (< outHeight).
    private func tilesWriting(row i: Int) -> Range<Int> { 0..<max(0, min(tiles, floorDiv(outHeight - 1 - i, m) + 1)) }

    /// One pass of a transform: output row `output` over `tiles` from `terms`.
    struct Pass {
        let output: Int
        let terms: RowTerms
        let tiles: Range<Int>
    }

    /// The passes of a transform: for each output, the tiles where every input row of its
    /// combination exists in one pass, the others (at most a few at each end) one by one with
    /// only their existing rows. `coefficient(out, k)` is the matrix entry, `offset(k)` the
    /// source offset of input row k, and `exists(k, t)` whether row k exists for tile t.
    private func passes(outputs: Int, inputs: Int, coefficient: (Int, Int) -> Float, offset: (Int) -> Int,
                        exists: (Int, Int) -> Bool, accumulate: Bool = false) -> [Pass] {
        var result: [Pass] = []
        for o in 0..<outputs {
            let used = (0..<inputs).filter { coefficient(o, $0) != 0 }
            let full = (0..<tiles).map { t in used.allSatisfy { exists($0, t) } }
            var t = 0
            while t < tiles {
                var terms = RowTerms(accumulate: accumulate)
                var end = t + 1
                if full[t] {
                    while end < tiles && full[end] { end += 1 }
                    for k in used { terms.append(offset(k), coefficient(o, k)) }
                } else {
                    for k in used where exists(k, t) { terms.append(offset(k), coefficient(o, k)) }
                }
                result.append(Pass(output: o, terms: terms, tiles: t..<end))
                t = end
            }
        }
        return result
    }

    /// Runs `passes` on one plane: output row o of the tiles starts at out + o * outputStride,
    /// tiles `stride` apart; sources `sourceStride` apart per tile.
    @inline(__always)
    private func run(_ passes: UnsafeBufferPointer<Pass>, _ src: UnsafePointer<Float>, _ out: UnsafeMutablePointer<Float>,
                     outputStride: Int, stride: Int, sourceStride: Int, constant: Float = 0) {
        for pass in passes {
            pass.terms.apply(src, to: out + pass.output * outputStride, stride: stride, sourceStride: sourceStride,
                             tiles: pass.tiles, count: width, constant: constant)
        }
    }

    /// Zt_xi (points x channels x ld) from `images` images of z: channel c of image n is the
    /// height x width plane at z + c * channelStride + n * imageStride.
    public func inputTransform(_ z: UnsafePointer<Float>, channels: Int, channelStride: Int, imageStride: Int,
                               images: Int, into zt: UnsafeMutablePointer<Float>, ld: Int) {
        let w = width, p = points, bt = transform.bt
        let reads = (0..<p).map { tilesReading(row: $0) }
        let plan = passes(outputs: p, inputs: p, coefficient: { bt[$0 * p + $1] }, offset: { ($0 - padding) * w },
                          exists: { reads[$0].contains($1) })
        plan.withUnsafeBufferPointer { plan in
            for c in 0..<channels {
                for n in 0..<images {
                    run(plan, z + c * channelStride + n * imageStride, zt + c * ld + n * columnsPerImage,
                        outputStride: channels * ld, stride: w, sourceStride: m * w)
                }
            }
        }
    }

    /// y (NCHW, `channels` channels, for `images` images) from Yt_xi (points x channels x ld),
    /// plus bias.
    public func outputTransform(_ yt: UnsafePointer<Float>, channels: Int, ld: Int, images: Int,
                                bias: UnsafePointer<Float>?, into y: UnsafeMutablePointer<Float>) {
        let w = width, point = channels * ld, outPlane = outHeight * w, p = points, at = transform.at
        let writes = (0..<m).map { tilesWriting(row: $0) }
        let plan = passes(outputs: m, inputs: p, coefficient: { at[$0 * p + $1] }, offset: { $0 * point },
                          exists: { _, _ in true }).map {
            Pass(output: $0.output, terms: $0.terms, tiles: $0.tiles.clamped(to: writes[$0.output]))
        }
        plan.withUnsafeBufferPointer { plan in
            for n in 0..<images {
                for o in 0..<channels {
                    run(plan, yt + o * ld + n * columnsPerImage, y + (n * channels + o) * outPlane,
                        outputStride: w, stride: m * w, sourceStride: w, constant: bias?[o] ?? 0)
                }
            }
        }
    }

    /// dYt_xi (points x channels x ld) from the output gradient g (NCHW, `images` images).
    public func gradOutputTransform(_ g: UnsafePointer<Float>, channels: Int, images: Int,
                                    into dyt: UnsafeMutablePointer<Float>, ld: Int) {
        let w = width, outPlane = outHeight * w, p = points, at = transform.at
        let writes = (0..<m).map { tilesWriting(row: $0) }
        let plan = passes(outputs: p, inputs: m, coefficient: { at[$1 * p + $0] }, offset: { $0 * w },
                          exists: { writes[$0].contains($1) })
        plan.withUnsafeBufferPointer { plan in
            for n in 0..<images {
                for o in 0..<channels {
                    run(plan, g + (n * channels + o) * outPlane, dyt + o * ld + n * columnsPerImage,
                        outputStride: channels * ld, stride: w, sourceStride: m * w)
                }
            }
        }
    }

    /// dz (overwritten: channels x images planes as in `inputTransform`) from dZt_xi
    /// (points x channels x ld): dz[m t - ph + k] += sum_xi B^T[xi, k] dZt_xi over the tiles.
    /// Rows of one k are m apart, so the tiles of one pass never write the same row.
    public func gradInputTransform(_ dzt: UnsafePointer<Float>, channels: Int, ld: Int, images: Int,
                                   into dz: UnsafeMutablePointer<Float>, channelStride: Int, imageStride: Int) {
        let w = width, point = channels * ld, p = points, bt = transform.bt
        let reads = (0..<p).map { tilesReading(row: $0) }
        let plan = passes(outputs: p, inputs: p, coefficient: { bt[$1 * p + $0] }, offset: { $0 * point },
                          exists: { _, _ in true }, accumulate: true).map {
            Pass(output: $0.output, terms: $0.terms, tiles: $0.tiles.clamped(to: reads[$0.output]))
        }
        plan.withUnsafeBufferPointer { plan in
            for c in 0..<channels {
                for n in 0..<images {
                    let plane = dz + c * channelStride + n * imageStride
                    plane.update(repeating: 0, count: height * w)
                    run(plan, dzt + c * ld + n * columnsPerImage, plane - padding * w,
                        outputStride: w, stride: m * w, sourceStride: w)
                }
            }
        }
    }
}

/// A linear combination of rows at fixed offsets from a source, applied over tiles: for each
/// tile t,
///
///     out[t * stride + i] (=, or += when accumulating) constant + sum_j c_j src[offset_j + t * sourceStride + i]
///
/// for i < count, in passes of at most three rows. Holds at most 6 rows (Winograd F(4, 3)).
struct RowTerms {
    private var offsets: (Int, Int, Int, Int, Int, Int) = (0, 0, 0, 0, 0, 0)
    private var coefs: (Float, Float, Float, Float, Float, Float) = (0, 0, 0, 0, 0, 0)
    private(set) var count = 0
    let constant: Float
    let accumulate: Bool

    init(constant: Float = 0, accumulate: Bool = false) {
        self.constant = constant; self.accumulate = accumulate
    }

    mutating func append(_ offset: Int, _ coef: Float) {
        precondition(count < 6, "RowTerms holds at most 6 rows")
        withUnsafeMutableBytes(of: &offsets) { $0.bindMemory(to: Int.self)[count] = offset }
        withUnsafeMutableBytes(of: &coefs) { $0.bindMemory(to: Float.self)[count] = coef }
        count += 1
    }

    private func offset(_ j: Int) -> Int { withUnsafeBytes(of: offsets) { $0.bindMemory(to: Int.self)[j] } }
    private func coef(_ j: Int) -> Float { withUnsafeBytes(of: coefs) { $0.bindMemory(to: Float.self)[j] } }

    /// `constant` (if given) replaces the stored one.
    func apply(_ src: UnsafePointer<Float>, to out: UnsafeMutablePointer<Float>, stride: Int, sourceStride: Int,
               tiles: Range<Int>, count n: Int, constant given: Float? = nil) {
        if tiles.isEmpty { return }
        let constant = given ?? self.constant
        if count == 0 {
            if accumulate && constant == 0 { return }
            for t in tiles {
                let o = out + t * stride
                if accumulate { for i in 0..<n { o[i] += constant } } else { o.update(repeating: constant, count: n) }
            }
            return
        }
        var j = 0, add = accumulate
        while j < count {
            // Up to three rows per pass; a missing second or third row repeats the first with
            // coefficient 0 (finite, as the first row is a term of the sum anyway).
            let take = min(3, count - j), b = add ? 0 : constant
            let a0 = src + offset(j), c0 = coef(j)
            let (a1, c1) = take > 1 ? (src + offset(j + 1), coef(j + 1)) : (a0, 0)
            let (a2, c2) = take > 2 ? (src + offset(j + 2), coef(j + 2)) : (a0, 0)
            for t in tiles {
                let k = t * sourceStride
                RowTerms.combine(out + t * stride, n, add: add, b, a0 + k, c0, a1 + k, c1, a2 + k, c2)
            }
            j += take
            add = true
        }
    }

    /// o[i] (= b +, or +=) c0 s0[i] + c1 s1[i] + c2 s2[i] for i < n, in explicit SIMD8 / SIMD4
    /// steps: rows are short (the image width), too short for the compiler's runtime alias
    /// checks to pay.
    @inline(__always)
    static func combine(_ o: UnsafeMutablePointer<Float>, _ n: Int, add: Bool, _ b: Float,
                        _ s0: UnsafePointer<Float>, _ c0: Float, _ s1: UnsafePointer<Float>, _ c1: Float,
                        _ s2: UnsafePointer<Float>, _ c2: Float) {
        var i = 0
        while i + 8 <= n {
            var v = SIMD8(repeating: c0) * load8(s0 + i) + SIMD8(repeating: c1) * load8(s1 + i)
                + SIMD8(repeating: c2) * load8(s2 + i)
            v += add ? load8(o + i) : SIMD8(repeating: b)
            UnsafeMutableRawPointer(o + i).storeBytes(of: v, as: SIMD8<Float>.self)
            i += 8
        }
        if i + 4 <= n {
            var v = SIMD4(repeating: c0) * load4(s0 + i) + SIMD4(repeating: c1) * load4(s1 + i)
                + SIMD4(repeating: c2) * load4(s2 + i)
            v += add ? load4(o + i) : SIMD4(repeating: b)
            UnsafeMutableRawPointer(o + i).storeBytes(of: v, as: SIMD4<Float>.self)
            i += 4
        }
        while i < n {
            let v = c0 * s0[i] + c1 * s1[i] + c2 * s2[i]
            o[i] = add ? o[i] + v : b + v
            i += 1
        }
    }

    @inline(__always) private static func load8(_ p: UnsafePointer<Float>) -> SIMD8<Float> {
        UnsafeRawPointer(p).loadUnaligned(as: SIMD8<Float>.self)
    }

    @inline(__always) private static func load4(_ p: UnsafePointer<Float>) -> SIMD4<Float> {
        UnsafeRawPointer(p).loadUnaligned(as: SIMD4<Float>.self)
    }
}

@inline(__always) private func floorDiv(_ a: Int, _ b: Int) -> Int { a >= 0 ? a / b : -((-a + b - 1) / b) }
@inline(__always) private func ceilDiv(_ a: Int, _ b: Int) -> Int { -floorDiv(-a, b) }
