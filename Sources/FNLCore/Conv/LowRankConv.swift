/// Low-rank 2-D convolution (Tai et al.): the kernel K (c_out, c_in, kh, kw) is given through
/// the matrix layout of `ConvLayout`, W = U M_1 ... M_d V^T with U ((c_out*kh) x r_0),
/// M_j (r_{j-1} x r_j), V ((c_in*kw) x r_d), K[o, i, a, b] = W[o*kh + a, i*kw + b], so
///
///     y = conv2d(x, K) + bias.
///
/// Two execution paths give the same numbers (to float rounding):
///
/// - **fused**: split the chain at its smallest rank r = r_s, A = U M_1..M_s ((c_out*kh) x r),
///   B^T = M_{s+1}..M_d V^T (r x (c_in*kw)). Then W = A B^T and the convolution is
///     1. z = B^T L1(x): a 1 x kw convolution, c_in -> r channels, with the width-axis stride,
///        padding and dilation, over every input row (z is (r, N, H, outW), channel-major);
///     2. y = A' L2(z): a kh x 1 convolution, r -> c_out channels, with the height-axis
///        options, A' being A read as (c_out x kh*r) (rows of L2 ordered (a, j)); for kh = 3
///        with height stride and dilation 1 and r >= 8, by Winograd F(2, 3) or F(4, 3)
///        instead (`WinogradHeight`: 4 products per two output rows instead of 6, or 6 per
///        four instead of 12).
///   Cost 2 N r (H outW c_in kw + outH outW kh c_out) flops (the second term 2/3 or 1/2 of
///   that with Winograd). Where both axes have stride 1, dilation 1 and padding <= kernel - 1
///   the two stages run instead as direct one-dimensional convolutions (`AxisConv`, no
///   lowering and no product packing; `LowRankConv+Direct.swift`);
/// - **compose**: form W, map it to K and run `DenseConv`: 2 N outH outW c_out c_in kh kw flops
///   (plus the small product), cheaper for large or overcomplete ranks.
///
/// `Path.auto` picks the path with the smaller operation count.
public enum LowRankConv {
    public enum Path: Int32 {
        case auto = 0
        case fused = 1
        case compose = 2
        /// The fused path with its stages as matrix products (lowering, Winograd) even where
        /// the direct stages (`LowRankConv+Direct.swift`) apply; the plan then reports `.fused`.
        case fusedProducts = 3
    }

    public struct Plan {
        public let geometry: ConvGeometry
        /// r_0 ... r_d of the chain.
        public let ranks: [Int]
        /// The chain is split after M_split: A = U M_1..M_split, r = ranks[split].
        public let split: Int
        /// Channels of the intermediate (the smallest rank of the chain).
        public let rank: Int
        /// The path taken (never `.auto`).
        public let path: Path
        public let fusedFlops: Double
        public let composeFlops: Double
        /// The batch over the threads and images per chunk (of the dense plan on the compose path).
        public let batchSplit: BatchSplit
        /// Images per chunk.
        public var chunk: Int { batchSplit.chunk }
        /// The plan of the dense convolution of the compose path.
        public let dense: DenseConv.Plan?
        /// Stage 2 by Winograd F(m, 3) along the height (fused path, kh = 3, height stride and
        /// dilation 1), else nil: the stage is lowered.
        public let winograd: WinogradHeight?
        /// Both stages as direct convolutions (fused path, forward and backward), else nil.
        let direct: DirectStages?
        /// Whether the fused path runs its stages as direct convolutions.
        public var usesDirectStages: Bool { direct != nil }
        /// The batch split of the direct path's chunks (the backward pass, and the forward pass
        /// with `directWinograd`; its own chunk size: `DirectStages.chunkFloats`).
        let directSplit: BatchSplit?
        /// The kh x 1 stage of the direct path by Winograd (`DirectWinograd`), else nil.
        let directWinograd: DirectWinograd?
        /// Whether the direct stages run the kh x 1 stage by Winograd.
        public var usesDirectWinograd: Bool { directWinograd != nil }

