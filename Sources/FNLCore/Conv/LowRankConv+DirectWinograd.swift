/// The kh x 1 stage (kh = 3) of the direct fused path by Winograd F(m, 3) (`WinogradHeight`:
/// its transforms and matrices), with the products of the transformed matrices run by the
/// direct convolution's register-blocked kernels as 1 x 1 convolutions (`AxisConv` with
/// kernel 1 over the columns of a chunk, read in place) instead of sgemm, which is slow on
/// these thin products (64 x 64 x columns: ~50 GFLOP/s against the kernels' ~90 on one EPYC
/// core). For a chunk of images, with Kt_xi the transformed A' (c_out x r):
///
///     forward    Zt_xi = B^T-transform(z),  Yt_xi = Kt_xi Zt_xi,  y = A^T-transform(Yt) + bias
///     backward   dYt_xi = adjoint A^T-transform(G)
///                dKt_xi += dYt_xi Zt_xi^T                 (summed over the chunks)
///                dZt_xi = Kt_xi^T dYt_xi,  dz = adjoint B^T-transform(dZt)
///
/// and dA' = G^T-transform(dKt) once at the end. F(4, 3) does 6 products per 4 output rows
/// where the direct stage does 12 (3 taps x 4 rows). Measured on the AVX2 EPYC against the
/// direct kh x 1 stage (N=128, C=64, k=3, pad 1, saved intermediate; medians of 5-9
/// alternations in one process), forward / backward, 2 threads: r = 64 H=W=8 1.09x / 1.02x,
/// H=W=16 1.07x / 1.05x, N=64 H=W=32 1.14x / 1.01x (1 thread 1.13x / 1.07x, 1.14x / 1.12x,
/// 1.15x / 1.13x); r = 48 1.08x-1.09x / 0.98x-1.12x; r = 32 1.01x-1.07x / 0.99x-1.10x; r = 19
/// 0.93x-1.03x / 0.93x-0.99x, hence `preferred`.
extension LowRankConv {
    struct DirectWinograd {
        let transform: WinogradHeight

        /// The default: products of at least 32 x 32 (r and c_out), where the kernels run as
        /// fast on the transformed matrices as on the planes; below, the transforms cost what
        /// the products save.
        static func preferred(rank r: Int, cOut: Int) -> Bool { r >= 32 && cOut >= 32 }

        /// Applies to a height axis with kernel 3, stride 1 and dilation 1 (where the direct
        /// stages apply). `tile`: 2 or 4 forces F(2, 3) or F(4, 3), nil takes
        /// `WinogradHeight.Transform.preferred`.
        init?(_ g: ConvGeometry, tile: Int? = nil) {
            guard WinogradHeight.applies(g.h) else { return nil }
            transform = WinogradHeight(g.h, width: g.w.output, tile: tile)
        }

        var points: Int { transform.points }

        /// Leading dimension of the transformed matrices of a chunk of `images` images: the
        /// columns rounded up to an odd number of 8-float groups, so that the rows of a matrix
        /// do not all fall in the same cache sets.
        func ld(images: Int) -> Int {
            let groups = (images * transform.columnsPerImage + 7) / 8
            return 8 * (groups % 2 == 0 ? groups + 1 : groups)
        }

        /// Whether the transformed matrices of chunks of `images` images with up to `rows`
        /// channels have sizes that fit in Int32 (the products' planes) without overflow.
        func fits(images: Int, rows: Int) -> Bool {
            let (columns, o1) = images.multipliedReportingOverflow(by: transform.columnsPerImage)
            guard !o1, columns <= Int(Int32.max) - 16 else { return false }
            let (n, o2) = (points * rows).multipliedReportingOverflow(by: ld(images: images))
            return !o2 && n <= Int.max / 8
        }

        /// The 1 x 1 convolution over the columns of a chunk (6-wide output blocks); `fits`
        /// holds for every chunk the plan makes.
        func products(images: Int) -> AxisConv {
            // Cannot fail where `fits` holds: rows 1, 1 <= cols <= Int32.max, kernel 1, padding 0.
            try! AxisConv(axis: .width, rows: 1, cols: images * transform.columnsPerImage, kernel: 1, padding: 0)
        }

        /// Workspace floats of one worker for chunks of up to `chunk` images: Zt, Yt (or dYt),
        /// the products' scratch.
        func workerCounts(cOut: Int, rank r: Int, chunk: Int) -> [Int] {
            let ld = ld(images: chunk), c = max(cOut, r)
            return [points * r * ld, points * cOut * ld,
                    products(images: chunk).scratchCount(inChannels: c, outChannels: c)]
        }

