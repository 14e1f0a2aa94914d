import XCTest
@testable import FNLCore

final class FiniteTests: XCTestCase {
    func testFindsFirstNonFiniteEverywhere() {
        for count in [1, 2, 15, 16, 17, 33, 100] {
            XCTAssertNil(Finite.firstNonFinite(Buffer(randn: count, seed: 1).c, count))
            for pos in Set([0, count / 2, count - 1]) {
                for bad: Float in [.nan, .infinity, -.infinity, .signalingNaN] {
                    let b = Buffer(randn: count, seed: 2)
                    b.ptr[pos] = bad
                    if pos + 1 < count { b.ptr[count - 1] = .nan }
                    XCTAssertEqual(Finite.firstNonFinite(b.c, count), pos, "count \(count) pos \(pos) \(bad)")
                }
            }
        }
    }

    /// Arrays of at least `parallelCount` floats are scanned in parts by the workers: a bad
    /// value in any part (first, last, at part boundaries) is found, at 1, 2 and 3 threads.
    func testParallelScanFindsValuesInEveryPart() throws {
        let saved = Threads.count
        defer { try? Threads.set(saved) }
        let count = Finite.parallelCount * 2 + 5
        let b = Buffer(randn: count, seed: 3)
        for threads in [1, 2, 3] {
            try Threads.set(threads)
            XCTAssertNil(Finite.firstNonFinite(b.c, count))
            for pos in [0, count / 3, count / 2, count / 2 - 1, 2 * count / 3, count - 1] {
                let old = b.ptr[pos]
                b.ptr[pos] = .infinity
                XCTAssertEqual(Finite.firstNonFinite(b.c, count), pos, "threads \(threads) pos \(pos)")
                b.ptr[pos] = old
            }
        }
    }

    func testLargeFiniteValuesAreFinite() {
        let b = Buffer([.greatestFiniteMagnitude, -.greatestFiniteMagnitude, .leastNonzeroMagnitude, 0, -0.0]
                       + [Float](repeating: .greatestFiniteMagnitude, count: 40))
        XCTAssertNil(Finite.firstNonFinite(b.c, b.count))
    }

    func testCheckMessageNamesTheArgument() {
        let b = Buffer([1, 2, .infinity])
        assertInvalid("W contains NaN or inf (first at flat index 2: inf)") { try Finite.check(b.c, 3, "W") }
        XCTAssertNoThrow(try Finite.check(b.c, 2, "W"))
        XCTAssertNoThrow(try Finite.check(b.c, 0, "W"))
    }
}
