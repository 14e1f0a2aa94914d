/// The fused low-rank path with both stages run as direct one-dimensional convolutions
/// (`AxisConv`: register-blocked, no lowering, no matrix-product packing), image by image on
/// each worker. With the split factors A' (c_out x kh*r, A'[o, a*r + j]) and B^T
/// (r x c_in*kw, B^T[j, c*kw + b]) of `LowRankConv`:
///
///     forward    z  = conv_w(x; B^T)                    (1 x kw, c_in -> r)
///                y  = conv_h(z; A') + bias              (kh x 1, r -> c_out)
///     backward   dz = conv_h'(G; A'~)                    A'~[j, o, t] = A'[o, (kh-1-t)*r + j], padding kh-1-ph
///                dx = conv_w'(dz; B~)                    B~[c, j, t] = B^T[j, c*kw + kw-1-t], padding kw-1-pw
///                dA'[o, a*r + j]    = sum_p G[o, p] z[j, p + (a - ph) rows]
///                dB^T[j, c*kw + b]  = sum_p dz[j, p] x[c, p + (b - pw) columns]
///
/// (the adjoint of a stride-1 convolution is the convolution with the flipped, transposed
/// kernel and the complementary padding). The forward pass runs image by image; the backward
/// pass by chunks of images, each kernel gradient summed over a whole chunk in one call. It
/// applies when both axes have stride 1, dilation 1 and padding at most kernel - 1, and is the
/// default there when the engine is compiled for 8-lane FMA (`FNL_HASWELL`). Measured on the
/// 2-core EPYC (2 threads, k=3, pad 1, saved intermediate), direct over the matrix-product
/// stages, forward / backward: N=128 C=16 H=W=32 r=5 1.71x / 1.71x, r=16 2.27x / 1.45x;
/// N=128 C=64 H=W=8 r=19 1.47x / 1.18x, r=64 1.34x / 1.11x; H=W=16 r=19 1.35x / 1.24x,
/// r=64 1.23x-1.33x / 0.97x-1.08x; N=64 C=64 H=W=32 r=19 1.18x / 1.09x, r=64 1.04x / 1.06x.
///
/// With `Plan.directWinograd` (kh = 3 with height stride and dilation 1, r and c_out >= 32 by
/// default) the kh x 1 stage, its adjoint and its kernel gradient run by Winograd instead
/// (`LowRankConv+DirectWinograd.swift`), and the forward pass runs by chunks of images too.
extension LowRankConv.Plan {
    /// Workspace parts of the direct forward pass (all workers), nil off the direct path.
    /// Image by image: z of one image and the scratch; with the Winograd height stage, by
    /// chunks: z of a chunk (always: the saved intermediate may be absent), the width stage's
    /// scratch, then the Winograd parts.
    var directForwardCounts: [Int]? {
        guard let direct, let split = directSplit else { return nil }
        let g = geometry
        guard let dw = directWinograd else {
            return batchSplit.replicate(direct.workerCounts(g, rank: rank, backward: false, chunk: 1))
        }
        return split.replicate([rank * midPlane * split.chunk, direct.width.scratchCount(inChannels: g.cIn, outChannels: rank)]
                               + dw.workerCounts(cOut: g.cOut, rank: rank, chunk: split.chunk))
    }

    /// Workspace parts of the direct backward pass (all workers), nil off the direct path:
    /// z and dz of a chunk, the scratch, then the Winograd parts (placeholders without).
    var directBackwardCounts: [Int]? {
        guard let direct, let split = directSplit else { return nil }
        return split.replicate(direct.workerCounts(geometry, rank: rank, backward: true, chunk: split.chunk)
                               + (directWinograd?.workerCounts(cOut: geometry.cOut, rank: rank, chunk: split.chunk)
                                  ?? [1, 1, 1]))
    }
}

extension LowRankConv {
    struct DirectStages {
        /// x planes (H x W) -> z planes (H x outW).
        let width: AxisConv
        /// z planes (H x outW) -> y planes (outH x outW).
        let height: AxisConv
        /// G planes (outH x outW) -> dz planes (H x outW).
        let heightAdjoint: AxisConv
        /// dz planes (H x outW) -> dx planes (H x W).
        let widthAdjoint: AxisConv

        /// Whether an axis qualifies (stride 1, dilation 1, padding <= kernel - 1).
        static func applies(_ a: ConvAxis) -> Bool {
            a.stride == 1 && a.dilation == 1 && a.padding <= a.kernel - 1 && a.kernel <= 16 && a.output >= 1
        }

        /// Whether the direct stages are the default where they apply.
        static var preferred: Bool {
            #if FNL_HASWELL
            return true
            #else
            return false
            #endif
        }

