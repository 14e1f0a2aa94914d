#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Dense 2-D convolution (cross-correlation) over a batch, NCHW, groups = 1:
///
///     y[n, o, oh, ow] = bias[o] + sum_{i, a, b} K[o, i, a, b] x[n, i, oh*sh - ph + a*dh, ow*sw - pw + b*dw]
///
/// computed by lowering a chunk of images to L (c_in*kh*kw x images*outPlane, `Lowering`) and
/// one matrix product Y = K L, K read as (c_out x c_in*kh*kw). The backward pass of a loss
/// with gradient G = dL/dy:
///
///     dK = sum over chunks of G L^T,   dx = lift(K^T G),   dbias[o] = sum_{n, p} G[n, o, p].
///
/// For kh = 3 with height stride and dilation 1 (and c_in*kw >= 8) the height taps run as
/// Winograd F(4, 3) or F(2, 3) instead (`DenseConv+Winograd.swift`; F(2, 3) measured 1.2x-1.5x
/// faster fwd+bwd than the lowering at ResNet shapes, F(4, 3) 1.26x-1.48x faster forward and
/// 0.99x-1.27x backward again, `WinogradHeight.Transform.preferred`). The
/// batch is split over the engine's workers (`BatchSplit`).
public enum DenseConv {
    public struct Plan {
        public let geometry: ConvGeometry
        /// The batch over the threads and images per chunk.
        public let split: BatchSplit
        public let lowering: Lowering

        /// The height axis by Winograd F(m, 3) (kh = 3, height stride and dilation 1, c_in*kw >=
        /// `WinogradHeight.minimumRank`): x is lowered along the width only (`widthLowering`,
        /// c_in*kw rows over every input row) and the three height taps become m + 2 products
        /// (`DenseConv+Winograd.swift`); nil: the full lowering and one product.
        public let winograd: WinogradHeight?
        /// The width-only lowering of the Winograd mode: rows (c, b) = c*kw + b, columns (n, h, ow).
        public let widthLowering: Lowering

        /// `winograd`: nil chooses, true or false forces the mode where it applies (tests);
        /// `winogradTile`: 2 or 4 forces F(2, 3) or F(4, 3), nil takes `WinogradHeight.Transform.preferred`.
        public init(_ g: ConvGeometry, chunkImages: Int = 0, workers: Int = Threads.count,
                    winograd allowed: Bool? = nil, winogradTile: Int? = nil) throws {
            geometry = g
            lowering = Lowering(rows: g.h, cols: g.w, channels: g.cIn, channelStride: g.inPlane,
                                imageStride: g.cIn * g.inPlane, rowStrideChannel: g.kh * g.kw, rowStrideTap: 1)
            widthLowering = Lowering(rows: .identity(g.h.size), cols: g.w, channels: g.cIn, channelStride: g.inPlane,
                                     imageStride: g.cIn * g.inPlane, rowStrideChannel: g.kw, rowStrideTap: 1)
            let rowsL = lowering.rowCount, rowsW = g.cIn * g.kw
            let use = allowed ?? (rowsW >= WinogradHeight.minimumRank)
            let candidate = use && WinogradHeight.applies(g.h)
                ? WinogradHeight(g.h, width: g.w.output, tile: winogradTile) : nil
            let wino = candidate.flatMap { $0.fits(rows: max(rowsW, g.cOut)) ? $0 : nil }
            winograd = wino
            let midPlane = g.h.size * g.w.output
            let perImage = wino.map { ConvWorkspace.saturatingSumOfProducts(
                [[rowsW, midPlane], [$0.points, rowsW, $0.columnsPerImage], [$0.points, g.cOut, $0.columnsPerImage]]) }
                ?? ConvWorkspace.saturatingSumOfProducts([[rowsL, g.outPlane], [g.cOut, g.outPlane]])
            split = BatchSplit(batch: g.batch, perImage: perImage, forcedChunk: chunkImages, workers: workers)
            ld = ConvWorkspace.leadingDimension(ConvWorkspace.saturatingSumOfProducts([[split.chunk, g.outPlane]]))
            if let wino {
                ldWidth = ConvWorkspace.leadingDimension(ConvWorkspace.saturatingSumOfProducts([[split.chunk, midPlane]]))
                ldT = ConvWorkspace.leadingDimension(ConvWorkspace.saturatingSumOfProducts([[split.chunk, wino.columnsPerImage]]))
                try Dimensions.checkMatrix(rowsW, ldWidth, "the width-lowered input")
                try Dimensions.checkMatrix(wino.points * rowsW, ldT, "the transformed input")
                try Dimensions.checkMatrix(wino.points * g.cOut, ldT, "the transformed output")
            } else {
                ldWidth = 0
                ldT = 0
                try Dimensions.checkMatrix(rowsL, ld, "the lowered input")
                try Dimensions.checkMatrix(g.cOut, ld, "the output of a chunk")
            }
        }

