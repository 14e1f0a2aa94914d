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
    /// leading dimension images*outPlane).
    public func lower(_ src: UnsafePointer<Float>, images: Int, into dst: UnsafeMutablePointer<Float>) {
        let ld = images * outPlane
        let work = rowCount * ld
        let kw = cols.kernel
        Threads.parallelFor(rowCount, work: work) { task in
            let c = task / taps, t = task % taps
            let a = t / kw, b = t % kw
            let row = dst + (c * rowStrideChannel + t * rowStrideTap) * ld
            for n in 0..<images {
                lowerPlane(src + c * channelStride + n * imageStride, a, b, row + n * outPlane)
            }
        }
    }

    /// One output plane of tap (a, b): out[oh, ow] = plane[oh*sh + offH, ow*sw + offW] or 0.
    @inline(__always)
    private func lowerPlane(_ plane: UnsafePointer<Float>, _ a: Int, _ b: Int, _ out: UnsafeMutablePointer<Float>) {
        let outW = cols.output, inW = cols.size
        let vh = rows.valid(a), vw = cols.valid(b)
        let offH = rows.offset(a), offW = cols.offset(b)
        let sh = rows.stride, sw = cols.stride
        if vh.lowerBound > 0 { out.update(repeating: 0, count: vh.lowerBound * outW) }
        if vh.upperBound < rows.output {
            (out + vh.upperBound * outW).update(repeating: 0, count: (rows.output - vh.upperBound) * outW)
        }
        if vh.isEmpty { return }
        // Whole rows that are contiguous in both planes: one copy.
        if sw == 1 && offW == 0 && outW == inW && sh == 1 {
            (out + vh.lowerBound * outW).update(from: plane + (vh.lowerBound + offH) * inW, count: vh.count * outW)
            return
        }
        for oh in vh {
            let srow = plane + (oh * sh + offH) * inW
            let drow = out + oh * outW
            if vw.lowerBound > 0 { drow.update(repeating: 0, count: vw.lowerBound) }
            if vw.upperBound < outW { (drow + vw.upperBound).update(repeating: 0, count: outW - vw.upperBound) }
            if vw.isEmpty { continue }
            if sw == 1 {
                (drow + vw.lowerBound).update(from: srow + vw.lowerBound + offW, count: vw.count)
            } else {
                for ow in vw { drow[ow] = srow[ow * sw + offW] }
            }
        }
    }

    /// The adjoint of `lower`: for every channel and image, the input plane at `dst` is
    /// overwritten with sum over taps of the lowered gradient `lowered` scattered back to
    /// the input positions it was read from (padding positions dropped).
    public func liftAdd(_ lowered: UnsafePointer<Float>, images: Int, into dst: UnsafeMutablePointer<Float>) {
        let ld = images * outPlane
        let work = rowCount * ld
        let kw = cols.kernel
        Threads.parallelFor(channels * images, work: work) { task in
            let c = task / images, n = task % images
            let plane = dst + c * channelStride + n * imageStride
            plane.update(repeating: 0, count: inPlane)
            for t in 0..<taps {
                let a = t / kw, b = t % kw
                let src = lowered + (c * rowStrideChannel + t * rowStrideTap) * ld + n * outPlane
                liftPlane(src, a, b, plane)
            }
        }
    }

    @inline(__always)
    private func liftPlane(_ src: UnsafePointer<Float>, _ a: Int, _ b: Int, _ plane: UnsafeMutablePointer<Float>) {
        let outW = cols.output, inW = cols.size
        let vh = rows.valid(a), vw = cols.valid(b)
        if vh.isEmpty || vw.isEmpty { return }
        let offH = rows.offset(a), offW = cols.offset(b)
        let sh = rows.stride, sw = cols.stride
        if sw == 1 && offW == 0 && outW == inW && sh == 1 {
            addInto(plane + (vh.lowerBound + offH) * inW, src + vh.lowerBound * outW, vh.count * outW)
            return
        }
        for oh in vh {
            let drow = plane + (oh * sh + offH) * inW
            let srow = src + oh * outW
            if sw == 1 {
                addInto(drow + vw.lowerBound + offW, srow + vw.lowerBound, vw.count)
            } else {
                for ow in vw { drow[ow * sw + offW] += srow[ow] }
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
