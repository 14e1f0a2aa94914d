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
/// Tried and not taken (branch experiment/direct-winograd): the kh x 1 stage by Winograd
/// F(4, 3) inside this path, its products run by these kernels as 1 x 1 convolutions over a
/// chunk's transformed columns. The products took 0.56x the time of the direct stage, as
/// expected, but the transforms (memory-bound passes over 1.5x the data) took ~11% of the
/// fwd+bwd time and the chunked z displaced the other stages' data from L2: fwd+bwd measured
/// 0.87x-0.92x at C=64 H=W=8 and 1.07x-1.10x at H=W=16 (r = 64, 1 thread), and slower at r = 19.
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
        return try withScratch([d.width.packedCount(outChannels: r, inChannels: g.cIn),
                                d.height.packedCount(outChannels: g.cOut, inChannels: r)], "the packed stage kernels") { pk in
            d.width.pack(bt, outChannels: r, inChannels: g.cIn, outStride: p.colsW, inStride: g.kw, tapStride: 1, into: pk[0])
            d.height.pack(a, outChannels: g.cOut, inChannels: r, outStride: g.kh * r, inStride: 1, tapStride: r, into: pk[1])
            let counts = p.batchSplit.replicate(d.workerCounts(g, rank: r, backward: false, chunk: 1))
            return try ConvWorkspace.with(counts, external: workspace, externalCount: workspaceCount,
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
        try withScratch([intermediate == nil ? d.width.packedCount(outChannels: r, inChannels: g.cIn) : 1,
                         d.heightAdjoint.packedCount(outChannels: r, inChannels: g.cOut),
                         d.widthAdjoint.packedCount(outChannels: g.cIn, inChannels: r),
                         partialsOf * dACount, partialsOf * dBCount], "the packed stage kernels") { pk in
            let (packedWidth, packedHA, packedWA, dAPartials, dBPartials) = (pk[0], pk[1], pk[2], pk[3], pk[4])
            if intermediate == nil {
                d.width.pack(bt, outChannels: r, inChannels: g.cIn, outStride: cols, inStride: g.kw, tapStride: 1,
                             into: packedWidth)
            }
            d.heightAdjoint.pack(a + (g.kh - 1) * r, outChannels: r, inChannels: g.cOut, outStride: 1, inStride: kr,
                                 tapStride: -r, into: packedHA)
            d.widthAdjoint.pack(bt + (g.kw - 1), outChannels: g.cIn, inChannels: r, outStride: g.kw, inStride: cols,
                                tapStride: -1, into: packedWA)
            let counts = split.replicate(d.workerCounts(g, rank: r, backward: true, chunk: split.chunk))
            try ConvWorkspace.with(counts, external: workspace, externalCount: workspaceCount,
                                   "the lowrank_conv2d backward pass") { s in
                try withDoubleScratch(BiasAccumulator.scratchCount(channels: g.cOut, split: split),
                                      enabled: dbias != nil, "the bias gradient") { sums in
                    let biasSums = BiasAccumulator(channels: g.cOut, split: split, scratch: sums)
                    let zImage = r * mid, gImage = g.cOut * g.outPlane, xImage = g.cIn * g.inPlane
                    split.run { w, n0, nb in
                        let (zbuf, dz, scratch) = (s[3 * w], s[3 * w + 1], s[3 * w + 2])
                        let dAw = w == 0 ? dA : dAPartials + (w - 1) * dACount
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
                        d.height.weightGradient(gradOutput: gc, outChannels: g.cOut, outStride: g.outPlane,
                                                input: z, inChannels: r, inStride: zs, into: dAw, dOutStride: kr,
                                                dInStride: 1, dTapStride: r, accumulate: !first, images: nb,
                                                gradImageStride: gImage, inputImageStride: zi, scratch: scratch)
                        for i in 0..<nb {
                            d.heightAdjoint.forward(packedHA, outChannels: r, inChannels: g.cOut, input: gc + i * gImage,
                                                    inStride: g.outPlane, output: dz + i * zImage, outStride: mid,
                                                    bias: nil, scratch: scratch)
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
                    split.reduce(dAPartials, count: dACount, into: dA)
                    split.reduce(dBPartials, count: dBCount, into: dBt)
                    if let dbias { biasSums.write(dbias) }
                }
            }
        }
    }
}
