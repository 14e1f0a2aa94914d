import FNLCore

// Exports of the optimizer steps (fnl_optim.h): translate the raw ABI arguments into
// `OptimTensors` / `FactorProduct`s, run the core step, return a status.

/// The `count` sizes (each >= 0) of a C array.
private func sizeList(_ sizes: UnsafePointer<Int64>?, _ count: Int) throws -> [Int] {
    let sizes = try nonNull(sizes, "sizes")
    var out: [Int] = []
    out.reserveCapacity(count)
    for i in 0..<count {
        guard sizes[i] >= 0 else { throw FNLError.invalid("sizes[\(i)] must be >= 0, got \(sizes[i])") }
        out.append(Int(sizes[i]))
    }
    return out
}

/// The parameter group of a step call.
private func group(_ count: Int64, _ params: UnsafePointer<UnsafeMutablePointer<Float>?>?,
                   _ grads: UnsafePointer<UnsafePointer<Float>?>?, _ sizes: UnsafePointer<Int64>?,
                   _ decay: UnsafePointer<Float>?) throws -> OptimTensors {
    let n = try size(count, "count")
    if n == 0 { return try OptimTensors(params: [], grads: [], sizes: [], decay: []) }
    let decay = try nonNull(decay, "decay")
    return try OptimTensors(params: try pointerList(params, n, "params"), grads: try pointerList(grads, n, "grads"),
                            sizes: try sizeList(sizes, n), decay: Array(UnsafeBufferPointer(start: decay, count: n)))
}

/// The factorized products and their FD coefficients (`lam` may be nil for norm matching).
private func products(_ nChains: Int64, _ chainsLen: Int64, _ chains: UnsafePointer<Int64>?,
                      sizes: [Int]) throws -> [FactorProduct] {
    let count = try size(nChains, "n_chains"), len = try size(chainsLen, "chains_len")
    if count == 0 {
        try require(len == 0, "chains_len must be 0 when n_chains is 0, got \(len)")
        return []
    }
    let flat = UnsafeBufferPointer(start: try nonNull(chains, "chains"), count: len)
    let out = try FactorProduct.parse(flat, sizes: sizes)
    try require(out.count == count, "chains holds \(out.count) factor product records, but n_chains is \(count)")
    return out
}

private func floats(_ p: UnsafePointer<Float>?, _ count: Int, _ name: String) throws -> [Float] {
    if count == 0 { return [] }
    let p = try nonNull(p, name)
    return (0..<count).map { p[$0] }
}

private func workspace(_ p: UnsafeMutablePointer<Float>?, _ len: Int64) throws -> UnsafeMutableBufferPointer<Float>? {
    guard let p else { return nil }
    return UnsafeMutableBufferPointer(start: p, count: try size(len, "workspace_len"))
}

@_cdecl("fnl_sgd_step")
public func fnl_sgd_step(_ count: Int64, _ params: UnsafePointer<UnsafeMutablePointer<Float>?>?,
                         _ grads: UnsafePointer<UnsafePointer<Float>?>?,
                         _ momentum: UnsafePointer<UnsafeMutablePointer<Float>?>?,
                         _ sizes: UnsafePointer<Int64>?, _ decay: UnsafePointer<Float>?,
                         _ nChains: Int64, _ chainsLen: Int64, _ chains: UnsafePointer<Int64>?,
                         _ chainLam: UnsafePointer<Float>?,
                         _ ws: UnsafeMutablePointer<Float>?, _ wsLen: Int64,
                         _ lr: Float, _ mu: Float, _ dampening: Float, _ nesterov: Int32, _ firstStep: Int32,
                         _ checkFinite: Int32,
                         _ err: UnsafeMutablePointer<CChar>?, _ cap: Int) -> Int32 {
    abiCall(err, cap) {
        let t = try group(count, params, grads, sizes, decay)
        let ps = try products(nChains, chainsLen, chains, sizes: t.sizes)
        let bufs = mu != 0 && t.count > 0 ? try pointerList(momentum, t.count, "momentum") : nil
        try SGD.step(t, buffers: bufs, products: ps, fdLambda: try floats(chainLam, ps.count, "chain_lam"),
                     workspace: try workspace(ws, wsLen),
                     SGD.Hyper(lr: lr, momentum: mu, dampening: dampening, nesterov: nesterov != 0,
                               firstStep: firstStep != 0),
                     checkFinite: checkFinite != 0)
    }
}

