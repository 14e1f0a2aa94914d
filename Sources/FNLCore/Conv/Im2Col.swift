/// The lowering ("im2col") that turns a convolution over a batch into one matrix product.
///
/// The input is a stack of planes `in[c, n]` (channel c < channels, image n), each a row-major
/// `rows.size x cols.size` plane at `src + c * channelStride + n * imageStride`. The lowered
/// matrix L has one row per (channel, tap) and one column per (image, output pixel):
///
///     L[row(c, a, b), n * outPlane + oh * cols.output + ow]
///         = in[c, n][oh * rows.stride + rows.offset(a), ow * cols.stride + cols.offset(b)]
///
/// (zero where the index falls into the padding), with
/// `row(c, a, b) = c * rowStrideChannel + (a * cols.kernel + b) * rowStrideTap`. Then a
/// convolution is `Y (outChannels x nb*outPlane) = Kmat (outChannels x rowCount) L`.
///
/// Layouts used by fnl:
/// - dense conv: NCHW input, rows (c, a, b) so that Kmat is the kernel (c_out, c_in, kh, kw)
///   read as a (c_out x c_in*kh*kw) matrix;
/// - fused low-rank stage 1 (1 x kw): rows axis the identity, rows (c, b) match V's rows c*kw + b;
/// - fused low-rank stage 2 (kh x 1): cols axis the identity, input the channel-major
///   intermediate (r, N, H, Wo), rows (a, j) = a*r + j so that Kmat is U read as (c_out x kh*r).
///
/// `liftAdd` is the adjoint ("col2im"): it sums lowered gradients back into input planes.
/// Both run in parallel over the thread budget; every output element is written by exactly
/// one task, so the result does not depend on the number of threads.
public struct Lowering {
    public let rows: ConvAxis
    public let cols: ConvAxis
    public let channels: Int
    public let channelStride: Int
    public let imageStride: Int
    public let rowStrideChannel: Int
    public let rowStrideTap: Int

    public init(rows: ConvAxis, cols: ConvAxis, channels: Int, channelStride: Int, imageStride: Int,
                rowStrideChannel: Int, rowStrideTap: Int) {
        self.rows = rows; self.cols = cols; self.channels = channels
        self.channelStride = channelStride; self.imageStride = imageStride
        self.rowStrideChannel = rowStrideChannel; self.rowStrideTap = rowStrideTap
    }

    public var taps: Int { rows.kernel * cols.kernel }
    public var rowCount: Int { channels * taps }
    public var inPlane: Int { rows.size * cols.size }
    public var outPlane: Int { rows.output * cols.output }

    /// True when L is the input itself read channel-major (1x1, stride 1, no padding) and
    /// the planes of consecutive images are adjacent: then L[c, :] = in[c, 0...] needs no copy.
    public func isPlainView(images: Int) -> Bool {
        rows.isIdentity && cols.isIdentity && (images == 1 || imageStride == inPlane)
    }

    /// Writes L for `images` images (starting at `src`) into `dst` (rowCount x images*outPlane,
    /// leading dimension `ld` >= images*outPlane).
    public func lower(_ src: UnsafePointer<Float>, images: Int, into dst: UnsafeMutablePointer<Float>, ld: Int) {
        let work = rowCount * images * outPlane
        Threads.parallelFor(rowCount, work: work) { task in
            let c = task / taps, t = task % taps
            let tap = Tap(self, t)
            let row = dst + (c * rowStrideChannel + t * rowStrideTap) * ld
            for n in 0..<images {
                lowerPlane(src + c * channelStride + n * imageStride, tap, row + n * outPlane)
            }
        }
    }

