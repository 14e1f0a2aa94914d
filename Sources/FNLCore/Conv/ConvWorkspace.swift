/// Batch-sized scratch of the convolutions. The kernels process the batch in chunks of
/// images so that the lowered matrices stay near the cache size and the workspace does not
/// grow with the batch; the caller may pass one buffer and reuse it across calls (training
/// then does not allocate per step), else a temporary one is allocated.
public enum ConvWorkspace {
    /// Each part starts on a 64-byte boundary relative to the buffer start.
    static let alignment = 16

    /// Floats of scratch per chunk the chunking aims at (per worker, `BatchSplit`): 1 MiB, so
    /// that a chunk's lowered matrices stay in the core's L2 cache between the lowering and
    /// the products (measured on the 2-core EPYC: chunks of 8-16 MiB were 1.5-3x slower
    /// single-threaded), while chunks stay large enough for efficient sgemm.
    public static let targetChunkFloats = 1 << 18

    /// The number of images per chunk for `perImage` floats of scratch per image: about
    /// `targetChunkFloats` worth, at least 1, at most `batch`, balanced so that the chunks
    /// have nearly equal sizes. `forced` (> 0) overrides the target (tests).
    public static func chunk(batch: Int, perImage: Int, forced: Int = 0, target: Int = targetChunkFloats) -> Int {
        var nb = forced > 0 ? forced : max(1, target / max(perImage, 1))
        nb = min(nb, batch)
        let chunks = (batch + nb - 1) / nb
        return (batch + chunks - 1) / chunks
    }

    /// A leading dimension >= `columns` for channel-major matrices: a multiple of 16 floats
    /// (64-byte rows) holding an odd number of cache lines, so that the rows of a matrix do
    /// not all map to the same cache sets (power-of-two strides such as 128 images x 8 x 8
    /// pixels make OpenBLAS's packing thrash the caches).
    public static func leadingDimension(_ columns: Int) -> Int {
        if columns > Int(Int32.max) { return columns }  // refused by the BLAS checks
        var ld = (columns + 15) / 16 * 16
        if (ld / 16) % 2 == 0 { ld += 16 }
        return ld
    }

    /// sum_i prod_j terms[i][j], saturating at Int.max instead of overflowing (for the
    /// per-image sizes from which chunks are chosen; impossible sizes are refused by the
    /// BLAS-limit checks that follow).
    public static func saturatingSumOfProducts(_ terms: [[Int]]) -> Int {
        var total = 0
        for t in terms {
            var p = 1
            for f in t {
                let (r, o) = p.multipliedReportingOverflow(by: f)
                p = o ? Int.max : r
            }
            let (s, o) = total.addingReportingOverflow(p)
            total = o ? Int.max : s
        }
        return total
    }

    /// Total floats of a partition into `counts` (each part aligned).
    public static func total(_ counts: [Int]) throws -> Int {
        var t = 0
        for c in counts {
            let (a, o1) = c.addingReportingOverflow(alignment - 1)
            let (s, o2) = t.addingReportingOverflow(a / alignment * alignment)
            if o1 || o2 { throw FNLError.outOfMemory("the convolution workspace size overflows") }
            t = s
        }
        return t
    }

    /// Runs `body` with one pointer per entry of `counts`, carved from `external`
    /// (`externalCount` floats, which must suffice) or from a temporary allocation.
    public static func with<R>(_ counts: [Int], external: UnsafeMutablePointer<Float>?, externalCount: Int,
                               _ what: String, _ body: ([UnsafeMutablePointer<Float>]) throws -> R) throws -> R {
        let need = try total(counts)
        func carve(_ base: UnsafeMutablePointer<Float>) throws -> R {
            var parts: [UnsafeMutablePointer<Float>] = []
            var offset = 0
            for c in counts {
                parts.append(base + offset)
                offset += (c + alignment - 1) / alignment * alignment
            }
            return try body(parts)
        }
        if let external {
            try require(externalCount >= need,
                        "the workspace holds \(externalCount) floats but \(what) needs \(need)")
            return try carve(external)
        }
        return try withScratch(need, what) { try carve($0) }
    }
}
