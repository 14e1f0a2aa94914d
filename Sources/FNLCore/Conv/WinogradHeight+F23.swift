/// Winograd F(2, 3) transforms written out (`WinogradHeight` dispatches here when m = 2),
/// with the +-1 coefficients as adds and subtracts, which the compiler vectorizes. Measured
/// on the 2-core EPYC, fwd+bwd, 1 thread: generic row passes over the matrices took 1.05x-1.09x
/// the time of the dense conv at C=16 H=W=32 and C=64 H=W=8 (transform-heavy shapes).
extension WinogradHeight {
    /// Input row k (0..<4) of tile t, or nil in the padding.
    @inline(__always)
    private func inputRowF23(_ t: Int, _ k: Int) -> Int? {
        let h = 2 * t - padding + k
        return h >= 0 && h < height ? h : nil
    }

    /// Zt_xi (4 x channels x ld) from `images` images of z: channel c of image n is the
    /// height x width plane at z + c * channelStride + n * imageStride.
    func inputTransformF23(_ z: UnsafePointer<Float>, channels: Int, channelStride: Int, imageStride: Int,
                           images: Int, into zt: UnsafeMutablePointer<Float>, ld: Int) {
        let w = width, point = channels * ld
        for c in 0..<channels {
            for n in 0..<images {
                let plane = z + c * channelStride + n * imageStride
                var col = zt + c * ld + n * columnsPerImage
                for t in 0..<tiles {
                    let d0 = inputRowF23(t, 0).map { plane + $0 * w }, d1 = inputRowF23(t, 1).map { plane + $0 * w }
                    let d2 = inputRowF23(t, 2).map { plane + $0 * w }, d3 = inputRowF23(t, 3).map { plane + $0 * w }
                    combineF23(col, d0, 1, d2, -1, w)
                    combineF23(col + point, d1, 1, d2, 1, w)
                    combineF23(col + 2 * point, d2, 1, d1, -1, w)
                    combineF23(col + 3 * point, d1, 1, d3, -1, w)
                    col += w
                }
            }
        }
    }

    /// y (NCHW, `channels` channels, for `images` images) from Yt_xi (4 x channels x ld),
    /// plus bias.
    func outputTransformF23(_ yt: UnsafePointer<Float>, channels: Int, ld: Int, images: Int,
                            bias: UnsafePointer<Float>?, into y: UnsafeMutablePointer<Float>) {
        let w = width, point = channels * ld, outPlane = outHeight * w
        for n in 0..<images {
            for o in 0..<channels {
                let b = bias?[o] ?? 0
                let out = y + (n * channels + o) * outPlane
                var m = yt + o * ld + n * columnsPerImage
                for t in 0..<tiles {
                    let m0 = m, m1 = m + point, m2 = m + 2 * point, m3 = m + 3 * point
                    let top = out + 2 * t * w
                    for i in 0..<w { top[i] = m0[i] + m1[i] + m2[i] + b }
                    if 2 * t + 1 < outHeight {
                        let bottom = top + w
                        for i in 0..<w { bottom[i] = m1[i] - m2[i] - m3[i] + b }
                    }
                    m += w
                }
            }
        }
    }

    /// dYt_xi (4 x channels x ld) from the output gradient g (NCHW, `images` images).
    func gradOutputTransformF23(_ g: UnsafePointer<Float>, channels: Int, images: Int,
                                into dyt: UnsafeMutablePointer<Float>, ld: Int) {
        let w = width, point = channels * ld, outPlane = outHeight * w
        for n in 0..<images {
            for o in 0..<channels {
                let plane = g + (n * channels + o) * outPlane
                var col = dyt + o * ld + n * columnsPerImage
                for t in 0..<tiles {
                    let top = UnsafePointer(plane + 2 * t * w)
                    let bottom: UnsafePointer<Float>? = 2 * t + 1 < outHeight ? top + w : nil
                    combineF23(col, top, 1, nil, 0, w)
                    combineF23(col + point, top, 1, bottom, 1, w)
                    combineF23(col + 2 * point, top, 1, bottom, -1, w)
                    combineF23(col + 3 * point, bottom, -1, nil, 0, w)
                    col += w
                }
            }
        }
    }

    /// dz (overwritten: channels x images planes as in `inputTransform`) from dZt_xi
    /// (4 x channels x ld): dz[2t - ph + k] += sum_xi B^T[xi, k] dZt_xi over the tiles.
    func gradInputTransformF23(_ dzt: UnsafePointer<Float>, channels: Int, ld: Int, images: Int,
                               into dz: UnsafeMutablePointer<Float>, channelStride: Int, imageStride: Int) {
        let w = width, point = channels * ld
        // Row k of B (= column k of B^T): k0 [1 0 0 0], k1 [0 1 -1 1], k2 [-1 1 1 0], k3 [0 0 0 -1].
        // Input row h = 2t - ph + k is written once, from the two tiles that read it: with
        // q = h + ph, k = 0 of tile q/2 and k = 2 of tile q/2 - 1 (q even), or k = 1 of tile
        // (q-1)/2 and k = 3 of tile (q-3)/2 (q odd); rows no tile reads are zero.
        for c in 0..<channels {
            for n in 0..<images {
                let plane = dz + c * channelStride + n * imageStride
                let m = dzt + c * ld + n * columnsPerImage
                for h in 0..<height {
                    let d = plane + h * w, q = h + padding, even = q % 2 == 0
                    let ta = even ? q / 2 : (q - 1) / 2, tb = ta - 1
                    let hasA = ta < tiles, hasB = tb >= 0 && tb < tiles
                    let a0 = m + ta * w, b0 = m + tb * w
                    let (a1, a2, a3) = (a0 + point, a0 + 2 * point, a0 + 3 * point)
                    let (b1, b2, b3) = (b0 + point, b0 + 2 * point, b0 + 3 * point)
                    switch (even, hasA, hasB) {
                    case (true, true, true): for i in 0..<w { d[i] = a0[i] + (b1[i] + b2[i] - b0[i]) }
                    case (true, true, false): d.update(from: a0, count: w)
                    case (true, false, true): for i in 0..<w { d[i] = b1[i] + b2[i] - b0[i] }
                    case (false, true, true): for i in 0..<w { d[i] = (a1[i] - a2[i] + a3[i]) - b3[i] }
                    case (false, true, false): for i in 0..<w { d[i] = a1[i] - a2[i] + a3[i] }
                    case (false, false, true): for i in 0..<w { d[i] = -b3[i] }
                    case (_, false, false): d.update(repeating: 0, count: w)
                    }
                }
            }
        }
    }

    /// out[i] = sa * a[i] + sb * b[i] for i < count, a missing row reading as zeros.
    @inline(__always)
    private func combineF23(_ out: UnsafeMutablePointer<Float>, _ a: UnsafePointer<Float>?, _ sa: Float,
                            _ b: UnsafePointer<Float>?, _ sb: Float, _ count: Int) {
        switch (a, b) {
        case let (a?, b?): for i in 0..<count { out[i] = sa * a[i] + sb * b[i] }
        case let (a?, nil): for i in 0..<count { out[i] = sa * a[i] }
        case let (nil, b?): for i in 0..<count { out[i] = sb * b[i] }
        case (nil, nil): out.update(repeating: 0, count: count)
        }
    }
}
