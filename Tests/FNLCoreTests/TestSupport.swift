import XCTest
@testable import FNLCore

/// Float storage owned by a test (freed on deinit), with a stable pointer for the kernels.
final class Buffer {
    let count: Int
    let ptr: UnsafeMutablePointer<Float>
    init(_ values: [Float]) {
        count = values.count
        ptr = .allocate(capacity: max(1, count))
        ptr.initialize(from: values, count: count)
    }
    convenience init(zeros count: Int) { self.init([Float](repeating: 0, count: count)) }
    convenience init(randn count: Int, seed: UInt64, scale: Float = 1) {
        var rng = Xoshiro256(seed: seed)
        var v = [Float](repeating: 0, count: count)
        v.withUnsafeMutableBufferPointer { rng.fillNormal($0.baseAddress!, count) }
        self.init(v.map { $0 * scale })
    }
    var array: [Float] { Array(UnsafeBufferPointer(start: ptr, count: count)) }
    var doubles: [Double] { array.map(Double.init) }
    var c: UnsafePointer<Float> { UnsafePointer(ptr) }
    deinit { ptr.deallocate() }
}

/// A row-major matrix in float64, the reference type of the tests.
struct DMat: Equatable {
    var rows: Int, cols: Int, a: [Double]
    init(_ rows: Int, _ cols: Int, _ a: [Double]) { precondition(a.count == rows * cols); self.rows = rows; self.cols = cols; self.a = a }
    init(_ rows: Int, _ cols: Int, _ f: [Float]) { self.init(rows, cols, f.map(Double.init)) }
    static func zeros(_ r: Int, _ c: Int) -> DMat { DMat(r, c, [Double](repeating: 0, count: r * c)) }
    static func identity(_ k: Int) -> DMat { var m = zeros(k, k); for i in 0..<k { m[i, i] = 1 }; return m }
    subscript(i: Int, j: Int) -> Double { get { a[i * cols + j] } set { a[i * cols + j] = newValue } }
    var t: DMat { var m = DMat.zeros(cols, rows); for i in 0..<rows { for j in 0..<cols { m[j, i] = self[i, j] } }; return m }
    static func * (x: DMat, y: DMat) -> DMat {
        precondition(x.cols == y.rows)
        var m = DMat.zeros(x.rows, y.cols)
        for i in 0..<x.rows { for p in 0..<x.cols { let v = x[i, p]; if v == 0 { continue }
            for j in 0..<y.cols { m.a[i * y.cols + j] += v * y.a[p * y.cols + j] } } }
        return m
    }
    static func * (s: Double, x: DMat) -> DMat { DMat(x.rows, x.cols, x.a.map { s * $0 }) }
    static func + (x: DMat, y: DMat) -> DMat { DMat(x.rows, x.cols, zip(x.a, y.a).map { $0 + $1 }) }
    static func - (x: DMat, y: DMat) -> DMat { DMat(x.rows, x.cols, zip(x.a, y.a).map { $0 - $1 }) }
    var frobenius2: Double { a.reduce(0) { $0 + $1 * $1 } }
    var maxAbs: Double { a.reduce(0) { max($0, abs($1)) } }
}

/// One-sided Jacobi SVD in float64 (independent of LAPACK): A = P diag(s) Q^T with s
/// descending, P (m x k), Q (n x k), k = min(m, n).
func jacobiSVD(_ A: DMat) -> (p: DMat, s: [Double], q: DMat) {
    let wide = A.rows < A.cols
    let X = wide ? A.t : A            // tall: rows >= cols
    let m = X.rows, n = X.cols
    var u = X, v = DMat.identity(n)
    for _ in 0..<60 {
        var off = 0.0
        for i in 0..<n { for j in (i + 1)..<n {
            var alpha = 0.0, beta = 0.0, gamma = 0.0
            for r in 0..<m { alpha += u[r, i] * u[r, i]; beta += u[r, j] * u[r, j]; gamma += u[r, i] * u[r, j] }
            if gamma == 0 { continue }
            off = max(off, abs(gamma) / (alpha * beta).squareRoot())
            let zeta = (beta - alpha) / (2 * gamma)
            let tt = (zeta >= 0 ? 1.0 : -1.0) / (abs(zeta) + (1 + zeta * zeta).squareRoot())
            let c = 1 / (1 + tt * tt).squareRoot(), s = c * tt
            for r in 0..<m { let a = u[r, i], b = u[r, j]; u[r, i] = c * a - s * b; u[r, j] = s * a + c * b }
            for r in 0..<n { let a = v[r, i], b = v[r, j]; v[r, i] = c * a - s * b; v[r, j] = s * a + c * b }
        } }
        if off < 1e-15 { break }
    }
    var sv = (0..<n).map { j in (0..<m).reduce(0.0) { $0 + u[$1, j] * u[$1, j] }.squareRoot() }
    let order = (0..<n).sorted { sv[$0] > sv[$1] }
    var P = DMat.zeros(m, n), Q = DMat.zeros(n, n)
    for (k, j) in order.enumerated() {
        for r in 0..<m { P[r, k] = sv[j] > 0 ? u[r, j] / sv[j] : 0 }
        for r in 0..<n { Q[r, k] = v[r, j] }
    }
    sv = order.map { sv[$0] }
    return wide ? (Q, sv, P) : (P, sv, Q)
}

