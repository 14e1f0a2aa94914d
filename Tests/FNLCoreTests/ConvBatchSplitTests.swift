import XCTest
import CBLAS
@testable import FNLCore

final class ConvBatchSplitTests: XCTestCase {
    /// Every image is visited exactly once, by the worker that owns it, in chunks of at most
    /// `chunk` images; worker ranges are contiguous and balanced.
    func testChunksCoverTheBatchOnce() {
        for batch in [1, 2, 3, 7, 64, 129] {
            for workers in [1, 2, 3, 5] {
                for forced in [0, 1, 4] {
                    let s = BatchSplit(batch: batch, perImage: 1000, forcedChunk: forced, workers: workers)
                    XCTAssertEqual(s.workers, min(workers, batch))
                    var owner = [Int](repeating: -1, count: batch)
                    let lock = NSLock()
                    s.run { w, n0, nb in
                        XCTAssertTrue(nb >= 1 && nb <= s.chunk)
                        XCTAssertTrue(s.images(w).contains(n0) && s.images(w).contains(n0 + nb - 1))
                        lock.lock()
                        for n in n0..<(n0 + nb) { XCTAssertEqual(owner[n], -1); owner[n] = w }
                        lock.unlock()
                    }
                    XCTAssertFalse(owner.contains(-1), "batch \(batch) workers \(workers)")
                    let sizes = (0..<s.workers).map { s.images($0).count }
                    XCTAssertLessThanOrEqual(sizes.max()! - sizes.min()!, 1)
                }
            }
        }
    }

    /// The partial sums of workers 1... are added to worker 0's in order.
    func testReduceAddsPartialsInOrder() {
        let s = BatchSplit(batch: 8, perImage: 1, workers: 3)
        var total: [Float] = [1, 2]
        let partials: [Float] = [10, 20, 100, 200]
        total.withUnsafeMutableBufferPointer { t in s.reduce(partials, count: 2, into: t.baseAddress!) }
        XCTAssertEqual(total, [111, 222])
    }

    /// Inside a multi-worker split OpenBLAS runs single-threaded; the budget comes back after.
    func testSerialBlasInsideTheSplit() throws {
        defer { try? Threads.set(Threads.available) }
        try Threads.set(2)
        let s = BatchSplit(batch: 4, perImage: 1, workers: 2)
        let seen = UnsafeMutablePointer<Int32>.allocate(capacity: 2)
        defer { seen.deallocate() }
        s.run { w, _, _ in seen[w] = openblas_get_num_threads() }
        XCTAssertEqual([seen[0], seen[1]], [1, 1])
        XCTAssertEqual(openblas_get_num_threads(), 2)
    }
}