        init?(_ g: ConvGeometry) {
            guard Self.applies(g.h), Self.applies(g.w),
                  let width = try? AxisConv(axis: .width, rows: g.h.size, cols: g.w.size, kernel: g.kw, padding: g.w.padding),
                  let height = try? AxisConv(axis: .height, rows: g.h.size, cols: g.w.output, kernel: g.kh, padding: g.h.padding),
                  let heightAdjoint = try? AxisConv(axis: .height, rows: g.h.output, cols: g.w.output, kernel: g.kh,
                                                    padding: g.kh - 1 - g.h.padding),
                  let widthAdjoint = try? AxisConv(axis: .width, rows: g.h.size, cols: g.w.output, kernel: g.kw,
                                                   padding: g.kw - 1 - g.w.padding)
            else { return nil }
            self.width = width; self.height = height
            self.heightAdjoint = heightAdjoint; self.widthAdjoint = widthAdjoint
        }

        /// Floats of `AxisConv` scratch one worker needs for any of the four stages.
        func scratchCount(cIn: Int, rank r: Int, cOut: Int) -> Int {
            max(width.scratchCount(inChannels: cIn, outChannels: r), height.scratchCount(inChannels: r, outChannels: cOut),
                heightAdjoint.scratchCount(inChannels: cOut, outChannels: r),
                widthAdjoint.scratchCount(inChannels: r, outChannels: cIn))
        }

        /// Workspace parts of one worker: z (when not saved; one image forward, a chunk
        /// backward), dz of a chunk (backward only), the scratch.
        func workerCounts(_ g: ConvGeometry, rank r: Int, backward: Bool, chunk: Int) -> [Int] {
            let planes = ConvWorkspace.saturatingSumOfProducts([[r, g.h.size, g.w.output, backward ? chunk : 1]])
            return [planes, backward ? planes : 1, scratchCount(cIn: g.cIn, rank: r, cOut: g.cOut)]
        }

        /// Images per chunk of the backward pass: the chunk's z and dz within about 256 KiB (the
        /// kernel gradients sum over a whole chunk in one call).
        static let chunkFloats = 1 << 16
    }

    /// Forward pass of the direct fused path (see the top of this file); z goes to
    /// `intermediate` when given. Returns whether y is finite.
    static func forwardDirect(_ p: Plan, _ d: DirectStages, a: UnsafePointer<Float>, bt: UnsafePointer<Float>,
                              x: UnsafePointer<Float>, bias: UnsafePointer<Float>?, y: UnsafeMutablePointer<Float>,
                              intermediate: UnsafeMutablePointer<Float>?,
                              workspace: UnsafeMutablePointer<Float>?, workspaceCount: Int) throws -> Bool {
        let g = p.geometry, r = p.rank, mid = p.midPlane
        if let dw = p.directWinograd {
            return try forwardDirectWinograd(p, d, dw, a: a, bt: bt, x: x, bias: bias, y: y, intermediate: intermediate,
                                             workspace: workspace, workspaceCount: workspaceCount)
        }
        return try withScratch([d.width.packedCount(outChannels: r, inChannels: g.cIn),
                                d.height.packedCount(outChannels: g.cOut, inChannels: r)], "the packed stage kernels") { pk in
            d.width.pack(bt, outChannels: r, inChannels: g.cIn, outStride: p.colsW, inStride: g.kw, tapStride: 1, into: pk[0])
            d.height.pack(a, outChannels: g.cOut, inChannels: r, outStride: g.kh * r, inStride: 1, tapStride: r, into: pk[1])
            return try ConvWorkspace.with(p.forwardCounts, external: workspace, externalCount: workspaceCount,
                                          "the lowrank_conv2d forward pass") { s in
                p.batchSplit.runCheckingOutput(y, perImage: g.cOut * g.outPlane) { w, n0, nb in
                    let (zbuf, scratch) = (s[3 * w], s[3 * w + 2])
                    for n in n0..<(n0 + nb) {
                        let (z, zs) = intermediate.map { ($0 + n * mid, g.batch * mid) } ?? (zbuf, mid)
                        d.width.forward(pk[0], outChannels: r, inChannels: g.cIn, input: x + n * g.cIn * g.inPlane,
                                        inStride: g.inPlane, output: z, outStride: zs, bias: nil, scratch: scratch)
                        d.height.forward(pk[1], outChannels: g.cOut, inChannels: r, input: z, inStride: zs,
                                         output: y + n * g.cOut * g.outPlane, outStride: g.outPlane, bias: bias,
                                         scratch: scratch)
                    }
                }
            }
        }
    }