        /// Leading dimensions of the Winograd mode's width-lowered and transformed matrices.
        let ldWidth: Int
        let ldT: Int

        /// Images per chunk.
        public var chunk: Int { split.chunk }
        /// Leading dimension of the channel-major chunk matrices.
        public let ld: Int
        var columns: Int { ld }
        /// Floats of workspace of one worker: lowered input (reused for its gradient in the
        /// backward pass), channel-major output (or output gradient); in the Winograd mode the
        /// width-lowered input, its transform and the transformed output.
        var workerCounts: [Int] {
            let g = geometry, rowsW = g.cIn * g.kw
            if let w = winograd { return [rowsW * ldWidth, w.points * rowsW * ldT, w.points * g.cOut * ldT] }
            return [lowering.rowCount * columns, geometry.cOut * columns, 0]
        }
        /// Parts of the workspace per worker.
        static let parts = 3
        /// Floats of workspace of the forward pass (all workers).
        public var forwardCounts: [Int] { split.replicate(workerCounts) }
        /// Floats of workspace of the backward pass (all workers).
        public var backwardCounts: [Int] { split.replicate(workerCounts) }
        public var forwardWorkspace: Int { (try? ConvWorkspace.total(forwardCounts)) ?? Int.max }
        public var backwardWorkspace: Int { (try? ConvWorkspace.total(backwardCounts)) ?? Int.max }
    }

    /// y (batch, c_out, outH, outW) from x (batch, c_in, H, W), K (c_out, c_in, kh, kw) and an
    /// optional bias (c_out). Returns whether y is finite (scanned chunk by chunk as written).
    @discardableResult
    public static func forward(_ p: Plan, x: UnsafePointer<Float>, kernel k: UnsafePointer<Float>,
                               bias: UnsafePointer<Float>?, y: UnsafeMutablePointer<Float>,
                               workspace: UnsafeMutablePointer<Float>? = nil, workspaceCount: Int = 0) throws -> Bool {
        let g = p.geometry
        return try ConvWorkspace.with(p.forwardCounts, external: workspace, externalCount: workspaceCount,
                                      "the conv2d forward pass") { s in
            if p.winograd != nil {
                return try forwardWinograd(p, x: x, kernel: k, bias: bias, y: y, workspace: s)
            }
            let rowsL = p.lowering.rowCount
            return p.split.runCheckingOutput(y, perImage: g.cOut * g.outPlane) { w, n0, nb in
                let (cols, ycm) = (s[Plan.parts * w], s[Plan.parts * w + 1])
                let n = nb * g.outPlane, ld = p.ld
                let xc = x + n0 * g.cIn * g.inPlane
                var lowered = UnsafePointer(cols), ldl = ld
                if p.lowering.isPlainView(images: nb) {
                    lowered = xc; ldl = p.lowering.channelStride
                } else {
                    p.lowering.lower(xc, images: nb, into: cols, ld: ld)
                }
                Blas.gemm(false, false, g.cOut, n, rowsL, 1, k, rowsL, lowered, ldl, 0, ycm, ld)
                BatchLayout.scatter(ycm, ld: ld, channels: g.cOut, plane: g.outPlane, images: nb, bias: bias,
                                    into: y + n0 * g.cOut * g.outPlane)
            }
        }
    }

