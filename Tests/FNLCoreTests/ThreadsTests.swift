import XCTest
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
}