        /// `winograd`: nil chooses (Winograd where it applies and r >= `WinogradHeight.minimumRank`);
        /// true or false forces it where it applies, or the lowered stage 2 (tests compare the two).
        /// `winogradTile`: 2 or 4 forces F(2, 3) or F(4, 3), nil takes `WinogradHeight.Transform.preferred`.
        /// The direct stages are taken where they apply (on `.auto` only on 8-lane FMA builds)
        /// unless `path` is `.fusedProducts` or `winograd` is true. `directWinograd`: nil
        /// chooses (`DirectWinograd.preferred`), true or false forces it where it applies or
        /// the direct kh x 1 stage (tests).
        public init(_ g: ConvGeometry, ranks: [Int], path requested: Path = .auto, chunkImages: Int = 0,
                    workers: Int = Threads.count, winograd allowed: Bool? = nil, winogradTile: Int? = nil,
                    directWinograd allowedDirectWinograd: Bool? = nil) throws {
            try require(!ranks.isEmpty && ranks.count <= 65, "the chain must have 1..65 ranks, got \(ranks.count)")
            for (j, r) in ranks.enumerated() {
                try require(r >= 1 && r <= ConvAxis.limit, "rank r_\(j) must be in 1..\(ConvAxis.limit), got \(r)")
            }
            geometry = g
            self.ranks = ranks
            var s = 0
            for j in 1..<ranks.count where ranks[j] < ranks[s] { s = j }
            split = s
            rank = ranks[s]
            let rows = g.cOut * g.kh, cols = g.cIn * g.kw
            try Dimensions.checkMatrix(rows, ranks[0], "U")
            try Dimensions.checkMatrix(cols, ranks[ranks.count - 1], "V")
            try Dimensions.checkMatrix(rows, cols, "the composed kernel matrix")
            let n = Double(g.batch), r = Double(rank)
            let stage1 = 2 * n * Double(g.h.size * g.w.output) * Double(cols) * r
            let stage2 = 2 * n * Double(g.outPlane) * Double(g.kh) * r * Double(g.cOut)
            fusedFlops = stage1 + stage2
            var chainFlops = 0.0
            for j in 1..<ranks.count { chainFlops += 2 * Double(rows) * Double(ranks[j - 1]) * Double(ranks[j]) }
            composeFlops = g.denseFlops + chainFlops + 2 * Double(rows) * Double(ranks[ranks.count - 1]) * Double(cols)
            switch requested {
            case .auto: path = fusedFlops <= composeFlops ? .fused : .compose
            case .fusedProducts: path = .fused
            default: path = requested
            }
            // Direct stages: wherever they apply when `.fused` is requested, on `.auto` where
            // the engine has 8-lane FMA (`DirectStages.preferred`).
            let direct = path == .fused && requested != .fusedProducts && allowed != true
                && (requested == .fused || DirectStages.preferred) ? DirectStages(g) : nil
            self.direct = direct
            // Chunks of the direct path: z and dz, and the transformed matrices with the
            // Winograd stage (dropped if a chunk's matrices would not fit).
            let rMid = rank
            func directChunks(_ w: DirectWinograd?) -> BatchSplit {
                let perImage = ConvWorkspace.saturatingSumOfProducts(
                    [[2, max(1, rMid), g.h.size, g.w.output]]
                    + (w.map { [[$0.points, rMid + g.cOut, $0.transform.columnsPerImage]] } ?? []))
                return BatchSplit(batch: g.batch, perImage: perImage, forcedChunk: chunkImages, workers: workers,
                                  chunkFloats: DirectStages.chunkFloats)
            }
            var directWinograd = direct != nil
                && (allowedDirectWinograd ?? DirectWinograd.preferred(rank: rMid, cOut: g.cOut))
                ? DirectWinograd(g, tile: winogradTile) : nil
            var split = direct != nil ? directChunks(directWinograd) : nil
            if let w = directWinograd, let chunks = split, !w.fits(images: chunks.chunk, rows: max(rMid, g.cOut)) {
                directWinograd = nil
                split = directChunks(nil)
            }
            self.directWinograd = directWinograd
            directSplit = split
            if path == .compose {
                let d = try DenseConv.Plan(g, chunkImages: chunkImages, workers: workers)
                dense = d
                batchSplit = d.split
                winograd = nil
            } else {
                dense = nil
                let midPlane = g.h.size * g.w.output
                let r0 = ranks[s]
                let use = allowed ?? (r0 >= WinogradHeight.minimumRank)
                var wino = use && WinogradHeight.applies(g.h)
                    ? WinogradHeight(g.h, width: g.w.output, tile: winogradTile) : nil
                if let w = wino, !w.fits(rows: max(r0, g.cOut)) { wino = nil }
                winograd = wino
                let r = ranks[s], tiled = wino?.columnsPerImage ?? 0
                let stage2: [[Int]] = wino.map { [[$0.points, r, tiled], [$0.points, g.cOut, tiled]] }
                    ?? [[g.kh, r, g.outPlane], [g.cOut, g.outPlane]]
                let perImage = ConvWorkspace.saturatingSumOfProducts([[cols, midPlane], [rank, midPlane]] + stage2)
                batchSplit = BatchSplit(batch: g.batch, perImage: perImage, forcedChunk: chunkImages, workers: workers)
                let chunk = batchSplit.chunk
                if let wino {
                    let ldT = ConvWorkspace.leadingDimension(ConvWorkspace.saturatingSumOfProducts([[chunk, wino.columnsPerImage]]))
                    try Dimensions.checkMatrix(wino.points * g.cOut, ldT, "the transformed output of stage 2")
                    try Dimensions.checkMatrix(wino.points * rank, ldT, "the transformed input of stage 2")
                }
                try Dimensions.checkMatrix(cols, ConvWorkspace.leadingDimension(chunk * midPlane), "the lowered input of stage 1")
                try Dimensions.checkMatrix(g.kh * rank, ConvWorkspace.leadingDimension(chunk * g.outPlane), "the lowered input of stage 2")
                try Dimensions.checkMatrix(g.cOut, ConvWorkspace.leadingDimension(chunk * g.outPlane), "the output of a chunk")
                _ = try Dimensions.blas(g.batch * g.h.size * g.w.output, "the intermediate's columns")
            }
        }