    /// Forward pass of the direct fused path with the height stage by Winograd: chunks of
    /// images, z of a chunk kept for the transform.
    static func forwardDirectWinograd(_ p: Plan, _ d: DirectStages, _ dw: DirectWinograd, a: UnsafePointer<Float>,
                                      bt: UnsafePointer<Float>, x: UnsafePointer<Float>, bias: UnsafePointer<Float>?,
                                      y: UnsafeMutablePointer<Float>, intermediate: UnsafeMutablePointer<Float>?,
                                      workspace: UnsafeMutablePointer<Float>?, workspaceCount: Int) throws -> Bool {
        let g = p.geometry, r = p.rank, mid = p.midPlane
        guard let split = p.directSplit else { throw FNLError.invalid("internal: the direct forward pass has no batch split") }
        return try withScratch([d.width.packedCount(outChannels: r, inChannels: g.cIn), dw.points * g.cOut * r,
                                dw.packedCount(cOut: g.cOut, rank: r)], "the packed stage kernels") { pk in
            d.width.pack(bt, outChannels: r, inChannels: g.cIn, outStride: p.colsW, inStride: g.kw, tapStride: 1, into: pk[0])
            dw.transform.kernelTransform(a, cOut: g.cOut, rank: r, into: pk[1])
            dw.pack(pk[1], cOut: g.cOut, rank: r, transposed: false, into: pk[2])
            return try ConvWorkspace.with(p.forwardCounts, external: workspace, externalCount: workspaceCount,
                                          "the lowrank_conv2d forward pass") { s in
                split.runCheckingOutput(y, perImage: g.cOut * g.outPlane) { w, n0, nb in
                    let (zbuf, widthScratch, zt, yt, scratch) = (s[5 * w], s[5 * w + 1], s[5 * w + 2], s[5 * w + 3], s[5 * w + 4])
                    let (z, zs, zi) = intermediate.map { ($0 + n0 * mid, g.batch * mid, mid) } ?? (zbuf, mid, r * mid)
                    for i in 0..<nb {
                        d.width.forward(pk[0], outChannels: r, inChannels: g.cIn, input: x + (n0 + i) * g.cIn * g.inPlane,
                                        inStride: g.inPlane, output: z + i * zi, outStride: zs, bias: nil,
                                        scratch: widthScratch)
                    }
                    dw.forward(pk[2], cOut: g.cOut, rank: r, z: z, channelStride: zs, imageStride: zi, images: nb,
                               bias: bias, y: y + n0 * g.cOut * g.outPlane, zt: zt, yt: yt, scratch: scratch)
                }
            }
        }
    }

