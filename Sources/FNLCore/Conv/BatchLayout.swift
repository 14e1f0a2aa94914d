/// Moves activations between the NCHW layout of the API and the channel-major layout
/// (C, images * plane) in which one matrix product covers a whole chunk of the batch.
public enum BatchLayout {
    /// y[n, o, p] = ycm[o, n * plane + p] + bias[o] for n < images, o < channels, p < plane,
    /// `y` pointing at the first image of the chunk (NCHW with `channels` channels).
    /// `ycm` has leading dimension `ld` >= images * plane.
    public static func scatter(_ ycm: UnsafePointer<Float>, ld: Int, channels: Int, plane: Int, images: Int,
                               bias: UnsafePointer<Float>?, into y: UnsafeMutablePointer<Float>) {
        Threads.parallelFor(channels * images, work: channels * images * plane) { task in
            let o = task / images, n = task % images
            let src = ycm + o * ld + n * plane
            let dst = y + (n * channels + o) * plane
            if let bias {
                let b = bias[o]
                for p in 0..<plane { dst[p] = src[p] + b }
            } else {
                dst.update(from: src, count: plane)
            }
        }
    }

    /// g[o, n * plane + p] = gy[n, o, p] (the transpose of `scatter` without bias). When
    /// `sums` is given, sums[o * images + n] = sum_p gy[n, o, p] (the bias gradient of this
    /// chunk, per image, summed in float64 with SIMD partial sums).
    public static func gather(_ gy: UnsafePointer<Float>, channels: Int, plane: Int, images: Int,
                              into g: UnsafeMutablePointer<Float>, ld: Int, sums: UnsafeMutablePointer<Double>?) {
        Threads.parallelFor(channels * images, work: channels * images * plane) { task in
            let o = task / images, n = task % images
            let src = gy + (n * channels + o) * plane
            (g + o * ld + n * plane).update(from: src, count: plane)
            if let sums { sums[task] = sum(src, plane) }
        }
    }

    /// sum_i x[i] in float64 (float SIMD partial sums over blocks of 16 lanes).
    @inline(__always)
    static func sum(_ x: UnsafePointer<Float>, _ count: Int) -> Double {
        var acc = SIMD16<Float>(repeating: 0)
        var total = 0.0
        var i = 0
        while i + 16 <= count {
            acc += UnsafeRawPointer(x + i).loadUnaligned(as: SIMD16<Float>.self)
            i += 16
            if i & 1023 == 0 { total += Double(acc.sum()); acc = SIMD16<Float>(repeating: 0) }
        }
        total += Double(acc.sum())
        while i < count { total += Double(x[i]); i += 1 }
        return total
    }
}