        public var depth: Int { ranks.count - 1 }
        /// Pixels of one intermediate plane (H x outW).
        var midPlane: Int { geometry.h.size * geometry.w.output }
        /// Floats of the saved intermediate z (r, N, H, outW) of the fused path (0 for compose).
        public var intermediateCount: Int { path == .fused ? rank * geometry.batch * midPlane : 0 }

        /// Stage 1 lowering: rows (c, b) = c*kw + b, columns (n, h, ow), NCHW input.
        var stage1: Lowering {
            let g = geometry
            return Lowering(rows: .identity(g.h.size), cols: g.w, channels: g.cIn, channelStride: g.inPlane,
                            imageStride: g.cIn * g.inPlane, rowStrideChannel: g.kw, rowStrideTap: 1)
        }

        /// Stage 2 lowering of an intermediate whose channel planes are `channelStride` apart:
        /// rows (a, j) = a*r + j, columns (n, oh, ow).
        func stage2(channelStride: Int) -> Lowering {
            let g = geometry
            return Lowering(rows: g.h, cols: .identity(g.w.output), channels: rank, channelStride: channelStride,
                            imageStride: midPlane, rowStrideChannel: 1, rowStrideTap: rank)
        }

        /// Leading dimensions of the chunk matrices over intermediate pixels (stage 1) and
        /// over output pixels (stage 2).
        var ld1: Int { ConvWorkspace.leadingDimension(chunk * midPlane) }
        var ld2: Int { ConvWorkspace.leadingDimension(chunk * geometry.outPlane) }

        /// Leading dimension of the Winograd-transformed chunk matrices of stage 2.
        var ldT: Int { ConvWorkspace.leadingDimension(chunk * (winograd?.columnsPerImage ?? 0)) }
        var fusedCounts: [Int] {
            let g = geometry
            if let w = winograd {
                return [g.cIn * g.kw * ld1, rank * ld1, w.points * rank * ldT, w.points * g.cOut * ldT]
            }
            return [g.cIn * g.kw * ld1, rank * ld1, g.kh * rank * ld2, g.cOut * ld2]
        }
        /// Stage 1 through the "full" lowering T of the intermediate (r*kw rows) instead of the
        /// lowered input L1 (c_in*kw rows), which moves less memory; used when the width stride
        /// is 1, kw > 1 and r <= c_in (padding at most the dilated kernel width minus 1):
        ///     forward   z  = lift_T(M^T x)      (x channel-major, M[c, t*r + j] = B^T[j, c*kw + kw-1-t])
        ///     backward  dx = M T(dz),  dB^T[j, c*kw + kw-1-t] = (T(dz) x^T)[t*r + j, c].
        var transposedStage1Possible: Bool {
            let g = geometry
            return g.kw > 1 && g.w.stride == 1 && g.w.padding <= (g.kw - 1) * g.w.dilation && rank <= g.cIn
        }

