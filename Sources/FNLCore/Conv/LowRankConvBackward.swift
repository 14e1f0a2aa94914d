/// The backward pass of `LowRankConv`, in one call. With G = dLoss/dy in channel-major form
/// and the notation of `LowRankConv` (fused path, per chunk of images):
///
///     z   = B^T L1(x)                       (recomputed, or read from the saved intermediate)
///     dA' = sum G L2(z)^T                   (c_out x kh*r, i.e. dA ((c_out*kh) x r))
///     dz  = lift2(A'^T G)
///     dB^T = sum dz L1(x)^T                 (r x c_in*kw)
///     dx  = lift1(B dz)
///     dbias[o] = sum_{n,p} G[n, o, p]
///
/// and then through the chain: dF_j = (F_0..F_{j-1})^T dP (F_{j+1}..F_L)^T within
/// A = U M_1..M_s and within B^T = M_{s+1}..M_d V^T (`ChainRule`). On the compose path the
/// dense backward gives dK, mapped to dW, and the chain rule runs over U M_1..M_d V^T.
///
/// What the backward needs from the forward: only x and the factors (and bias presence).
/// The intermediate z (r, N, H, outW) is recomputed (one product of r x c_in*kw per pixel
/// row) unless the caller saved it in the forward pass and passes it here. With z saved,
/// width stride 1 and kw > 1, stage 1 is differentiated as a transposed convolution instead:
/// with T = T(dz) the "full" lowering of dz (rows (t, j), `Plan.transposedStage1`) and x in
/// channel-major form,
///
///     dB^T[j, c*kw + kw-1-t] = (T x^T)[t*r + j, c],    dx = M T,  M[c, t*r + j] = B^T[j, c*kw + kw-1-t],
///
/// which lowers r*kw rows instead of c_in*kw and needs no lift (less memory traffic).
extension LowRankConv {
    public static func backward(_ p: Plan, gradOutput gy: UnsafePointer<Float>, x: UnsafePointer<Float>,
                                u: UnsafePointer<Float>, v: UnsafePointer<Float>, middle: [UnsafePointer<Float>],
                                intermediate: UnsafePointer<Float>? = nil,
                                dx: UnsafeMutablePointer<Float>, du: UnsafeMutablePointer<Float>,
                                dv: UnsafeMutablePointer<Float>, dMiddle: [UnsafeMutablePointer<Float>],
                                dbias: UnsafeMutablePointer<Float>?,
                                workspace: UnsafeMutablePointer<Float>? = nil, workspaceCount: Int = 0) throws {
        let g = p.geometry
        let c = try chain(p, u: u, v: v, middle: middle)
        try require(dMiddle.count == p.depth, "expected \(p.depth) middle gradients, got \(dMiddle.count)")
        try require(intermediate == nil || p.path == .fused, "the intermediate exists only on the fused path")
        let rd = p.ranks[p.depth]
        try withSplitFactors(p, c) { a, bt, f in
            if let dense = p.dense {
                let shape = try ConvLayout.Shape(cOut: g.cOut, cIn: g.cIn, kh: g.kh, kw: g.kw)
                try withScratch([g.kernelCount, g.kernelCount, g.kernelCount, c.vCount], "the composed kernel") { s in
                    let (k, dk, dw, dvt) = (s[0], s[1], s[2], s[3])
                    ConvLayout.toKernel(a, shape, k)
                    try DenseConv.backward(dense, gradOutput: gy, x: x, kernel: k, dx: dx, dKernel: dk, dbias: dbias,
                                           workspace: workspace, workspaceCount: workspaceCount)
                    ConvLayout.toMatrix(dk, shape, dw)
                    try ChainRule.gradients(f, g: dw, into: [du] + dMiddle + [dvt])
                    Blas.copy(dvt, rd, p.colsW, dv, transpose: true)
                }
                return
            }
            if let d = p.direct {
                try withScratch([p.rowsW * p.rank, p.rank * p.colsW, c.vCount], "the factor gradients") { sg in
                    try backwardDirect(p, d, a: a, bt: bt, gradOutput: gy, x: x, intermediate: intermediate, dx: dx,
                                       dA: sg[0], dBt: sg[1], dbias: dbias, workspace: workspace,
                                       workspaceCount: workspaceCount)
                    try factorGradients(p, f, dA: sg[0], dBt: sg[1], du: du, dMiddle: dMiddle, dv: dv, dvtScratch: sg[2])
                }
                return
            }
            let r = p.rank, cols = p.colsW, kr = g.kh * r
            let transposed = p.transposedStage1Possible
            let tStage = transposed ? try p.transposedStage1(channelStride: p.ld1) : nil
            let split = p.batchSplit, partialsOf = max(split.workers - 1, 1)
            // Worker 0 sums dA' (c_out x kh*r) and dB^T (r x cols; in the transposed form
            // D, kw*r x c_in) in place; workers 1... into partial sums added in worker order
            // after the parallel region.
            let dACount = p.rowsW * r, dBCount = r * cols
            // Winograd stage 2: Aw_xi and, per worker, dAw_xi (4 matrices of c_out x r each),
            // which replace the dA' partial sums.
            let wino = p.winograd, awCount = (wino?.points ?? 0) * g.cOut * r
            try withScratch([dACount, dBCount, c.vCount, transposed ? dBCount : 1, transposed ? dBCount : 1,
                             wino != nil ? 1 : partialsOf * dACount, partialsOf * dBCount,
                             wino != nil ? awCount : 1, wino != nil ? split.workers * awCount : 1],
                            "the factor gradients") { sg in
                let (aw, dAwAll) = (sg[7], sg[8])
                wino?.kernelTransform(a, cOut: g.cOut, rank: r, into: aw)
                let (dA, dBt, dvt, mT, dT) = (sg[0], sg[1], sg[2], sg[3], sg[4])
                let (dAPartials, dBPartials) = (sg[5], sg[6])
                let rk = g.kw * r
                if transposed { transposedStage1Matrix(p, bt: bt, into: mT) }
                try ConvWorkspace.with(p.fusedCountsAllWorkers, external: workspace, externalCount: workspaceCount,
                                       "the lowrank_conv2d backward pass") { s in
                    try withDoubleScratch(BiasAccumulator.scratchCount(channels: g.cOut, split: split),
                                          enabled: dbias != nil, "the bias gradient") { sums in
                        let biasSums = BiasAccumulator(channels: g.cOut, split: split, scratch: sums)
                        let st1 = p.stage1
                        let ld1 = p.ld1, ld2 = p.ld2
                        split.run { w, n0, nb in
                            let q = Plan.fusedParts * w
                            let (x1, zbuf, x2, gcm) = (s[q], s[q + 1], s[q + 2], s[q + 3])
                            let dAWorker = w == 0 ? dA : dAPartials + (w - 1) * dACount
                            let dBw = w == 0 ? (transposed ? dT : dBt) : dBPartials + (w - 1) * dBCount
                            let n1 = nb * p.midPlane, n2 = nb * g.outPlane
                            let beta: Float = n0 == split.images(w).lowerBound ? 0 : 1
                            let gyc = gy + n0 * g.cOut * g.outPlane
                            if wino == nil {
                                biasSums.gather(worker: w, gyc, plane: g.outPlane, images: nb, into: gcm, ld: ld2)
                            } else {
                                biasSums.add(worker: w, gyc, plane: g.outPlane, images: nb)
                            }
                            // L1(x) and z.
                            let xc = x + n0 * g.cIn * g.inPlane
                            let dxc = dx + n0 * g.cIn * g.inPlane
                            let plain1 = st1.isPlainView(images: nb)
                            var l1 = UnsafePointer(x1), ldl1 = ld1
                            if transposed {
                                // no L1: stage 1 reads x channel-major (gathered below)
                            } else if plain1 {
                                l1 = xc; ldl1 = st1.channelStride
                            } else {
                                st1.lower(xc, images: nb, into: x1, ld: ld1)
                            }
                            var z = UnsafePointer(zbuf), ldz = ld1
                            if let intermediate {
                                z = intermediate + n0 * p.midPlane; ldz = g.batch * p.midPlane
                            } else if let tStage {
                                // z = lift_T(M^T x); x channel-major (if gathered) stays in part 0.
                                runTransposedStage1(p, tStage, mT, xc, images: nb, buffer: x1, into: zbuf)
                            } else {
                                Blas.gemm(false, false, r, n1, cols, 1, bt, cols, l1, ldl1, 0, zbuf, ld1)
                            }
                            if let wino {
                                // dAw_xi += dYt_xi Zt_xi^T; dZt_xi = Aw_xi^T dYt_xi (over Zt); dz = B dZt.
                                let ldT = p.ldT, nT = nb * wino.columnsPerImage, (zt, dyt) = (x2, gcm)
                                let dAww = dAwAll + w * awCount
                                wino.inputTransform(z, channels: r, channelStride: ldz, imageStride: p.midPlane,
                                                    images: nb, into: zt, ld: ldT)
                                wino.gradOutputTransform(gyc, channels: g.cOut, images: nb, into: dyt, ld: ldT)
                                wino.backwardProducts(aw, dyt, zt, beta: beta, into: dAww, outRows: g.cOut,
                                                                inRows: r, columns: nT, ld: ldT)
                                wino.gradInputTransform(zt, channels: r, ld: ldT, images: nb, into: zbuf,
                                                        channelStride: ld1, imageStride: p.midPlane)
                            } else {
                            // dA' += G L2(z)^T.
                            let st2 = p.stage2(channelStride: ldz)
                            var l2 = UnsafePointer(x2), ldl2 = ld2
                            if st2.isPlainView(images: nb) { l2 = z; ldl2 = ldz } else { st2.lower(z, images: nb, into: x2, ld: ld2) }
                            Blas.gemm(false, true, g.cOut, kr, n2, 1, gcm, ld2, l2, ldl2, beta, dAWorker, kr)
                            // dz = lift2(A'^T G), into zbuf (z is no longer needed).
                            let lift2 = p.stage2(channelStride: ld1)
                            if lift2.isPlainView(images: nb) {
                                Blas.gemm(true, false, kr, n2, g.cOut, 1, a, kr, gcm, ld2, 0, zbuf, ld1)
                            } else {
                                Blas.gemm(true, false, kr, n2, g.cOut, 1, a, kr, gcm, ld2, 0, x2, ld2)
                                lift2.liftAdd(x2, images: nb, ld: ld2, into: zbuf)
                            }
                            }
                            // dB^T += dz L1(x)^T; dx = lift1(B dz).
                            if let tStage {
                                // Transposed form: T = T(dz), D += T x^T, dx = M T.
                                let ldx = p.ldx, nx = nb * g.inPlane, plane = g.inPlane
                                let xcm = x1, tm = x1 + g.cIn * ldx
                                tStage.lower(zbuf, images: nb, into: tm, ld: ldx)
                                if p.stage1PerImage {
                                    // x and dx in place, image by image.
                                    for i in 0..<nb {
                                        let xi = xc + i * g.cIn * plane, ti = tm + i * plane
                                        Blas.gemm(false, true, rk, g.cIn, plane, 1, ti, ldx, xi, plane, i == 0 ? beta : 1, dBw, g.cIn)
                                        Blas.gemm(false, false, g.cIn, plane, rk, 1, mT, rk, ti, ldx, 0, dxc + i * g.cIn * plane, plane)
                                    }
                                    return
                                }
                                if intermediate != nil {
                                    BatchLayout.gather(xc, channels: g.cIn, plane: plane, images: nb, into: xcm, ld: ldx, sums: nil)
                                }
                                Blas.gemm(false, true, rk, g.cIn, nx, 1, tm, ldx, xcm, ldx, beta, dBw, g.cIn)
                                Blas.gemm(false, false, g.cIn, nx, rk, 1, mT, rk, tm, ldx, 0, xcm, ldx)
                                BatchLayout.scatter(xcm, ld: ldx, channels: g.cIn, plane: plane, images: nb, bias: nil, into: dxc)
                                return
                            }
                            Blas.gemm(false, true, r, cols, n1, 1, zbuf, ld1, l1, ldl1, beta, dBw, cols)
                            if plain1 {
                                Blas.gemm(true, false, cols, n1, r, 1, bt, cols, zbuf, ld1, 0, dxc, st1.channelStride)
                            } else {
                                Blas.gemm(true, false, cols, n1, r, 1, bt, cols, zbuf, ld1, 0, x1, ld1)
                                st1.liftAdd(x1, images: nb, ld: ld1, into: dxc)
                            }
                        }
                        if let wino {
                            split.reduce(dAwAll + awCount, count: awCount, into: dAwAll)
                            wino.kernelGradientTransform(dAwAll, cOut: g.cOut, rank: r, into: dA)
                        } else {
                            split.reduce(dAPartials, count: dACount, into: dA)
                        }
                        split.reduce(dBPartials, count: dBCount, into: transposed ? dT : dBt)
                        if let dbias { biasSums.write(dbias) }
                    }
                }
                if transposed {
                    // dB^T[j, c*kw + (kw-1-t)] = D[t*r + j, c].
                    for ch in 0..<g.cIn { for t in 0..<g.kw { for j in 0..<r {
                        dBt[j * cols + ch * g.kw + (g.kw - 1 - t)] = dT[(t * r + j) * g.cIn + ch]
                    } } }
                }
                try factorGradients(p, f, dA: dA, dBt: dBt, du: du, dMiddle: dMiddle, dv: dv, dvtScratch: dvt)
            }
        }
    }

    /// dU, dM_j and dV from dA ((c_out*kh) x r) and dB^T (r x (c_in*kw)) through the chain
    /// (`ChainRule`) within A = U M_1..M_s and within B^T = M_{s+1}..M_d V^T; dV^T passes
    /// through `dvtScratch`.
    static func factorGradients(_ p: Plan, _ f: [MatrixView], dA: UnsafeMutablePointer<Float>,
                                dBt: UnsafeMutablePointer<Float>, du: UnsafeMutablePointer<Float>,
                                dMiddle: [UnsafeMutablePointer<Float>], dv: UnsafeMutablePointer<Float>,
                                dvtScratch dvt: UnsafeMutablePointer<Float>) throws {
        let s1 = p.split + 1
        try ChainRule.gradients(Array(f[0..<s1]), g: dA, into: [du] + Array(dMiddle[0..<p.split]))
        try ChainRule.gradients(Array(f[s1...]), g: dBt, into: Array(dMiddle[p.split...]) + [dvt])
        Blas.copy(dvt, p.ranks[p.depth], p.colsW, dv, transpose: true)
    }
}
