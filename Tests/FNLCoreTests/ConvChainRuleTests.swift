import XCTest
@testable import FNLCore

final class ConvChainRuleTests: XCTestCase {
    func matmul(_ a: [Double], _ b: [Double], _ m: Int, _ k: Int, _ n: Int) -> [Double] {
        var c = [Double](repeating: 0, count: m * n)
        for i in 0..<m { for j in 0..<n { for t in 0..<k { c[i * n + j] += a[i * k + t] * b[t * n + j] } } }
        return c
    }

    func transpose(_ a: [Double], _ m: Int, _ n: Int) -> [Double] {
        var t = [Double](repeating: 0, count: m * n)
        for i in 0..<m { for j in 0..<n { t[j * m + i] = a[i * n + j] } }
        return t
    }

    /// Product and gradients dF_j = (F_0..F_{j-1})^T G (F_{j+1}..F_L)^T for chains of 1..4 factors.
    func testProductAndGradients() throws {
        var rng = ConvRandom(30)
        for dims in [[5, 3], [4, 2, 6], [3, 5, 2, 4], [2, 3, 3, 1, 4]] {
            let count = dims.count - 1
            let fs = (0..<count).map { rng.array(dims[$0] * dims[$0 + 1]) }
            let gm = rng.array(dims[0] * dims[count])
            var prod = [Float](repeating: 0, count: dims[0] * dims[count])
            var grads = (0..<count).map { [Float](repeating: .nan, count: dims[$0] * dims[$0 + 1]) }
            try withPointers(fs) { ptrs in
                let views = (0..<count).map { MatrixView(ptrs[$0], dims[$0], dims[$0 + 1]) }
                try ChainRule.product(views, into: &prod)
                try withMutablePointers(&grads) { try ChainRule.gradients(views, g: gm, into: $0) }
            }
            let d = fs.map { $0.map { Double($0) } }
            func chain(_ lo: Int, _ hi: Int) -> [Double] {   // F_lo ... F_{hi-1}
                var out = d[lo]
                for j in (lo + 1)..<hi { out = matmul(out, d[j], dims[lo], dims[j], dims[j + 1]) }
                return out
            }
            assertClose(prod, chain(0, count), 1e-5, "product \(dims)")
            let g = gm.map { Double($0) }
            for j in 0..<count {
                var t = g   // G (F_{j+1}..F_L)^T
                if j < count - 1 { t = matmul(g, transpose(chain(j + 1, count), dims[j + 1], dims[count]), dims[0], dims[count], dims[j + 1]) }
                var want = t
                if j > 0 { want = matmul(transpose(chain(0, j), dims[0], dims[j]), t, dims[j], dims[0], dims[j + 1]) }
                assertClose(grads[j], want, 1e-5, "dF_\(j) \(dims)")
            }
        }
    }
}