        /// Leading dimension of the channel-major input chunk (c_in x images*H*W).
        var ldx: Int { ConvWorkspace.leadingDimension(chunk * geometry.inPlane) }

        /// The transposed stage 1 reads x in place, one product per image (its c_in x H*W
        /// plane), when the planes are large enough for efficient products (H*W >= 256) and an
        /// image is small (c_in*H*W <= 2^15 floats); otherwise the chunk is first gathered
        /// channel-major into one product. Measured fwd+bwd on the 2-core EPYC, per image over
        /// gathered: C=16 H=W=32 1.09x-1.35x, C=64 H=W=16 0.99x-1.03x, C=64 H=W=32 0.91x-0.97x
        /// (there the planes' power-of-two leading dimension costs more than the copy saves).
        var stage1PerImage: Bool { geometry.inPlane >= 256 && geometry.cIn * geometry.inPlane <= 1 << 15 }

        /// The lowering T of dz (channel planes `channelStride` apart): rows (t, j) = t*r + j,
        /// T[(t, j), (n, h, w)] = dz[j, n, h, w + pw - (kw-1-t)*dw] (zero outside 0..<outW).
        func transposedStage1(channelStride: Int) throws -> Lowering {
            let g = geometry
            let axis = try ConvAxis(size: g.w.output, kernel: g.kw, stride: 1,
                                    padding: (g.kw - 1) * g.w.dilation - g.w.padding, dilation: g.w.dilation, name: "width")
            try require(axis.output == g.w.size, "internal: transposed stage 1 width \(axis.output) != \(g.w.size)")
            return Lowering(rows: .identity(g.h.size), cols: axis, channels: rank, channelStride: channelStride,
                            imageStride: midPlane, rowStrideChannel: 1, rowStrideTap: rank)
        }

        /// Floats of chunk workspace of one worker on the fused path: part 0 holds either L1
        /// or (x channel-major, M^T x or T(dz)).
        var fusedWorkerCounts: [Int] {
            var c = fusedCounts
            if transposedStage1Possible {
                let g = geometry
                let (t, o) = (g.cIn + g.kw * rank).multipliedReportingOverflow(by: ldx)
                c[0] = max(c[0], o ? Int.max : t)
            }
            return c
        }

        /// Parts of the fused path's workspace per worker.
        static let fusedParts = 4
        /// Floats of workspace of the fused path (all workers).
        var fusedCountsAllWorkers: [Int] { batchSplit.replicate(fusedWorkerCounts) }
        /// Floats of workspace of the forward pass.
        public var forwardCounts: [Int] {
            if let counts = directForwardCounts { return counts }
            return dense?.forwardCounts ?? fusedCountsAllWorkers
        }
        /// Floats of workspace of the backward pass.
        public var backwardCounts: [Int] {
            if let counts = directBackwardCounts { return counts }
            return dense?.backwardCounts ?? fusedCountsAllWorkers
        }
        public var forwardWorkspace: Int { (try? ConvWorkspace.total(forwardCounts)) ?? Int.max }
        public var backwardWorkspace: Int { (try? ConvWorkspace.total(backwardCounts)) ?? Int.max }
        public var rowsW: Int { geometry.cOut * geometry.kh }
        public var colsW: Int { geometry.cIn * geometry.kw }
    }

    /// The factors as matrix views, V^T materialized (r_d x (c_in*kw)) in `vt`.
    static func factors(_ p: Plan, _ c: FactorChain, vt: UnsafeMutablePointer<Float>) -> [MatrixView] {
        Blas.copy(c.v, p.colsW, c.rankOut, vt, transpose: true)
        var f = [MatrixView(c.u, p.rowsW, p.ranks[0])]
        for j in 0..<c.depth { f.append(MatrixView(c.middle[j], p.ranks[j], p.ranks[j + 1])) }
        f.append(MatrixView(vt, p.ranks[p.depth], p.colsW))
        return f
    }

