import XCTest
@testable import FNLCore

final class RandomTests: XCTestCase {
    func testReproducibleAndSeedDependent() {
        var a = Xoshiro256(seed: 7), b = Xoshiro256(seed: 7), c = Xoshiro256(seed: 8)
        let xa = (0..<100).map { _ in a.next() }, xb = (0..<100).map { _ in b.next() }, xc = (0..<100).map { _ in c.next() }
        XCTAssertEqual(xa, xb)
        XCTAssertNotEqual(xa, xc)
        XCTAssertEqual(Set(xa).count, 100)
        var z = Xoshiro256(seed: 0)
        XCTAssertNotEqual(z.next(), 0)
        var m = Xoshiro256(seed: .max)
        _ = m.next()
    }

    func testUniformInOpenInterval() {
        var g = Xoshiro256(seed: 3)
        var sum = 0.0
        for _ in 0..<100_000 {
            let u = g.uniform()
            XCTAssertTrue(u > 0 && u < 1)
            sum += u
        }
        XCTAssertEqual(sum / 100_000, 0.5, accuracy: 0.01)
    }

    func testNormalMoments() {
        let n = 200_001  // odd: the last value comes from a half-used pair
        let b = Buffer(randn: n, seed: 11)
        let x = b.doubles
        let mean = x.reduce(0, +) / Double(n)
        let variance = x.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(n - 1)
        XCTAssertEqual(mean, 0, accuracy: 0.01)
        XCTAssertEqual(variance, 1, accuracy: 0.02)
        XCTAssertTrue(x.allSatisfy { $0.isFinite })
        let fraction = Double(x.filter { abs($0) < 1 }.count) / Double(n)
        XCTAssertEqual(fraction, 0.6827, accuracy: 0.01)
    }

    func testFillNormalCountsAreExact() {
        for count in [0, 1, 2, 3] {
            let b = Buffer([Float](repeating: 99, count: count + 2))
            var g = Xoshiro256(seed: 1)
            g.fillNormal(b.ptr, count)
            XCTAssertEqual(Array(b.array[count...]), [99, 99], "wrote past count \(count)")
        }
    }
}