    /// The valid output ranges and input offsets of one tap (a, b).
    struct Tap {
        let vh: Range<Int>, vw: Range<Int>
        let offH: Int, offW: Int
        /// Stride 1 on both axes and equal input/output widths: the tap is one shift of the
        /// whole plane by `shift` = offH * width + offW (plus zeroed edge columns).
        let contiguous: Bool
        let shift: Int
        init(_ l: Lowering, _ t: Int) {
            let a = t / l.cols.kernel, b = t % l.cols.kernel
            vh = l.rows.valid(a); vw = l.cols.valid(b)
            offH = l.rows.offset(a); offW = l.cols.offset(b)
            contiguous = l.rows.stride == 1 && l.cols.stride == 1 && l.cols.output == l.cols.size
            shift = offH * l.cols.size + offW
        }
    }

    /// One output plane of a tap: out[oh, ow] = plane[oh*sh + offH, ow*sw + offW] or 0.
    @inline(__always)
    private func lowerPlane(_ plane: UnsafePointer<Float>, _ tap: Tap, _ out: UnsafeMutablePointer<Float>) {
        let outW = cols.output, inW = cols.size
        let vh = tap.vh, vw = tap.vw
        if vh.isEmpty || vw.isEmpty { out.update(repeating: 0, count: outPlane); return }
        if vh.lowerBound > 0 { out.update(repeating: 0, count: vh.lowerBound * outW) }
        if vh.upperBound < rows.output {
            (out + vh.upperBound * outW).update(repeating: 0, count: (rows.output - vh.upperBound) * outW)
        }
        if tap.contiguous {
            // dst[i] = src[i + shift] over the valid rows, clamped to the plane; the entries of
            // invalid columns (read from a neighbouring row or clamped away) are zeroed after.
            let lo0 = vh.lowerBound * outW, hi0 = vh.upperBound * outW
            let lo = max(lo0, -tap.shift), hi = min(hi0, inPlane - tap.shift)
            if lo > lo0 { (out + lo0).update(repeating: 0, count: lo - lo0) }
            if hi < hi0 { (out + max(hi, lo0)).update(repeating: 0, count: hi0 - max(hi, lo0)) }
            if lo < hi { (out + lo).update(from: plane + lo + tap.shift, count: hi - lo) }
            if vw.lowerBound > 0 || vw.upperBound < outW {
                for oh in vh {
                    let drow = out + oh * outW
                    for ow in 0..<vw.lowerBound { drow[ow] = 0 }
                    for ow in vw.upperBound..<outW { drow[ow] = 0 }
                }
            }
            return
        }
        let sh = rows.stride, sw = cols.stride
        for oh in vh {
            let srow = plane + (oh * sh + tap.offH) * inW
            let drow = out + oh * outW
            if vw.lowerBound > 0 { drow.update(repeating: 0, count: vw.lowerBound) }
            if vw.upperBound < outW { (drow + vw.upperBound).update(repeating: 0, count: outW - vw.upperBound) }
            if sw == 1 {
                (drow + vw.lowerBound).update(from: srow + vw.lowerBound + tap.offW, count: vw.count)
            } else {
                for ow in vw { drow[ow] = srow[ow * sw + tap.offW] }
            }
        }
    }

    /// The adjoint of `lower`: for every channel and image, the input plane at `dst` is
    /// overwritten with sum over taps of the lowered gradient `lowered` scattered back to
    /// the input positions it was read from (padding positions dropped); `lowered` has
    /// leading dimension `ld`. `lowered` is used
    /// as scratch: its entries at padding positions may be set to zero.
    public func liftAdd(_ lowered: UnsafeMutablePointer<Float>, images: Int, ld: Int, into dst: UnsafeMutablePointer<Float>) {
        let work = rowCount * images * outPlane
        let tapInfo = (0..<taps).map { Tap(self, $0) }
        tapInfo.withUnsafeBufferPointer { tapInfo in
            Threads.parallelFor(channels * images, work: work) { task in
                let c = task / images, n = task % images
                let plane = dst + c * channelStride + n * imageStride
                let first = lowered + c * rowStrideChannel * ld + n * outPlane
                // The first tap is copied over the plane when it can be (one pass instead of
                // zeroing and adding), the others are added.
                if !liftFirstPlane(first, tapInfo[0], plane) {
                    plane.update(repeating: 0, count: inPlane)
                    liftPlane(first, tapInfo[0], plane)
                }
                for t in 1..<taps {
                    let src = lowered + (c * rowStrideChannel + t * rowStrideTap) * ld + n * outPlane
                    liftPlane(src, tapInfo[t], plane)
                }
            }
        }
    }