    /// Validates the factors against the plan (shapes, NaN/inf).
    static func chain(_ p: Plan, u: UnsafePointer<Float>, v: UnsafePointer<Float>,
                      middle: [UnsafePointer<Float>]) throws -> FactorChain {
        try require(middle.count == p.depth, "expected \(p.depth) middle matrices, got \(middle.count)")
        return try FactorChain(batch: 1, m: p.rowsW, n: p.colsW, ranks: p.ranks, u: u, v: v, middle: middle)
    }

    /// Runs `body(A, B^T)` with the split factors of the fused path (or `body(W, _)` with the
    /// whole product for the compose path, the second pointer then unused).
    static func withSplitFactors<R>(_ p: Plan, _ c: FactorChain,
                                    _ body: (UnsafeMutablePointer<Float>, UnsafeMutablePointer<Float>, [MatrixView]) throws -> R) throws -> R {
        let r = p.rank
        let aCount = p.path == .fused ? p.rowsW * r : p.rowsW * p.colsW
        let bCount = p.path == .fused ? r * p.colsW : 1
        return try withScratch([c.vCount, aCount, bCount], "the low-rank kernel factors") { s in
            let f = factors(p, c, vt: s[0])
            if p.path == .fused {
                try ChainRule.product(Array(f[0...p.split]), into: s[1])
                try ChainRule.product(Array(f[(p.split + 1)...]), into: s[2])
            } else {
                try ChainRule.product(f, into: s[1])
            }
            return try body(s[1], s[2], f)
        }
    }

    /// M (c_in x kw*r) of the transposed stage 1: M[c, t*r + j] = B^T[j, c*kw + kw-1-t].
    static func transposedStage1Matrix(_ p: Plan, bt: UnsafePointer<Float>, into m: UnsafeMutablePointer<Float>) {
        let g = p.geometry, r = p.rank, rk = g.kw * r, cols = p.colsW
        for c in 0..<g.cIn { for t in 0..<g.kw { for j in 0..<r {
            m[c * rk + t * r + j] = bt[j * cols + c * g.kw + (g.kw - 1 - t)]
        } } }
    }

    /// z = lift_T(M^T x) for `nb` images of x (NCHW): the product per image or over the gathered
    /// chunk (`Plan.stage1PerImage`), in `buffer` (part 0 of a worker: x channel-major, then
    /// M^T x), lifted into z (channel planes `p.ld1` or the saved intermediate's apart).
    static func runTransposedStage1(_ p: Plan, _ tStage: Lowering, _ mT: UnsafePointer<Float>, _ xc: UnsafePointer<Float>,
                                 images nb: Int, buffer: UnsafeMutablePointer<Float>, into z: UnsafeMutablePointer<Float>) {
        let g = p.geometry, ldx = p.ldx, rk = g.kw * p.rank, plane = g.inPlane
        let xcm = buffer, pm = buffer + g.cIn * ldx
        if p.stage1PerImage {
            for i in 0..<nb {
                Blas.gemm(true, false, rk, plane, g.cIn, 1, mT, rk, xc + i * g.cIn * plane, plane, 0, pm + i * plane, ldx)
            }
        } else {
            BatchLayout.gather(xc, channels: g.cIn, plane: plane, images: nb, into: xcm, ld: ldx, sums: nil)
            Blas.gemm(true, false, rk, nb * plane, g.cIn, 1, mT, rk, xcm, ldx, 0, pm, ldx)
        }
        tStage.liftAdd(pm, images: nb, ld: ldx, into: z)
    }

