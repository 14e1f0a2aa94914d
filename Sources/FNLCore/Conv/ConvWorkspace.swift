/// Batch-sized scratch of the convolutions. The kernels process the batch in chunks of
/// images so that the lowered matrices stay near the cache size and the workspace does not
/// grow with the batch; the caller may pass one buffer and reuse it across calls (training
/// then does not allocate per step), else a temporary one is allocated.
public enum ConvWorkspace {
    /// Each part starts on a 64-byte boundary relative to the buffer start.
    static let alignment = 16

    /// Floats of lowered data per chunk the chunking aims at (16 MiB): large enough for
    /// efficient matrix products, small enough to stay mostly in the last-level cache.
    public static let targetChunkFloats = 1 << 22

    /// The number of images per chunk for `perImage` floats of scratch per image: about
    /// `targetChunkFloats` worth, at least 1, at most `batch`, balanced so that the chunks
    /// have nearly equal sizes. `forced` (> 0) overrides the target (tests).
    public static func chunk(batch: Int, perImage: Int, forced: Int = 0) -> Int {
        var nb = forced > 0 ? forced : max(1, targetChunkFloats / max(perImage, 1))
        nb = min(nb, batch)
        let chunks = (batch + nb - 1) / nb
        return (batch + chunks - 1) / chunks
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