    /// For a contiguous tap (a shifted copy of the plane): zeroes the lowered entries of its
    /// invalid columns and returns the range lo..<hi of `src` that lands at plane[i + shift],
    /// over the valid rows clamped to the plane (the zeros land harmlessly).
    @inline(__always)
    private func contiguousSpan(_ src: UnsafeMutablePointer<Float>, _ tap: Tap) -> Range<Int> {
        let outW = cols.output, vh = tap.vh, vw = tap.vw
        if vh.isEmpty || vw.isEmpty { return 0..<0 }
        if vw.lowerBound > 0 || vw.upperBound < outW {
            for oh in vh {
                let srow = src + oh * outW
                for ow in 0..<vw.lowerBound { srow[ow] = 0 }
                for ow in vw.upperBound..<outW { srow[ow] = 0 }
            }
        }
        let lo = max(vh.lowerBound * outW, -tap.shift), hi = min(vh.upperBound * outW, inPlane - tap.shift)
        return lo..<max(lo, hi)
    }

    /// For a contiguous tap: plane = the tap's contribution (zero where it has none), as
    /// `liftPlane` would add it to a zeroed plane. False (nothing written) for other taps.
    @inline(__always)
    private func liftFirstPlane(_ src: UnsafeMutablePointer<Float>, _ tap: Tap, _ plane: UnsafeMutablePointer<Float>) -> Bool {
        guard tap.contiguous else { return false }
        let span = contiguousSpan(src, tap)
        if span.isEmpty {
            plane.update(repeating: 0, count: inPlane)
            return true
        }
        let start = span.lowerBound + tap.shift, end = span.upperBound + tap.shift
        plane.update(repeating: 0, count: start)
        (plane + start).update(from: src + span.lowerBound, count: span.count)
        (plane + end).update(repeating: 0, count: inPlane - end)
        return true
    }

    @inline(__always)
    private func liftPlane(_ src: UnsafeMutablePointer<Float>, _ tap: Tap, _ plane: UnsafeMutablePointer<Float>) {
        let outW = cols.output, inW = cols.size
        let vh = tap.vh, vw = tap.vw
        if vh.isEmpty || vw.isEmpty { return }
        if tap.contiguous {
            let span = contiguousSpan(src, tap)
            if !span.isEmpty { addInto(plane + span.lowerBound + tap.shift, src + span.lowerBound, span.count) }
            return
        }
        let sh = rows.stride, sw = cols.stride
        for oh in vh {
            let drow = plane + (oh * sh + tap.offH) * inW
            let srow = src + oh * outW
            if sw == 1 {
                addInto(drow + vw.lowerBound + tap.offW, srow + vw.lowerBound, vw.count)
            } else {
                for ow in vw { drow[ow * sw + tap.offW] += srow[ow] }
            }
        }
    }
}

/// dst[i] += src[i] for i < count (SIMD).
@inline(__always)
func addInto(_ dst: UnsafeMutablePointer<Float>, _ src: UnsafePointer<Float>, _ count: Int) {
    var i = 0
    while i + 16 <= count {
        let s = UnsafeRawPointer(src + i).loadUnaligned(as: SIMD16<Float>.self)
        let d = UnsafeRawPointer(dst + i).loadUnaligned(as: SIMD16<Float>.self)
        UnsafeMutableRawPointer(dst + i).storeBytes(of: d + s, as: SIMD16<Float>.self)
        i += 16
    }
    while i < count { dst[i] += src[i]; i += 1 }
}
