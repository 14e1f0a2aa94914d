/// The Winograd mode of `DenseConv` (kh = 3, height stride and dilation 1): a dense kernel is a
/// 1 x kw convolution followed by a 3 x 1 one whose "rank" is c_in*kw with the identity as the
/// first factor, so
///
///     L1 = the width lowering of x (rows (c, b), columns (n, h, ow): no height taps),
///     y  = sum_a K_a L1[rows, h - ph + a]   with   K_a[o, c*kw + b] = K[o, c, a, b],
///
/// and the height taps run as Winograd F(2, 3) or F(4, 3) (`WinogradHeight`): 4 products of
/// c_out x c_in*kw per two output rows instead of 6 (or 6 per four instead of 12), 1.5x (2x)
/// fewer multiplications than the full lowering, which also writes 3x instead of 9x the input. Backward: dK from the Winograd
/// kernel gradient, dx = lift1 of the Winograd input gradient.
extension DenseConv {
    /// A'[o, a*rows + c*kw + b] = K[o, c, a, b] (rows = c_in*kw), the layout of `WinogradHeight`.
    static func heightMajor(_ k: UnsafePointer<Float>, _ g: ConvGeometry, into a: UnsafeMutablePointer<Float>) {
        let rows = g.cIn * g.kw
        for o in 0..<g.cOut { for c in 0..<g.cIn { for t in 0..<g.kh { for b in 0..<g.kw {
            a[o * g.kh * rows + t * rows + c * g.kw + b] = k[((o * g.cIn + c) * g.kh + t) * g.kw + b]
        } } } }
    }

    /// The inverse of `heightMajor`.
    static func kernelMajor(_ a: UnsafePointer<Float>, _ g: ConvGeometry, into k: UnsafeMutablePointer<Float>) {
        let rows = g.cIn * g.kw
        for o in 0..<g.cOut { for c in 0..<g.cIn { for t in 0..<g.kh { for b in 0..<g.kw {
            k[((o * g.cIn + c) * g.kh + t) * g.kw + b] = a[o * g.kh * rows + t * rows + c * g.kw + b]
        } } } }
    }

    /// L1 of images n0..<n0+nb as (start, channel stride, image stride): x itself when the
    /// width axis is the identity, else lowered into `buffer`.
    static func widthLowered(_ p: Plan, _ x: UnsafePointer<Float>, images nb: Int,
                             buffer: UnsafeMutablePointer<Float>) -> (UnsafePointer<Float>, Int, Int) {
        let g = p.geometry
        if p.widthLowering.cols.isIdentity { return (x, g.inPlane, g.cIn * g.inPlane) }
        p.widthLowering.lower(x, images: nb, into: buffer, ld: p.ldWidth)
        return (UnsafePointer(buffer), p.ldWidth, g.h.size * g.w.output)
    }

    static func forwardWinograd(_ p: Plan, x: UnsafePointer<Float>, kernel k: UnsafePointer<Float>,
                                bias: UnsafePointer<Float>?, y: UnsafeMutablePointer<Float>,
                                workspace s: [UnsafeMutablePointer<Float>]) throws -> Bool {
        guard let wino = p.winograd else { return true }
        let g = p.geometry, rows = g.cIn * g.kw, ldT = p.ldT
        return try withScratch([g.cOut * 3 * rows, wino.points * g.cOut * rows], "the Winograd kernel") { ks in
            let (a, kt) = (ks[0], ks[1])
            heightMajor(k, g, into: a)
            wino.kernelTransform(a, cOut: g.cOut, rank: rows, into: kt)
            return p.split.runCheckingOutput(y, perImage: g.cOut * g.outPlane) { w, n0, nb in
                let (l1, it, ot) = (s[Plan.parts * w], s[Plan.parts * w + 1], s[Plan.parts * w + 2])
                let nT = nb * wino.columnsPerImage
                let (src, cs, ims) = widthLowered(p, x + n0 * g.cIn * g.inPlane, images: nb, buffer: l1)
                wino.inputTransform(src, channels: rows, channelStride: cs, imageStride: ims, images: nb, into: it, ld: ldT)
                wino.forwardProducts(kt, it, into: ot, outRows: g.cOut, inRows: rows, columns: nT, ld: ldT)
                wino.outputTransform(ot, channels: g.cOut, ld: ldT, images: nb, bias: bias,
                                     into: y + n0 * g.cOut * g.outPlane)
            }
        }
    }

    static func backwardWinograd(_ p: Plan, gradOutput gy: UnsafePointer<Float>, x: UnsafePointer<Float>,
                                 kernel k: UnsafePointer<Float>, dx: UnsafeMutablePointer<Float>,
                                 dKernel dk: UnsafeMutablePointer<Float>, dbias: UnsafeMutablePointer<Float>?,
                                 workspace s: [UnsafeMutablePointer<Float>]) throws {
        guard let wino = p.winograd else { return }
        let g = p.geometry, rows = g.cIn * g.kw, ldT = p.ldT, split = p.split
        let ktCount = wino.points * g.cOut * rows
        try withScratch([g.cOut * 3 * rows, ktCount, split.workers * ktCount], "the Winograd kernel") { ks in
            let (a, kt, dKtAll) = (ks[0], ks[1], ks[2])
            heightMajor(k, g, into: a)
            wino.kernelTransform(a, cOut: g.cOut, rank: rows, into: kt)
            try withDoubleScratch(BiasAccumulator.scratchCount(channels: g.cOut, split: split),
                                  enabled: dbias != nil, "the bias gradient") { sums in
                let biasSums = BiasAccumulator(channels: g.cOut, split: split, scratch: sums)
                split.run { w, n0, nb in
                    let (l1, it, dot) = (s[Plan.parts * w], s[Plan.parts * w + 1], s[Plan.parts * w + 2])
                    let nT = nb * wino.columnsPerImage, dKtw = dKtAll + w * ktCount
                    let gyc = gy + n0 * g.cOut * g.outPlane
                    let xc = x + n0 * g.cIn * g.inPlane, dxc = dx + n0 * g.cIn * g.inPlane
                    let beta: Float = n0 == split.images(w).lowerBound ? 0 : 1
                    biasSums.add(worker: w, gyc, plane: g.outPlane, images: nb)
                    let (src, cs, ims) = widthLowered(p, xc, images: nb, buffer: l1)
                    wino.inputTransform(src, channels: rows, channelStride: cs, imageStride: ims, images: nb, into: it, ld: ldT)
                    wino.gradOutputTransform(gyc, channels: g.cOut, images: nb, into: dot, ld: ldT)
                    wino.backwardProducts(kt, dot, it, beta: beta, into: dKtw, outRows: g.cOut, inRows: rows,
                                                    columns: nT, ld: ldT)
                    if p.widthLowering.cols.isIdentity {
                        wino.gradInputTransform(it, channels: rows, ld: ldT, images: nb, into: dxc,
                                                channelStride: g.inPlane, imageStride: g.cIn * g.inPlane)
                    } else {
                        wino.gradInputTransform(it, channels: rows, ld: ldT, images: nb, into: l1,
                                                channelStride: p.ldWidth, imageStride: g.h.size * g.w.output)
                        p.widthLowering.liftAdd(l1, images: nb, ld: p.ldWidth, into: dxc)
                    }
                }
                split.reduce(dKtAll + ktCount, count: ktCount, into: dKtAll)
                wino.kernelGradientTransform(dKtAll, cOut: g.cOut, rank: rows, into: a)
                kernelMajor(a, g, into: dk)
                if let dbias { biasSums.write(dbias) }
            }
        }
    }
}