    /// dx, dK and (when `dbias` is given) dbias from the output gradient gy (batch, c_out,
    /// outH, outW), the input x and the kernel K. Every output is overwritten.
    public static func backward(_ p: Plan, gradOutput gy: UnsafePointer<Float>, x: UnsafePointer<Float>,
                                kernel k: UnsafePointer<Float>, dx: UnsafeMutablePointer<Float>,
                                dKernel dk: UnsafeMutablePointer<Float>, dbias: UnsafeMutablePointer<Float>?,
                                workspace: UnsafeMutablePointer<Float>? = nil, workspaceCount: Int = 0) throws {
        let g = p.geometry
        try ConvWorkspace.with(p.backwardCounts, external: workspace, externalCount: workspaceCount,
                               "the conv2d backward pass") { s in
            if p.winograd != nil {
                try backwardWinograd(p, gradOutput: gy, x: x, kernel: k, dx: dx, dKernel: dk, dbias: dbias, workspace: s)
                return
            }
            let rowsL = p.lowering.rowCount, split = p.split
            let kernelCount = g.cOut * rowsL
            try withScratch(max(split.workers - 1, 1) * kernelCount, "the kernel gradient partial sums") { partials in
            try withDoubleScratch(BiasAccumulator.scratchCount(channels: g.cOut, split: split),
                                  enabled: dbias != nil, "the bias gradient") { sums in
            let biasSums = BiasAccumulator(channels: g.cOut, split: split, scratch: sums)
            split.run { w, n0, nb in
                let (cols, gcm) = (s[Plan.parts * w], s[Plan.parts * w + 1])
                let dkw = w == 0 ? dk : partials + (w - 1) * kernelCount
                let n = nb * g.outPlane, ld = p.ld
                let xc = x + n0 * g.cIn * g.inPlane
                let dxc = dx + n0 * g.cIn * g.inPlane
                biasSums.gather(worker: w, gy + n0 * g.cOut * g.outPlane, plane: g.outPlane, images: nb, into: gcm, ld: ld)
                let beta: Float = n0 == split.images(w).lowerBound ? 0 : 1
                if p.lowering.isPlainView(images: nb) {
                    let ldx = p.lowering.channelStride
                    Blas.gemm(false, true, g.cOut, rowsL, n, 1, gcm, ld, xc, ldx, beta, dkw, rowsL)
                    Blas.gemm(true, false, rowsL, n, g.cOut, 1, k, rowsL, gcm, ld, 0, dxc, ldx)
                } else {
                    p.lowering.lower(xc, images: nb, into: cols, ld: ld)
                    Blas.gemm(false, true, g.cOut, rowsL, n, 1, gcm, ld, cols, ld, beta, dkw, rowsL)
                    Blas.gemm(true, false, rowsL, n, g.cOut, 1, k, rowsL, gcm, ld, 0, cols, ld)
                    p.lowering.liftAdd(cols, images: nb, ld: ld, into: dxc)
                }
            }
            split.reduce(partials, count: kernelCount, into: dk)
            if let dbias { biasSums.write(dbias) }
            }
            }
        }
    }
}

/// The bias gradient dbias[o] = sum_{n, p} G[n, o, p], accumulated in float64 chunk by chunk
/// per worker and then over the workers in order (a fixed order for a given thread count),
/// fused with the layout change of G. The scratch holds, per worker, `channels` totals and
/// `channels * chunk` per-image sums.
struct BiasAccumulator {
    let channels: Int
    let stride: Int
    let scratch: UnsafeMutablePointer<Double>?
    let workers: Int

    init(channels: Int, split: BatchSplit, scratch: UnsafeMutablePointer<Double>?) {
        self.channels = channels
        self.scratch = scratch
        workers = split.workers
        stride = channels * (split.chunk + 1)
        if let scratch {
            for w in 0..<workers { scratch.advanced(by: w * stride).update(repeating: 0, count: channels) }
        }
    }

    /// Doubles of scratch needed for `channels` channels and the batch split `split`.
    static func scratchCount(channels: Int, split: BatchSplit) -> Int { split.workers * channels * (split.chunk + 1) }

    /// Moves worker `w`'s chunk of the output gradient to channel-major `g` and adds its sums.
    func gather(worker w: Int, _ gy: UnsafePointer<Float>, plane: Int, images: Int,
                into g: UnsafeMutablePointer<Float>, ld: Int) {
        let total = scratch.map { $0 + w * stride }
        let partial = total.map { $0 + channels }
        BatchLayout.gather(gy, channels: channels, plane: plane, images: images, into: g, ld: ld, sums: partial)
        guard let partial, let total else { return }
        for o in 0..<channels {
            var s = 0.0
            for n in 0..<images { s += partial[o * images + n] }
            total[o] += s
        }
    }

    /// Adds the sums of worker `w`'s chunk of the output gradient (NCHW) without moving it.
    func add(worker w: Int, _ gy: UnsafePointer<Float>, plane: Int, images: Int) {
        guard let total = scratch.map({ $0 + w * stride }) else { return }
        for o in 0..<channels {
            var s = 0.0
            for n in 0..<images { s += BatchLayout.sum(gy + (n * channels + o) * plane, plane) }
            total[o] += s
        }
    }

    func write(_ out: UnsafeMutablePointer<Float>) {
        guard let scratch else { return }
        for o in 0..<channels {
            var s = 0.0
            for w in 0..<workers { s += scratch[w * stride + o] }
            out[o] = Float(s)
        }
    }
}

/// Runs `body` with `count` doubles of scratch when `enabled` (nil otherwise); allocation
/// failure is `.outOfMemory`, never a trap.
func withDoubleScratch<R>(_ count: Int, enabled: Bool, _ what: String,
                          _ body: (UnsafeMutablePointer<Double>?) throws -> R) throws -> R {
    if !enabled { return try body(nil) }
    let (bytes, overflow) = max(count, 1).multipliedReportingOverflow(by: MemoryLayout<Double>.stride)
    guard !overflow, let raw = malloc(bytes) else {
        throw FNLError.outOfMemory("cannot allocate \(count) doubles of workspace for \(what)")
    }
    defer { free(raw) }
    return try body(raw.bindMemory(to: Double.self, capacity: max(count, 1)))
}