    /// y (batch, c_out, outH, outW) = conv2d(x, K(U M V^T)) + bias. When `intermediate` is
    /// given (fused path only) it receives z (r, batch, H, outW) for a later backward pass.
    /// Returns whether y is finite (scanned chunk by chunk as written).
    @discardableResult
    public static func forward(_ p: Plan, x: UnsafePointer<Float>, u: UnsafePointer<Float>, v: UnsafePointer<Float>,
                               middle: [UnsafePointer<Float>], bias: UnsafePointer<Float>?,
                               y: UnsafeMutablePointer<Float>, intermediate: UnsafeMutablePointer<Float>? = nil,
                               workspace: UnsafeMutablePointer<Float>? = nil, workspaceCount: Int = 0) throws -> Bool {
        let g = p.geometry
        let c = try chain(p, u: u, v: v, middle: middle)
        try require(intermediate == nil || p.path == .fused, "the intermediate exists only on the fused path")
        return try withSplitFactors(p, c) { a, bt, _ in
            if let dense = p.dense {
                return try withScratch(g.kernelCount, "the composed kernel") { k in
                    ConvLayout.toKernel(a, try ConvLayout.Shape(cOut: g.cOut, cIn: g.cIn, kh: g.kh, kw: g.kw), k)
                    return try DenseConv.forward(dense, x: x, kernel: k, bias: bias, y: y,
                                                 workspace: workspace, workspaceCount: workspaceCount)
                }
            }
            if let d = p.direct {
                return try forwardDirect(p, d, a: a, bt: bt, x: x, bias: bias, y: y, intermediate: intermediate,
                                         workspace: workspace, workspaceCount: workspaceCount)
            }
            let transposed = p.transposedStage1Possible
            let tStage = transposed ? try p.transposedStage1(channelStride: intermediate == nil ? p.ld1 : g.batch * p.midPlane) : nil
            return try withScratch([transposed ? p.colsW * p.rank : 1, p.winograd.map { $0.points * g.cOut * p.rank } ?? 1],
                                   "the stage matrices") { sm in
            let (mT, aw) = (sm[0], sm[1])
            if transposed { transposedStage1Matrix(p, bt: bt, into: mT) }
            p.winograd?.kernelTransform(a, cOut: g.cOut, rank: p.rank, into: aw)
            return try ConvWorkspace.with(p.fusedCountsAllWorkers, external: workspace, externalCount: workspaceCount,
                                          "the lowrank_conv2d forward pass") { s in
                let r = p.rank, cols = p.colsW, kr = g.kh * r
                let st1 = p.stage1
                let ld1 = p.ld1, ld2 = p.ld2
                return p.batchSplit.runCheckingOutput(y, perImage: g.cOut * g.outPlane) { w, n0, nb in
                    let q = Plan.fusedParts * w
                    let (x1, zbuf, x2, ycm) = (s[q], s[q + 1], s[q + 2], s[q + 3])
                    let n1 = nb * p.midPlane, n2 = nb * g.outPlane
                    // Stage 1: z = B^T L1(x) (or its transposed form).
                    let xc = x + n0 * g.cIn * g.inPlane
                    var z = zbuf, ldz = ld1
                    if let intermediate { z = intermediate + n0 * p.midPlane; ldz = g.batch * p.midPlane }
                    if let tStage {
                        runTransposedStage1(p, tStage, mT, xc, images: nb, buffer: x1, into: z)
                    } else {
                        var l1 = UnsafePointer(x1), ldl1 = ld1
                        if st1.isPlainView(images: nb) {
                            l1 = xc; ldl1 = st1.channelStride
                        } else {
                            st1.lower(xc, images: nb, into: x1, ld: ld1)
                        }
                        Blas.gemm(false, false, r, n1, cols, 1, bt, cols, l1, ldl1, 0, z, ldz)
                    }
                    // Stage 2: y = A' L2(z), or its Winograd form Yt_xi = Aw_xi Zt_xi.
                    if let wino = p.winograd {
                        let ldT = p.ldT, nT = nb * wino.columnsPerImage
                        wino.inputTransform(z, channels: r, channelStride: ldz, imageStride: p.midPlane, images: nb,
                                            into: x2, ld: ldT)
                        wino.forwardProducts(aw, x2, into: ycm, outRows: g.cOut, inRows: r, columns: nT, ld: ldT)
                        wino.outputTransform(ycm, channels: g.cOut, ld: ldT, images: nb, bias: bias,
                                             into: y + n0 * g.cOut * g.outPlane)
                        return
                    }
                    let st2 = p.stage2(channelStride: ldz)
                    var l2 = UnsafePointer(x2), ldl2 = ld2
                    if st2.isPlainView(images: nb) {
                        l2 = UnsafePointer(z); ldl2 = ldz
                    } else {
                        st2.lower(z, images: nb, into: x2, ld: ld2)
                    }
                    Blas.gemm(false, false, g.cOut, n2, kr, 1, a, kr, l2, ldl2, 0, ycm, ld2)
                    BatchLayout.scatter(ycm, ld: ld2, channels: g.cOut, plane: g.outPlane, images: nb, bias: bias,
                                        into: y + n0 * g.cOut * g.outPlane)
                }
            }
            }
        }
    }
}
