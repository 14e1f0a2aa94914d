import CBLAS
import Dispatch
import Synchronization

/// The engine's thread budget, shared by OpenBLAS and the engine's own parallel loops.
///
/// The two never nest: an engine parallel loop calls no multithreaded BLAS inside, and BLAS
/// calls are made from one thread, so at most `count` threads compute at any time.
public enum Threads {
    private static let budget = Atomic<Int>(0)

    /// Logical CPUs available to this process.
    public static var available: Int {
        max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))))
    }

    /// The current budget (defaults to the number of available CPUs).
    public static var count: Int {
        let n = budget.load(ordering: .relaxed)
        return n > 0 ? n : available
    }

    /// Sets the budget for the engine loops and OpenBLAS. `n` must be in 1...1024.
    public static func set(_ n: Int) throws {
        try require(n >= 1 && n <= 1024, "n must be in 1..1024, got \(n)")
        budget.store(n, ordering: .relaxed)
        openblas_set_num_threads(Int32(n))
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
        withoutActuallyEscaping(body) { body in
            DispatchQueue.concurrentPerform(iterations: workers) { w in
                // Contiguous blocks of chunks per worker.
                let lo = chunks * w / workers, hi = chunks * (w + 1) / workers
                for c in lo..<hi { body(c) }
            }
        }
    }
}

#if canImport(Glibc)
import Glibc
#endif
