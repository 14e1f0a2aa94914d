/// Which tensors of a parameter group form one factorized product W_b = U_b M_1b ... M_db V_b^T,
/// for Frobenius decay and norm matching inside an optimizer step.
///
/// Flat record (ABI, `int64`): `[depth, batch, m, n, r_0, ..., r_depth, iU, iV, iM_1, ..., iM_depth]`
/// (2 depth + 7 entries), the indices naming tensors of the group. U holds batch*m*r_0 floats,
/// V batch*n*r_depth, M_j batch*r_{j-1}*r_j (row-major, as in `FactorChain`).
public struct FactorProduct: Equatable {
    public let batch: Int
    public let m: Int
    public let n: Int
    public let ranks: [Int]
    public let u: Int
    public let v: Int
    public let middle: [Int]

    public var depth: Int { middle.count }
    /// The tensor indices of the product: U, V, M_1 ... M_d.
    public var tensors: [Int] { [u, v] + middle }

    public init(batch: Int, m: Int, n: Int, ranks: [Int], u: Int, v: Int, middle: [Int]) {
        self.batch = batch; self.m = m; self.n = n; self.ranks = ranks
        self.u = u; self.v = v; self.middle = middle
    }

    /// Parses concatenated flat records and checks them against the group's tensor sizes:
    /// indices in range, the tensors of one product distinct, no tensor in two products,
    /// each tensor's size equal to what the shapes imply.
    public static func parse(_ flat: UnsafeBufferPointer<Int64>, sizes: [Int]) throws -> [FactorProduct] {
        var out: [FactorProduct] = []
        out.reserveCapacity(flat.count / 7)
        var owner = [Int](repeating: -1, count: sizes.count)
        var at = 0
        func next(_ what: @autoclosure () -> String) throws -> Int {
            try require(at < flat.count, "factor product \(out.count): record truncated before \(what())")
            let x = flat[at]
            at += 1
            try require(x >= 0 && x <= Int64(Int32.max), "factor product \(out.count): \(what()) must be in 0..\(Int32.max), got \(x)")
            return Int(x)
        }
        while at < flat.count {
            let c = out.count
            let depth = try next("depth")
            try require(depth <= 64, "factor product \(c): depth must be in 0..64, got \(depth)")
            let batch = try next("batch"), m = try next("m"), n = try next("n")
            var ranks: [Int] = []
            for j in 0...depth { ranks.append(try next("r_\(j)")) }
            let u = try next("the index of U"), v = try next("the index of V")
            var mids: [Int] = []
            for j in 0..<depth { mids.append(try next("the index of M_\(j + 1)")) }
            let p = FactorProduct(batch: batch, m: m, n: n, ranks: ranks, u: u, v: v, middle: mids)
            // (no arrays on the success path: this runs on every optimizer step)
            func own(_ t: Int) throws {
                try require(t < sizes.count, "factor product \(c): tensor index \(t) out of range 0..<\(sizes.count)")
                try require(owner[t] != c, "factor product \(c): tensor \(t) appears twice")
                try require(owner[t] < 0, "tensor \(t) belongs to factor products \(owner[t]) and \(c); "
                                + "a tensor may belong to one product only")
                owner[t] = c
            }
            try own(u)
            try own(v)
            for t in mids { try own(t) }
            try require(batch >= 1, "factor product \(c): batch must be >= 1, got \(batch)")
            for (j, r) in ranks.enumerated() { try require(r >= 1, "factor product \(c): r_\(j) must be >= 1, got \(r)") }
            func expect(_ t: Int, _ d0: Int, _ d1: Int, _ d2: Int, _ name: @autoclosure () -> String) throws {
                let (ab, o1) = d0.multipliedReportingOverflow(by: d1)
                let (want, o2) = ab.multipliedReportingOverflow(by: d2)
                if o1 || o2 { throw FNLError.invalid("factor product \(c): \(name()) has absurd shape \([d0, d1, d2]) (overflow)") }
                try require(sizes[t] == want, "factor product \(c): \(name()) (tensor \(t)) must hold \(want) floats "
                                + "(shape \([d0, d1, d2])), got \(sizes[t])")
            }
            try expect(u, batch, m, ranks[0], "U")
            try expect(v, batch, n, ranks[depth], "V")
            for j in 0..<depth { try expect(mids[j], batch, ranks[j], ranks[j + 1], "M_\(j + 1)") }
            out.append(p)
        }
        return out
    }

