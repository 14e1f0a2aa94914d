import FNLCore

/// Builds the FactorChain of a factor-function call from its raw ABI arguments.
private func chain(_ batch: Int64, _ m: Int64, _ n: Int64, _ depth: Int64, _ ranks: UnsafePointer<Int64>?,
                   _ u: UnsafePointer<Float>?, _ v: UnsafePointer<Float>?,
                   _ middle: UnsafePointer<UnsafePointer<Float>?>?) throws -> FactorChain {
    let d = try size(depth, "depth")
    try require(d <= 64, "depth must be in 0..64, got \(d)")
    let ranks = try nonNull(ranks, "ranks")
    let mids = try pointerList(middle, d, "middle")
    return try FactorChain(batch: try size(batch, "batch"), m: try size(m, "m"), n: try size(n, "n"),
                           ranks: (0...d).map { Int(ranks[$0]) },
                           u: try nonNull(u, "U"), v: try nonNull(v, "V"), middle: mids)
}

@_cdecl("fnl_spectral_init")
public func fnl_spectral_init(_ w: UnsafePointer<Float>?, _ m: Int64, _ n: Int64, _ rank: Int64, _ method: Int32,
                              _ oversample: Int64, _ powerIters: Int64, _ seed: UInt64,
                              _ u: UnsafeMutablePointer<Float>?, _ v: UnsafeMutablePointer<Float>?,
                              _ s: UnsafeMutablePointer<Float>?,
                              _ total: UnsafeMutablePointer<Double>?, _ tail: UnsafeMutablePointer<Double>?,
                              _ err: UnsafeMutablePointer<CChar>?, _ cap: Int) -> Int32 {
    abiCall(err, cap) {
        guard let method = SpectralInit.Method(rawValue: method) else {
            throw FNLError.invalid("method must be 0 (exact) or 1 (randomized), got \(method)")
        }
        let options = SpectralInit.Options(rank: Int(clamping: rank), method: method,
                                           oversample: Int(clamping: oversample),
                                           powerIterations: Int(clamping: powerIters), seed: seed)
        let result = try SpectralInit.run(try nonNull(w, "W"), try size(m, "m"), try size(n, "n"), options,
                                          u: try nonNull(u, "U"), v: try nonNull(v, "V"), s: try nonNull(s, "s"))
        total?.pointee = result.totalEnergy
        tail?.pointee = result.tailEnergy
    }
}

@_cdecl("fnl_frobenius_sq_norms")
public func fnl_frobenius_sq_norms(_ batch: Int64, _ m: Int64, _ n: Int64, _ depth: Int64, _ ranks: UnsafePointer<Int64>?,
                                   _ u: UnsafePointer<Float>?, _ v: UnsafePointer<Float>?,
                                   _ middle: UnsafePointer<UnsafePointer<Float>?>?,
                                   _ out: UnsafeMutablePointer<Double>?,
                                   _ err: UnsafeMutablePointer<CChar>?, _ cap: Int) -> Int32 {
    abiCall(err, cap) {
        let c = try chain(batch, m, n, depth, ranks, u, v, middle)
        let out = try nonNull(out, "squared_norms")
        for (b, x) in try FrobeniusDecay.squaredNorms(c).enumerated() { out[b] = x }
    }
}

@_cdecl("fnl_frobenius_penalty")
public func fnl_frobenius_penalty(_ batch: Int64, _ m: Int64, _ n: Int64, _ depth: Int64, _ ranks: UnsafePointer<Int64>?,
                                  _ u: UnsafePointer<Float>?, _ v: UnsafePointer<Float>?,
                                  _ middle: UnsafePointer<UnsafePointer<Float>?>?, _ lam: Float,
                                  _ out: UnsafeMutablePointer<Double>?,
                                  _ err: UnsafeMutablePointer<CChar>?, _ cap: Int) -> Int32 {
    abiCall(err, cap) {
        let c = try chain(batch, m, n, depth, ranks, u, v, middle)
        let out = try nonNull(out, "penalty")
        out.pointee = try FrobeniusDecay.penalty(c, lambda: lam)
    }
}

