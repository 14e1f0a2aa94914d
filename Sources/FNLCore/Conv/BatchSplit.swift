/// How a convolution spreads its batch over the engine's threads: worker w takes the
/// contiguous images `images(w)` and runs them in chunks of at most `chunk` images, with its
/// own part of the workspace, single-threaded BLAS and its own partial sums of the kernel
/// gradients (added in worker order afterwards, so results depend on the thread count only
/// through that fixed order of the additions).
///
/// One parallel region per call, each core working on its own images from lowering to
/// product to layout change, keeps a chunk's matrices in that core's L2 cache; measured on the
/// 2-core machine, splitting each step (lowering, product, layout) across both cores instead
/// made two threads slower than one.
public struct BatchSplit {
    public let batch: Int
    /// Threads taking part (1 for batch 1 or a budget of 1: then BLAS keeps its threads).
    public let workers: Int
    /// Images per chunk within a worker.
    public let chunk: Int

    /// `perImage`: floats of chunk workspace per image, `chunkFloats` the target per chunk;
    /// `forcedChunk` > 0 fixes the chunk (tests); `workers` defaults to the thread budget.
    public init(batch: Int, perImage: Int, forcedChunk: Int = 0, workers: Int = Threads.count,
                chunkFloats: Int = ConvWorkspace.targetChunkFloats) {
        self.batch = batch
        self.workers = max(1, min(workers, batch))
        let perWorker = (batch + self.workers - 1) / self.workers
        chunk = ConvWorkspace.chunk(batch: perWorker, perImage: perImage, forced: forcedChunk, target: chunkFloats)
    }

    /// The images of worker `w`.
    public func images(_ w: Int) -> Range<Int> {
        (batch * w / workers)..<(batch * (w + 1) / workers)
    }

    /// The workspace partition of all workers: `counts` once per worker.
    public func replicate(_ counts: [Int]) -> [Int] {
        Array((0..<workers).map { _ in counts }.joined())
    }

    /// Runs `body(w, n0, nb)` for every chunk (images n0..<n0+nb of worker w), the workers in
    /// parallel with single-threaded BLAS when there are several.
    public func run(_ body: (_ worker: Int, _ first: Int, _ count: Int) -> Void) {
        func work(_ w: Int) {
            let range = images(w)
            var n0 = range.lowerBound
            while n0 < range.upperBound {
                let nb = min(chunk, range.upperBound - n0)
                body(w, n0, nb)
                n0 += nb
            }
        }
        if workers == 1 { work(0); return }
        Threads.withSerialBlas { Threads.run(workers: workers, work) }
    }

    /// `run(body)`, returning whether every value the chunks wrote to `output` (`perImage`
    /// floats per image, images contiguous) is finite; each chunk's part is scanned right after
    /// the chunk wrote it, while it is still in the worker's cache.
    public func runCheckingOutput(_ output: UnsafePointer<Float>, perImage: Int,
                                  _ body: (_ worker: Int, _ first: Int, _ count: Int) -> Void) -> Bool {
        withUnsafeTemporaryAllocation(of: Float.self, capacity: workers) { sums in
            sums.initialize(repeating: 0)
            run { w, n0, nb in
                body(w, n0, nb)
                sums[w] += Finite.poisonedSum(output + n0 * perImage, nb * perImage)
            }
            return sums.allSatisfy { $0 == 0 }
        }
    }

    /// Adds the `workers - 1` partial results in `partials` (each `count` floats) to `total`,
    /// in worker order.
    public func reduce(_ partials: UnsafePointer<Float>, count: Int, into total: UnsafeMutablePointer<Float>) {
        for w in 1..<max(workers, 1) {
            let p = partials + (w - 1) * count
            for i in 0..<count { total[i] += p[i] }
        }
    }
}