func assertClose(_ actual: [Double], _ expected: [Double], rtol: Double, atol: Double, _ what: String = "",
                 file: StaticString = #filePath, line: UInt = #line) {
    XCTAssertEqual(actual.count, expected.count, "\(what): count", file: file, line: line)
    var worst = 0.0, at = -1
    for (i, (a, e)) in zip(actual, expected).enumerated() {
        let excess = abs(a - e) - (atol + rtol * abs(e))
        if !(excess <= 0) && (at < 0 || excess > worst || excess.isNaN) { worst = excess; at = i }
    }
    if at >= 0 {
        XCTFail("\(what): not close (rtol \(rtol), atol \(atol)) at \(at): \(actual[at]) vs \(expected[at])",
                file: file, line: line)
    }
}

func assertClose(_ actual: [Float], _ expected: [Double], rtol: Double, atol: Double, _ what: String = "",
                 file: StaticString = #filePath, line: UInt = #line) {
    assertClose(actual.map(Double.init), expected, rtol: rtol, atol: atol, what, file: file, line: line)
}

/// Asserts that `body` throws `.invalid` whose message contains `fragment`.
func assertInvalid(_ fragment: String, file: StaticString = #filePath, line: UInt = #line, _ body: () throws -> Void) {
    do {
        try body()
        XCTFail("expected FNLError.invalid containing \"\(fragment)\"", file: file, line: line)
    } catch let FNLError.invalid(msg) {
        XCTAssertTrue(msg.contains(fragment), "message \"\(msg)\" lacks \"\(fragment)\"", file: file, line: line)
    } catch {
        XCTFail("unexpected error \(error)", file: file, line: line)
    }
}

/// A random factor chain with its storage; entries ~ N(0, 1/r).
final class Chain {
    let batch: Int, m: Int, n: Int, ranks: [Int]
    let u: Buffer, v: Buffer, mids: [Buffer]
    init(batch: Int = 1, m: Int, n: Int, ranks: [Int], seed: UInt64) {
        self.batch = batch; self.m = m; self.n = n; self.ranks = ranks
        u = Buffer(randn: batch * m * ranks[0], seed: seed, scale: 1 / Float(ranks[0]).squareRoot())
        v = Buffer(randn: batch * n * ranks.last!, seed: seed &+ 1, scale: 1 / Float(ranks.last!).squareRoot())
        mids = (0..<(ranks.count - 1)).map {
            Buffer(randn: batch * ranks[$0] * ranks[$0 + 1], seed: seed &+ 2 &+ UInt64($0), scale: 1 / Float(ranks[$0]).squareRoot())
        }
    }
    func chain() throws -> FactorChain {
        try FactorChain(batch: batch, m: m, n: n, ranks: ranks, u: u.c, v: v.c, middle: mids.map { $0.c })
    }
    func U(_ b: Int) -> DMat { DMat(m, ranks[0], Array(u.array[(b * m * ranks[0])..<((b + 1) * m * ranks[0])])) }
    func V(_ b: Int) -> DMat { DMat(n, ranks.last!, Array(v.array[(b * n * ranks.last!)..<((b + 1) * n * ranks.last!)])) }
    func M(_ j: Int, _ b: Int) -> DMat {
        let c = ranks[j] * ranks[j + 1]
        return DMat(ranks[j], ranks[j + 1], Array(mids[j].array[(b * c)..<((b + 1) * c)]))
    }
    /// U M_1 .. M_d (float64).
    func left(_ b: Int, upTo j: Int) -> DMat { (0..<j).reduce(U(b)) { $0 * M($1, b) } }
    func W(_ b: Int) -> DMat { left(b, upTo: mids.count) * V(b).t }
}

/// Shapes shared by the chain tests: (m, n, ranks), depth 0..3, square and non-square middles.
let chainShapes: [(Int, Int, [Int])] = [
    (1, 1, [1]), (1, 9, [2]), (9, 1, [3]), (6, 5, [4]), (13, 7, [7]), (40, 30, [11]),
    (5, 4, [3, 3]), (5, 4, [2, 6]), (9, 7, [4, 2, 6]), (12, 11, [4, 2, 6, 3]), (33, 17, [8, 8, 8, 8]),
]