@_cdecl("fnl_frobenius_decay_grad")
public func fnl_frobenius_decay_grad(_ batch: Int64, _ m: Int64, _ n: Int64, _ depth: Int64, _ ranks: UnsafePointer<Int64>?,
                                     _ u: UnsafePointer<Float>?, _ v: UnsafePointer<Float>?,
                                     _ middle: UnsafePointer<UnsafePointer<Float>?>?, _ lam: Float, _ accumulate: Int32,
                                     _ du: UnsafeMutablePointer<Float>?, _ dv: UnsafeMutablePointer<Float>?,
                                     _ dmiddle: UnsafePointer<UnsafeMutablePointer<Float>?>?,
                                     _ err: UnsafeMutablePointer<CChar>?, _ cap: Int) -> Int32 {
    abiCall(err, cap) {
        let c = try chain(batch, m, n, depth, ranks, u, v, middle)
        let dms = try pointerList(dmiddle, c.depth, "dmiddle")
        try FrobeniusDecay.gradient(c, lambda: lam, accumulate: accumulate != 0,
                                    dU: try nonNull(du, "dU"), dV: try nonNull(dv, "dV"), dMiddle: dms)
    }
}

@_cdecl("fnl_compose")
public func fnl_compose(_ batch: Int64, _ m: Int64, _ n: Int64, _ depth: Int64, _ ranks: UnsafePointer<Int64>?,
                        _ u: UnsafePointer<Float>?, _ v: UnsafePointer<Float>?,
                        _ middle: UnsafePointer<UnsafePointer<Float>?>?,
                        _ w: UnsafeMutablePointer<Float>?,
                        _ err: UnsafeMutablePointer<CChar>?, _ cap: Int) -> Int32 {
    abiCall(err, cap) {
        let c = try chain(batch, m, n, depth, ranks, u, v, middle)
        try Compose.compose(c, into: try nonNull(w, "W"))
    }
}

@_cdecl("fnl_nuclear_norms")
public func fnl_nuclear_norms(_ batch: Int64, _ m: Int64, _ n: Int64, _ depth: Int64, _ ranks: UnsafePointer<Int64>?,
                              _ u: UnsafePointer<Float>?, _ v: UnsafePointer<Float>?,
                              _ middle: UnsafePointer<UnsafePointer<Float>?>?,
                              _ out: UnsafeMutablePointer<Double>?,
                              _ err: UnsafeMutablePointer<CChar>?, _ cap: Int) -> Int32 {
    abiCall(err, cap) {
        let c = try chain(batch, m, n, depth, ranks, u, v, middle)
        let out = try nonNull(out, "nuclear")
        for (b, x) in try Diagnostics.nuclearNorms(c).enumerated() { out[b] = x }
    }
}

@_cdecl("fnl_factor_balance")
public func fnl_factor_balance(_ batch: Int64, _ m: Int64, _ n: Int64, _ rank: Int64,
                               _ u: UnsafePointer<Float>?, _ v: UnsafePointer<Float>?,
                               _ out: UnsafeMutablePointer<Double>?,
                               _ err: UnsafeMutablePointer<CChar>?, _ cap: Int) -> Int32 {
    abiCall(err, cap) {
        var r = rank
        let c = try chain(batch, m, n, 0, &r, u, v, nil)
        let out = try nonNull(out, "balance")
        for (b, x) in try Diagnostics.balance(c).enumerated() { out[b] = x }
    }
}

@_cdecl("fnl_conv_to_matrix")
public func fnl_conv_to_matrix(_ k: UnsafePointer<Float>?, _ cOut: Int64, _ cIn: Int64, _ kh: Int64, _ kw: Int64,
                               _ w: UnsafeMutablePointer<Float>?,
                               _ err: UnsafeMutablePointer<CChar>?, _ cap: Int) -> Int32 {
    abiCall(err, cap) {
        let s = try ConvLayout.Shape(cOut: Int(clamping: cOut), cIn: Int(clamping: cIn), kh: Int(clamping: kh), kw: Int(clamping: kw))
        let k = try nonNull(k, "K")
        try Finite.check(k, s.rows * s.cols, "K")
        ConvLayout.toMatrix(k, s, try nonNull(w, "W"))
    }
}

@_cdecl("fnl_matrix_to_conv")
public func fnl_matrix_to_conv(_ w: UnsafePointer<Float>?, _ cOut: Int64, _ cIn: Int64, _ kh: Int64, _ kw: Int64,
                               _ k: UnsafeMutablePointer<Float>?,
                               _ err: UnsafeMutablePointer<CChar>?, _ cap: Int) -> Int32 {
    abiCall(err, cap) {
        let s = try ConvLayout.Shape(cOut: Int(clamping: cOut), cIn: Int(clamping: cIn), kh: Int(clamping: kh), kw: Int(clamping: kw))
        let w = try nonNull(w, "W")
        try Finite.check(w, s.rows * s.cols, "W")
        ConvLayout.toKernel(w, s, try nonNull(k, "K"))
    }
}
