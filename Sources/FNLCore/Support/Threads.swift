import CBLAS
import Synchronization

/// The engine's thread budget, shared by OpenBLAS and the engine's own parallel loops
/// (`WorkerPool`).
///
/// The two never nest: BLAS called from the engine's parallel loops runs single-threaded
/// (`withSerialBlas`), and other BLAS calls are made from one thread with the whole budget,
/// so at most `count` threads compute at any time.
public enum Threads {
    private static let budget = Atomic<Int>(0)
    /// Callers inside `withSerialBlas`, guarded by `blasLock` with OpenBLAS's thread count.
    nonisolated(unsafe) private static var serialBlasUsers = 0
    private static let blasLock = Mutex<Void>(())

    /// Logical CPUs online, read once (glibc's sysconf reads /sys on every call, which cost
    /// more than small parallel loops themselves).
    public static let available: Int = max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))))

    /// The current budget (defaults to the number of available CPUs).
    public static var count: Int {
        let n = budget.load(ordering: .relaxed)
        return n > 0 ? n : available
    }

    /// Sets the budget for the engine loops and OpenBLAS. `n` must be in 1...1024.
    public static func set(_ n: Int) throws {
        try require(n >= 1 && n <= 1024, "n must be in 1..1024, got \(n)")
        blasLock.withLock { _ in
            budget.store(n, ordering: .relaxed)
            if serialBlasUsers == 0 { openblas_set_num_threads(Int32(n)) }
        }
    }

    /// Runs `body` with OpenBLAS limited to one thread, for code that calls BLAS from the
    /// engine's parallel loops (each worker then runs its own single-threaded products).
    /// Concurrent and nested uses are counted; the budget is restored when the last ends.
    /// Another thread's BLAS calls made meanwhile also run single-threaded (correct, slower).
    public static func withSerialBlas<R>(_ body: () throws -> R) rethrows -> R {
        blasLock.withLock { _ in
            serialBlasUsers += 1
            if serialBlasUsers == 1 { openblas_set_num_threads(1) }
        }
        defer {
            blasLock.withLock { _ in
                serialBlasUsers -= 1
                if serialBlasUsers == 0 { openblas_set_num_threads(Int32(count)) }
            }
        }
        return try body()
    }

    /// In a forked child no other thread exists: nobody is inside `withSerialBlas`.
    static func resetAfterFork() {
        serialBlasUsers = 0
    }

    /// Runs `body(w)` for w in 0..<workers on the pool (w = 0 on the calling thread); serially
    /// when `workers` is 1 or the pool is busy (nested or concurrent calls).
    public static func run(workers: Int, _ body: (Int) -> Void) {
        WorkerPool.shared.run(workers, body)
    }

    /// Runs `body(chunk)` for `chunks` chunks over the thread budget; `chunks` is the
    /// number of independent pieces of work (rows, images, channels ...). Work smaller
    /// than `minimumWork` floating-point operations in total runs on the calling thread.
    public static func parallelFor(_ chunks: Int, work: Int = .max, minimumWork: Int = 1 << 16,
                                   _ body: (Int) -> Void) {
        let workers = min(count, chunks)
        if workers <= 1 || work < minimumWork {
            for c in 0..<chunks { body(c) }
            return
        }
        WorkerPool.shared.run(workers) { w in
            // Contiguous blocks of chunks per worker.
            let lo = chunks * w / workers, hi = chunks * (w + 1) / workers
            for c in lo..<hi { body(c) }
        }
    }
}

#if canImport(Glibc)
import Glibc
#endif