    /// The factor chain over the group's current parameter values (checks finiteness unless
    /// `checkFinite` is false).
    public func chain(_ params: [UnsafeMutablePointer<Float>], checkFinite: Bool = true) throws -> FactorChain {
        try FactorChain(batch: batch, m: m, n: n, ranks: ranks, u: params[u], v: params[v],
                        middle: middle.map { UnsafePointer(params[$0]) }, checkFinite: checkFinite)
    }

    /// Total floats of the product's tensors.
    public func floatCount(_ sizes: [Int]) -> Int { middle.reduce(sizes[u] + sizes[v]) { $0 + sizes[$1] } }
}

/// The Frobenius-decay terms of an optimizer step: for each product W = U M V^T with
/// coefficient lambda, fd_U = lambda U (M G_V M^T), fd_V = lambda V (M^T G_U M) and
/// fd_{M_j} = lambda (M_1..M_{j-1})^T G_U M G_V (M_{j+1}..M_d)^T
/// (`FrobeniusDecay.gradient`, Gram matrices only), evaluated at the parameters *before*
/// the step and written into a workspace, one slice per factor tensor.
public enum FactorDecayTerms {
    /// Floats of workspace the products need.
    public static func workspaceCount(_ products: [FactorProduct], sizes: [Int]) -> Int {
        products.reduce(0) { $0 + $1.floatCount(sizes) }
    }

    /// Computes the FD terms into `workspace` (or a temporary when nil) and calls body with
    /// one pointer per tensor: its FD term, or nil for tensors outside every product.
    /// `lambda[c]` is the coefficient of product c (finite, >= 0). A factor holding NaN or inf
    /// throws `.invalid` ("factor product c: U contains NaN or inf ...") before body runs.
    ///
    /// Products U V^T (depth 0, the common case) share one scratch for their Gram matrices and
    /// have their factors' finiteness read off the Gram diagonals (`FrobeniusDecay.pairGradient`)
    /// instead of a separate scan; deeper chains go through `FrobeniusDecay.gradient`.
    public static func with<R>(_ t: OptimTensors, _ products: [FactorProduct], lambda: [Float],
                               workspace: UnsafeMutableBufferPointer<Float>?,
                               _ body: ([UnsafePointer<Float>?]) throws -> R) throws -> R {
        try require(lambda.count == products.count,
                    "expected one decay coefficient per factor product (\(products.count)), got \(lambda.count)")
        var fd = [UnsafePointer<Float>?](repeating: nil, count: t.count)
        if products.isEmpty { return try body(fd) }
        let need = workspaceCount(products, sizes: t.sizes)
        var pairScratch = 0
        for p in products where p.depth == 0 {
            pairScratch = max(pairScratch, FrobeniusDecay.pairScratchCount(rank: p.ranks[0]))
        }
        func fill(_ base: UnsafeMutablePointer<Float>, _ scratch: UnsafeMutablePointer<Float>) throws -> R {
            var offset = 0
            for (c, p) in products.enumerated() {
                do {
                    try FrobeniusDecay.checkLambda(lambda[c])
                    let dU = base + offset
                    fd[p.u] = UnsafePointer(dU)
                    offset += t.sizes[p.u]
                    let dV = base + offset
                    fd[p.v] = UnsafePointer(dV)
                    offset += t.sizes[p.v]
                    if p.depth == 0 {
                        try FrobeniusDecay.pairGradient(try p.chain(t.params, checkFinite: false), lambda: lambda[c],
                                                        beta: 0, dU: dU, dV: dV, scratch: scratch, checkFactors: true)
                        continue
                    }
                    var dMiddle: [UnsafeMutablePointer<Float>] = []
                    for i in p.middle {
                        dMiddle.append(base + offset)
                        fd[i] = UnsafePointer(base + offset)
                        offset += t.sizes[i]
                    }
                    try FrobeniusDecay.gradient(try p.chain(t.params), lambda: lambda[c], accumulate: false,
                                                dU: dU, dV: dV, dMiddle: dMiddle)
                } catch let FNLError.invalid(msg) {
                    throw FNLError.invalid("factor product \(c): \(msg)")
                }
            }
            return try body(fd)
        }
        func withWorkspace(_ scratch: UnsafeMutablePointer<Float>) throws -> R {
            if let workspace {
                try require(workspace.count >= need,
                            "workspace must hold at least \(need) floats (the factor tensors), got \(workspace.count)")
                guard let base = workspace.baseAddress else { throw FNLError.invalid("workspace is a null pointer") }
                return try fill(base, scratch)
            }
            return try withScratch(need, "the Frobenius decay terms") { try fill($0, scratch) }
        }
        return try withScratch(pairScratch, "the Gram matrices of Frobenius decay") { try withWorkspace($0) }
    }
}