        /// Floats of one point's packed Kt_xi (or its transpose): the packed matrices of point
        /// xi start xi times this into the buffer.
        func packedPerPoint(cOut: Int, rank r: Int) -> Int {
            products(images: 1).packedCount(outChannels: max(cOut, r), inChannels: max(cOut, r))
        }

        /// Floats of the packed Kt_xi (all points).
        func packedCount(cOut: Int, rank r: Int) -> Int { points * packedPerPoint(cOut: cOut, rank: r) }

        /// Packs Kt_xi (or its transpose) of every point for `forward` (or `backward`) from
        /// kt (points x cOut x r, consecutive).
        func pack(_ kt: UnsafePointer<Float>, cOut: Int, rank r: Int, transposed: Bool,
                  into packed: UnsafeMutablePointer<Float>) {
            let conv = products(images: 1), stride = packedPerPoint(cOut: cOut, rank: r)
            for xi in 0..<points {
                let k = kt + xi * cOut * r
                if transposed {
                    conv.pack(k, outChannels: r, inChannels: cOut, outStride: 1, inStride: r, tapStride: 0,
                              into: packed + xi * stride)
                } else {
                    conv.pack(k, outChannels: cOut, inChannels: r, outStride: r, inStride: 1, tapStride: 0,
                              into: packed + xi * stride)
                }
            }
        }

        /// y of `images` images (NCHW, bias added) from their z (channel c of image n at
        /// z + c * channelStride + n * imageStride).
        func forward(_ packed: UnsafePointer<Float>, cOut: Int, rank r: Int, z: UnsafePointer<Float>,
                     channelStride: Int, imageStride: Int, images: Int, bias: UnsafePointer<Float>?,
                     y: UnsafeMutablePointer<Float>, zt: UnsafeMutablePointer<Float>, yt: UnsafeMutablePointer<Float>,
                     scratch: UnsafeMutablePointer<Float>) {
            let ld = ld(images: images), conv = products(images: images)
            let stride = packedPerPoint(cOut: cOut, rank: r)
            transform.inputTransform(z, channels: r, channelStride: channelStride, imageStride: imageStride,
                                     images: images, into: zt, ld: ld)
            for xi in 0..<points {
                conv.forward(packed + xi * stride, outChannels: cOut, inChannels: r, input: zt + xi * r * ld,
                             inStride: ld, output: yt + xi * cOut * ld, outStride: ld, bias: nil, scratch: scratch, inPlace: true)
            }
            transform.outputTransform(yt, channels: cOut, ld: ld, images: images, bias: bias, into: y)
        }

        /// The backward pass of `images` images: dKt_xi (points x cOut x r; overwritten unless
        /// `accumulate`) and dz (r planes of H x W per image, channel c of image n at
        /// dz + c * dzChannelStride + n * dzImageStride) from G (NCHW) and z (as in `forward`).
        func backward(_ packedTransposed: UnsafePointer<Float>, cOut: Int, rank r: Int, gradOutput gy: UnsafePointer<Float>,
                      z: UnsafePointer<Float>, channelStride: Int, imageStride: Int, images: Int,
                      dKt: UnsafeMutablePointer<Float>, accumulate: Bool,
                      dz: UnsafeMutablePointer<Float>, dzChannelStride: Int, dzImageStride: Int,
                      zt: UnsafeMutablePointer<Float>, dyt: UnsafeMutablePointer<Float>,
                      scratch: UnsafeMutablePointer<Float>) {
            let ld = ld(images: images), conv = products(images: images)
            let stride = packedPerPoint(cOut: cOut, rank: r)
            transform.gradOutputTransform(gy, channels: cOut, images: images, into: dyt, ld: ld)
            transform.inputTransform(z, channels: r, channelStride: channelStride, imageStride: imageStride,
                                     images: images, into: zt, ld: ld)
            for xi in 0..<points {
                conv.weightGradient(gradOutput: dyt + xi * cOut * ld, outChannels: cOut, outStride: ld,
                                    input: zt + xi * r * ld, inChannels: r, inStride: ld,
                                    into: dKt + xi * cOut * r, dOutStride: r, dInStride: 1, dTapStride: 1,
                                    accumulate: accumulate, scratch: scratch)
                conv.forward(packedTransposed + xi * stride, outChannels: r, inChannels: cOut, input: dyt + xi * cOut * ld,
                             inStride: ld, output: zt + xi * r * ld, outStride: ld, bias: nil, scratch: scratch, inPlace: true)
            }
            transform.gradInputTransform(zt, channels: r, ld: ld, images: images, into: dz,
                                         channelStride: dzChannelStride, imageStride: dzImageStride)
        }
    }
}