@_cdecl("fnl_adamw_step")
public func fnl_adamw_step(_ count: Int64, _ params: UnsafePointer<UnsafeMutablePointer<Float>?>?,
                           _ grads: UnsafePointer<UnsafePointer<Float>?>?,
                           _ expAvg: UnsafePointer<UnsafeMutablePointer<Float>?>?,
                           _ expAvgSq: UnsafePointer<UnsafeMutablePointer<Float>?>?,
                           _ sizes: UnsafePointer<Int64>?, _ decay: UnsafePointer<Float>?,
                           _ nChains: Int64, _ chainsLen: Int64, _ chains: UnsafePointer<Int64>?,
                           _ chainLam: UnsafePointer<Float>?,
                           _ ws: UnsafeMutablePointer<Float>?, _ wsLen: Int64,
                           _ lr: Float, _ beta1: Float, _ beta2: Float, _ eps: Float, _ step: Int64,
                           _ checkFinite: Int32,
                           _ err: UnsafeMutablePointer<CChar>?, _ cap: Int) -> Int32 {
    abiCall(err, cap) {
        let t = try group(count, params, grads, sizes, decay)
        let ps = try products(nChains, chainsLen, chains, sizes: t.sizes)
        let moments = try AdamMoments(beta1: beta1, beta2: beta2, eps: eps, step: Int(clamping: step))
        try AdamW.step(t, expAvg: try pointerList(expAvg, t.count, "exp_avg"),
                       expAvgSq: try pointerList(expAvgSq, t.count, "exp_avg_sq"),
                       products: ps, fdLambda: try floats(chainLam, ps.count, "chain_lam"),
                       workspace: try workspace(ws, wsLen), lr: lr, moments: moments,
                       checkFinite: checkFinite != 0)
    }
}

@_cdecl("fnl_lamb_step")
public func fnl_lamb_step(_ count: Int64, _ params: UnsafePointer<UnsafeMutablePointer<Float>?>?,
                          _ grads: UnsafePointer<UnsafePointer<Float>?>?,
                          _ expAvg: UnsafePointer<UnsafeMutablePointer<Float>?>?,
                          _ expAvgSq: UnsafePointer<UnsafeMutablePointer<Float>?>?,
                          _ sizes: UnsafePointer<Int64>?, _ decay: UnsafePointer<Float>?,
                          _ nChains: Int64, _ chainsLen: Int64, _ chains: UnsafePointer<Int64>?,
                          _ chainLam: UnsafePointer<Float>?,
                          _ ws: UnsafeMutablePointer<Float>?, _ wsLen: Int64,
                          _ update: UnsafeMutablePointer<Float>?, _ updateLen: Int64,
                          _ lr: Float, _ beta1: Float, _ beta2: Float, _ eps: Float, _ step: Int64,
                          _ checkFinite: Int32, _ trust: UnsafeMutablePointer<Double>?,
                          _ err: UnsafeMutablePointer<CChar>?, _ cap: Int) -> Int32 {
    abiCall(err, cap) {
        let t = try group(count, params, grads, sizes, decay)
        let ps = try products(nChains, chainsLen, chains, sizes: t.sizes)
        let moments = try AdamMoments(beta1: beta1, beta2: beta2, eps: eps, step: Int(clamping: step))
        try LAMB.step(t, expAvg: try pointerList(expAvg, t.count, "exp_avg"),
                      expAvgSq: try pointerList(expAvgSq, t.count, "exp_avg_sq"),
                      products: ps, fdLambda: try floats(chainLam, ps.count, "chain_lam"),
                      workspace: try workspace(ws, wsLen), update: try workspace(update, updateLen),
                      lr: lr, moments: moments, checkFinite: checkFinite != 0, trust: trust)
    }
}

@_cdecl("fnl_norm_match")
public func fnl_norm_match(_ count: Int64, _ params: UnsafePointer<UnsafeMutablePointer<Float>?>?,
                           _ sizes: UnsafePointer<Int64>?,
                           _ nChains: Int64, _ chainsLen: Int64, _ chains: UnsafePointer<Int64>?,
                           _ targets: UnsafePointer<Double>?, _ norms: UnsafeMutablePointer<Double>?,
                           _ err: UnsafeMutablePointer<CChar>?, _ cap: Int) -> Int32 {
    abiCall(err, cap) {
        let n = try size(count, "count")
        var values: [UnsafeMutablePointer<Float>] = [], counts: [Int] = []
        if n > 0 {
            values = try pointerList(params, n, "params")
            counts = try sizeList(sizes, n)
        }
        let ps = try products(nChains, chainsLen, chains, sizes: counts)
        let before: [Double]
        if let targets {
            before = try NormMatching.rescale(ps, params: values, sizes: counts,
                                              targets: (0..<ps.count).map { targets[$0] })
        } else {
            before = try NormMatching.norms(ps, params: values)
        }
        if let norms { for (c, x) in before.enumerated() { norms[c] = x } }
    }
}
