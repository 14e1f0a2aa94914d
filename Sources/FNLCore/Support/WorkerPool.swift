#if canImport(Glibc)
import Glibc
#endif
import Synchronization

/// A persistent pool of worker threads that runs one job at a time: `run(workers, body)`
/// calls `body(0..<workers)` with index 0 on the calling thread and the others on pool
/// threads, and returns when every index has finished.
///
/// - Workers spin for `spinNanoseconds` after each job (the next parallel region of a layer
///   usually follows within microseconds), then sleep on a condition variable; waking a
///   sleeping thread costs tens of microseconds on a VM, which is why Dispatch's
///   `concurrentPerform` (threads parked after every call) was measured 1.4x slower per
///   training step than running serially.
/// - One job at a time: a call made while the pool is busy (from a job, i.e. nested, or from
///   another Python thread) runs serially on its own thread. Nothing ever waits for the pool,
///   so there is no deadlock and never more than `workers` threads from one job.
/// - Fork safety: in a forked child the pool threads do not exist; the child starts over
///   with an empty pool (`pthread_atfork`).
final class WorkerPool: @unchecked Sendable {
    static let shared = WorkerPool()

    /// How long an idle worker spins before sleeping.
    static let spinNanoseconds: UInt64 = 50_000

    /// Bumped once per job; workers wait for it to change.
    private let generation = Atomic<Int>(0)
    /// Pool threads that have not finished the current job.
    private let pending = Atomic<Int>(0)
    /// Held (true) while a job runs.
    private let busy = Atomic<Bool>(false)
    /// Pool threads started so far (they never exit).
    private var started = 0
    /// Sleeping workers, guarded by `mutex`.
    private var sleepers = 0
    private var mutex = pthread_mutex_t()
    private var wake = pthread_cond_t()
    /// The current job; written before `generation` is bumped, read by workers after.
    private var job: ((Int) -> Void)?
    private var jobWorkers = 0

    private init() {
        pthread_mutex_init(&mutex, nil)
        pthread_cond_init(&wake, nil)
        pthread_atfork(nil, nil, { WorkerPool.shared.resetAfterFork() })
    }

    /// In a forked child only the forking thread exists: forget the pool threads.
    private func resetAfterFork() {
        started = 0
        sleepers = 0
        job = nil
        pending.store(0, ordering: .relaxed)
        busy.store(false, ordering: .relaxed)
        pthread_mutex_init(&mutex, nil)
        pthread_cond_init(&wake, nil)
        Threads.resetAfterFork()
    }

    /// Runs `body(w)` for w in 0..<workers in parallel (serially when the pool is busy or a
    /// thread cannot be started).
    func run(_ workers: Int, _ body: (Int) -> Void) {
        guard workers > 1, busy.compareExchange(expected: false, desired: true, ordering: .acquiring).exchanged else {
            for w in 0..<workers { body(w) }
            return
        }
        defer { busy.store(false, ordering: .releasing) }
        let helpers = startThreads(workers - 1)
        if helpers == 0 {
            for w in 0..<workers { body(w) }
            return
        }
        withoutActuallyEscaping(body) { body in
            job = body
            jobWorkers = helpers + 1
            pending.store(started, ordering: .relaxed)
            generation.wrappingAdd(1, ordering: .releasing)
            pthread_mutex_lock(&mutex)
            if sleepers > 0 { pthread_cond_broadcast(&wake) }
            pthread_mutex_unlock(&mutex)
            body(0)
            // Indices the pool could not take (a thread failed to start) run here.
            for w in (helpers + 1)..<workers { body(w) }
            var spins = 0
            while pending.load(ordering: .acquiring) > 0 {
                spins += 1
                if spins > 4096 { sched_yield() }
            }
            job = nil
        }
    }

    /// Starts pool threads until `count` exist (as far as the system allows); returns how
    /// many take part in a job of `count` helpers.
    private func startThreads(_ count: Int) -> Int {
        while started < count {
            let index = started + 1
            var thread = pthread_t()
            let seen = generation.load(ordering: .acquiring)
            let context = Unmanaged.passRetained(WorkerContext(pool: self, index: index, seen: seen)).toOpaque()
            let rc = pthread_create(&thread, nil, { raw in
                let ctx = Unmanaged<WorkerContext>.fromOpaque(raw!).takeRetainedValue()
                ctx.pool.serve(index: ctx.index, seen: ctx.seen)
                return nil
            }, context)
            if rc != 0 {
                Unmanaged<WorkerContext>.fromOpaque(context).release()
                break
            }
            pthread_detach(thread)
            started += 1
        }
        return min(started, count)
    }

    /// The loop of pool thread `index` (1-based; index 0 is the caller of `run`).
    /// `seen` is the generation before the thread's first job (read when it was created, so
    /// that it cannot miss a job announced before it got to run).
    private func serve(index: Int, seen: Int) {
        var seen = seen
        while true {
            waitForJob(after: seen)
            seen = generation.load(ordering: .acquiring)
            if index < jobWorkers { execute(index) }
            pending.wrappingSubtract(1, ordering: .releasing)
        }
    }

    /// Calls the current job; a separate frame so that the job closure is released before
    /// the caller is told the index finished (`withoutActuallyEscaping` checks this).
    @inline(never)
    private func execute(_ index: Int) {
        job?(index)
    }

    private func waitForJob(after seen: Int) {
        var deadline: UInt64 = 0
        var spins = 0
        while generation.load(ordering: .acquiring) == seen {
            spins += 1
            if spins & 255 != 0 { continue }
            let now = monotonicNanoseconds()
            if deadline == 0 { deadline = now + WorkerPool.spinNanoseconds; continue }
            if now < deadline { continue }
            pthread_mutex_lock(&mutex)
            sleepers += 1
            while generation.load(ordering: .acquiring) == seen { pthread_cond_wait(&wake, &mutex) }
            sleepers -= 1
            pthread_mutex_unlock(&mutex)
        }
    }
}

private final class WorkerContext {
    let pool: WorkerPool
    let index: Int
    let seen: Int
    init(pool: WorkerPool, index: Int, seen: Int) { self.pool = pool; self.index = index; self.seen = seen }
}

@inline(__always)
func monotonicNanoseconds() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
}