    /// Backward pass of the direct fused path: dx, and dA' (c_out x kh*r) and dB^T
    /// (r x c_in*kw) into `dA` and `dBt` (summed per worker, then in worker order), dbias.
    static func backwardDirect(_ p: Plan, _ d: DirectStages, a: UnsafePointer<Float>, bt: UnsafePointer<Float>,
                               gradOutput gy: UnsafePointer<Float>, x: UnsafePointer<Float>,
                               intermediate: UnsafePointer<Float>?, dx: UnsafeMutablePointer<Float>,
                               dA: UnsafeMutablePointer<Float>, dBt: UnsafeMutablePointer<Float>,
                               dbias: UnsafeMutablePointer<Float>?,
                               workspace: UnsafeMutablePointer<Float>?, workspaceCount: Int) throws {
        let g = p.geometry, r = p.rank, mid = p.midPlane, cols = p.colsW, kr = g.kh * r
        guard let split = p.directSplit else { throw FNLError.invalid("internal: the direct backward pass has no batch split") }
        let partialsOf = max(split.workers - 1, 1)
        let dACount = g.cOut * kr, dBCount = r * cols
        let wino = p.directWinograd, ktCount = (wino?.points ?? 0) * g.cOut * r
        try withScratch([intermediate == nil ? d.width.packedCount(outChannels: r, inChannels: g.cIn) : 1,
                         wino == nil ? d.heightAdjoint.packedCount(outChannels: r, inChannels: g.cOut) : 1,
                         d.widthAdjoint.packedCount(outChannels: g.cIn, inChannels: r),
                         wino == nil ? partialsOf * dACount : 1, partialsOf * dBCount,
                         max(1, ktCount), max(1, split.workers * ktCount),
                         wino?.packedCount(cOut: g.cOut, rank: r) ?? 1], "the packed stage kernels") { pk in
            let (packedWidth, packedHA, packedWA, dAPartials, dBPartials) = (pk[0], pk[1], pk[2], pk[3], pk[4])
            let (kt, dKt, packedKt) = (pk[5], pk[6], pk[7])
            if let wino {
                wino.transform.kernelTransform(a, cOut: g.cOut, rank: r, into: kt)
                wino.pack(kt, cOut: g.cOut, rank: r, transposed: true, into: packedKt)
            }
            if intermediate == nil {
                d.width.pack(bt, outChannels: r, inChannels: g.cIn, outStride: cols, inStride: g.kw, tapStride: 1,
                             into: packedWidth)
            }
            if wino == nil {
                d.heightAdjoint.pack(a + (g.kh - 1) * r, outChannels: r, inChannels: g.cOut, outStride: 1, inStride: kr,
                                     tapStride: -r, into: packedHA)
            }
            d.widthAdjoint.pack(bt + (g.kw - 1), outChannels: g.cIn, inChannels: r, outStride: g.kw, inStride: cols,
                                tapStride: -1, into: packedWA)
            try ConvWorkspace.with(p.backwardCounts, external: workspace, externalCount: workspaceCount,
                                   "the lowrank_conv2d backward pass") { s in
                try withDoubleScratch(BiasAccumulator.scratchCount(channels: g.cOut, split: split),
                                      enabled: dbias != nil, "the bias gradient") { sums in
                    let biasSums = BiasAccumulator(channels: g.cOut, split: split, scratch: sums)
                    let zImage = r * mid, gImage = g.cOut * g.outPlane, xImage = g.cIn * g.inPlane
                    split.run { w, n0, nb in
                        let (zbuf, dz, scratch) = (s[6 * w], s[6 * w + 1], s[6 * w + 2])
                        let (zt, dyt, wScratch) = (s[6 * w + 3], s[6 * w + 4], s[6 * w + 5])
                        let dBw = w == 0 ? dBt : dBPartials + (w - 1) * dBCount
                        let first = n0 == split.images(w).lowerBound
                        let gc = gy + n0 * gImage, xc = x + n0 * xImage
                        biasSums.add(worker: w, gc, plane: g.outPlane, images: nb)
                        // z of the chunk: saved (channel planes batch * mid apart, images mid
                        // apart) or recomputed (images r * mid apart).
                        var z = UnsafePointer(zbuf), zs = mid, zi = zImage
                        if let intermediate {
                            z = intermediate + n0 * mid; zs = g.batch * mid; zi = mid
                        } else {
                            for i in 0..<nb {
                                d.width.forward(packedWidth, outChannels: r, inChannels: g.cIn, input: xc + i * xImage,
                                                inStride: g.inPlane, output: zbuf + i * zImage, outStride: mid, bias: nil,
                                                scratch: scratch)
                            }
                        }
                        if let wino {
                            wino.backward(packedKt, cOut: g.cOut, rank: r, gradOutput: gc, z: z, channelStride: zs,
                                          imageStride: zi, images: nb, dKt: dKt + w * ktCount, accumulate: !first,
                                          dz: dz, dzChannelStride: mid, dzImageStride: zImage, zt: zt, dyt: dyt,
                                          scratch: wScratch)
                        } else {
                            let dAw = w == 0 ? dA : dAPartials + (w - 1) * dACount
                            d.height.weightGradient(gradOutput: gc, outChannels: g.cOut, outStride: g.outPlane,
                                                    input: z, inChannels: r, inStride: zs, into: dAw, dOutStride: kr,
                                                    dInStride: 1, dTapStride: r, accumulate: !first, images: nb,
                                                    gradImageStride: gImage, inputImageStride: zi, scratch: scratch)
                            for i in 0..<nb {
                                d.heightAdjoint.forward(packedHA, outChannels: r, inChannels: g.cOut, input: gc + i * gImage,
                                                        inStride: g.outPlane, output: dz + i * zImage, outStride: mid,
                                                        bias: nil, scratch: scratch)
                            }
                        }
                        d.width.weightGradient(gradOutput: dz, outChannels: r, outStride: mid, input: xc,
                                               inChannels: g.cIn, inStride: g.inPlane, into: dBw, dOutStride: cols,
                                               dInStride: g.kw, dTapStride: 1, accumulate: !first, images: nb,
                                               gradImageStride: zImage, inputImageStride: xImage, scratch: scratch)
                        for i in 0..<nb {
                            d.widthAdjoint.forward(packedWA, outChannels: g.cIn, inChannels: r, input: dz + i * zImage,
                                                   inStride: mid, output: dx + (n0 + i) * xImage, outStride: g.inPlane,
                                                   bias: nil, scratch: scratch)
                        }
                    }
                    if let wino {
                        split.reduce(dKt + ktCount, count: ktCount, into: dKt)
                        wino.transform.kernelGradientTransform(dKt, cOut: g.cOut, rank: r, into: dA)
                    } else {
                        split.reduce(dAPartials, count: dACount, into: dA)
                    }
                    split.reduce(dBPartials, count: dBCount, into: dBt)
                    if let dbias { biasSums.write(dbias) }
                }
            }
        }
    }
}
