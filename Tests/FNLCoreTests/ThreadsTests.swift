import XCTest
import Foundation
import Synchronization
@testable import FNLCore

final class ThreadsTests: XCTestCase {
    override func tearDown() { try? Threads.set(Threads.available) }

    func testSetAndCount() throws {
        XCTAssertGreaterThanOrEqual(Threads.available, 1)
        try Threads.set(1)
        XCTAssertEqual(Threads.count, 1)
        try Threads.set(3)
        XCTAssertEqual(Threads.count, 3)
        for bad in [0, -1, 1025, Int.max] {
            assertInvalid("n must be in 1..1024, got \(bad)") { try Threads.set(bad) }
        }
        XCTAssertEqual(Threads.count, 3)
    }

    func testParallelForRunsEveryChunkOnce() throws {
        for threads in [1, 2, 4] {
            try Threads.set(threads)
            for chunks in [0, 1, 2, 3, 7, 64, 1000] {
                let hits = UnsafeMutablePointer<Int>.allocate(capacity: max(chunks, 1))
                hits.initialize(repeating: 0, count: max(chunks, 1))
                defer { hits.deallocate() }
                let total = Atomic<Int>(0)
                Threads.parallelFor(chunks, work: .max, minimumWork: 0) { c in
                    hits[c] += 1
                    total.add(1, ordering: .relaxed)
                }
                XCTAssertEqual(total.load(ordering: .relaxed), chunks)
                for c in 0..<chunks { XCTAssertEqual(hits[c], 1, "chunk \(c) of \(chunks), \(threads) threads") }
            }
        }
    }

    func testSmallWorkRunsInline() throws {
        try Threads.set(2)
        var order: [Int] = []
        Threads.parallelFor(5, work: 10) { order.append($0) }
        XCTAssertEqual(order, [0, 1, 2, 3, 4])
    }

    /// A parallel loop inside a parallel loop runs serially on the calling worker and still
    /// visits every chunk once.
    func testNestedLoopsComplete() throws {
        try Threads.set(2)
        let total = Atomic<Int>(0)
        Threads.parallelFor(4, work: .max, minimumWork: 0) { _ in
            Threads.parallelFor(100, work: .max, minimumWork: 0) { c in total.wrappingAdd(c, ordering: .relaxed) }
        }
        XCTAssertEqual(total.load(ordering: .relaxed), 4 * 4950)
    }

    /// Loops started from several threads at once (the pool runs one, the others run
    /// serially on their own threads) all complete with the right results.
    func testConcurrentCallersComplete() throws {
        try Threads.set(2)
        let callers = 4, rounds = 300
        nonisolated(unsafe) let sums = UnsafeMutablePointer<Int>.allocate(capacity: callers)
        sums.initialize(repeating: 0, count: callers)
        defer { sums.deallocate() }
        let done = DispatchGroup()
        for t in 0..<callers {
            done.enter()
            Thread {
                let local = Atomic<Int>(0)
                for _ in 0..<rounds {
                    Threads.parallelFor(16, work: .max, minimumWork: 0) { c in local.wrappingAdd(c + 1, ordering: .relaxed) }
                }
                sums[t] = local.load(ordering: .relaxed)
                done.leave()
            }.start()
        }
        XCTAssertEqual(done.wait(timeout: .now() + 60), .success)
        for t in 0..<callers { XCTAssertEqual(sums[t], rounds * 136) }
    }

    /// More workers than cores, and growing the pool between jobs.
    func testWorkerCountsAboveTheCoreCount() throws {
        for n in [3, 8, 2, 5] {
            let hits = UnsafeMutablePointer<Int>.allocate(capacity: n)
            hits.initialize(repeating: 0, count: n)
            Threads.run(workers: n) { w in hits[w] += 1 }
            XCTAssertEqual(Array(UnsafeBufferPointer(start: hits, count: n)), [Int](repeating: 1, count: n))
            hits.deallocate()
        }
    }
}
