import FNLCore

/// The neural-network layer kernels (fnl_nn.h).

private func lowRankChain(_ n: Int64, _ nIn: Int64, _ nOut: Int64, _ depth: Int64, _ ranks: UnsafePointer<Int64>?,
                          _ u: UnsafePointer<Float>?, _ v: UnsafePointer<Float>?,
                          _ middle: UnsafePointer<UnsafePointer<Float>?>?) throws -> LinearLayer.Chain {
    let d = try size(depth, "depth")
    try require(d <= 64, "depth must be in 0..64, got \(d)")
    let ranks = try nonNull(ranks, "ranks")
    let mids = try pointerList(middle, d, "middle")
    var rs: [Int] = []
    for j in 0...d { rs.append(try size(ranks[j], "ranks[\(j)]")) }
    return try LinearLayer.Chain(n: try size(n, "n"), nIn: try size(nIn, "n_in"), nOut: try size(nOut, "n_out"),
                                 ranks: rs, u: try nonNull(u, "U"), v: try nonNull(v, "V"), middle: mids)
}

@_cdecl("fnl_linear_forward")
public func fnl_linear_forward(_ x: UnsafePointer<Float>?, _ n: Int64, _ nIn: Int64, _ nOut: Int64,
                               _ w: UnsafePointer<Float>?, _ bias: UnsafePointer<Float>?,
                               _ y: UnsafeMutablePointer<Float>?,
                               _ err: UnsafeMutablePointer<CChar>?, _ cap: Int) -> Int32 {
    abiCall(err, cap) {
        try LinearLayer.forward(try nonNull(x, "x"), n: try size(n, "n"), nIn: try size(nIn, "n_in"),
                                nOut: try size(nOut, "n_out"), w: try nonNull(w, "W"), bias: bias, y: try nonNull(y, "y"))
    }
}

@_cdecl("fnl_linear_backward")
public func fnl_linear_backward(_ dy: UnsafePointer<Float>?, _ x: UnsafePointer<Float>?, _ n: Int64, _ nIn: Int64,
                                _ nOut: Int64, _ w: UnsafePointer<Float>?, _ accumulate: Int32,
                                _ dw: UnsafeMutablePointer<Float>?, _ db: UnsafeMutablePointer<Float>?,
                                _ dx: UnsafeMutablePointer<Float>?,
                                _ err: UnsafeMutablePointer<CChar>?, _ cap: Int) -> Int32 {
    abiCall(err, cap) {
        try LinearLayer.backward(try nonNull(dy, "dy"), try nonNull(x, "x"), n: try size(n, "n"),
                                 nIn: try size(nIn, "n_in"), nOut: try size(nOut, "n_out"), w: try nonNull(w, "W"),
                                 accumulate: accumulate != 0, dw: try nonNull(dw, "dW"), db: db, dx: dx)
    }
}

@_cdecl("fnl_lowrank_linear_forward")
public func fnl_lowrank_linear_forward(_ x: UnsafePointer<Float>?, _ n: Int64, _ nIn: Int64, _ nOut: Int64,
                                       _ depth: Int64, _ ranks: UnsafePointer<Int64>?,
                                       _ u: UnsafePointer<Float>?, _ v: UnsafePointer<Float>?,
                                       _ middle: UnsafePointer<UnsafePointer<Float>?>?, _ bias: UnsafePointer<Float>?,
                                       _ y: UnsafeMutablePointer<Float>?,
                                       _ err: UnsafeMutablePointer<CChar>?, _ cap: Int) -> Int32 {
    abiCall(err, cap) {
        let c = try lowRankChain(n, nIn, nOut, depth, ranks, u, v, middle)
        try LinearLayer.lowRankForward(try nonNull(x, "x"), c, bias: bias, y: try nonNull(y, "y"))
    }
}

@_cdecl("fnl_lowrank_linear_backward")
public func fnl_lowrank_linear_backward(_ dy: UnsafePointer<Float>?, _ x: UnsafePointer<Float>?, _ n: Int64,
                                        _ nIn: Int64, _ nOut: Int64, _ depth: Int64, _ ranks: UnsafePointer<Int64>?,
                                        _ u: UnsafePointer<Float>?, _ v: UnsafePointer<Float>?,
                                        _ middle: UnsafePointer<UnsafePointer<Float>?>?, _ accumulate: Int32,
                                        _ du: UnsafeMutablePointer<Float>?, _ dv: UnsafeMutablePointer<Float>?,
                                        _ dmiddle: UnsafePointer<UnsafeMutablePointer<Float>?>?,
                                        _ db: UnsafeMutablePointer<Float>?, _ dx: UnsafeMutablePointer<Float>?,
                                        _ err: UnsafeMutablePointer<CChar>?, _ cap: Int) -> Int32 {
    abiCall(err, cap) {
        let c = try lowRankChain(n, nIn, nOut, depth, ranks, u, v, middle)
        let dms = try pointerList(dmiddle, c.middle.count, "dmiddle")
        try LinearLayer.lowRankBackward(try nonNull(dy, "dy"), try nonNull(x, "x"), c, accumulate: accumulate != 0,
                                        du: try nonNull(du, "dU"), dv: try nonNull(dv, "dV"), dMiddle: dms,
                                        db: db, dx: dx)
    }
}

@_cdecl("fnl_batchnorm_forward")
public func fnl_batchnorm_forward(_ x: UnsafePointer<Float>?, _ n: Int64, _ c: Int64, _ s: Int64,
                                  _ gamma: UnsafePointer<Float>?, _ beta: UnsafePointer<Float>?,
                                  _ runningMean: UnsafeMutablePointer<Float>?, _ runningVar: UnsafeMutablePointer<Float>?,
                                  _ training: Int32, _ momentum: Float, _ eps: Float,
                                  _ y: UnsafeMutablePointer<Float>?, _ mean: UnsafeMutablePointer<Float>?,
                                  _ invstd: UnsafeMutablePointer<Float>?,
                                  _ err: UnsafeMutablePointer<CChar>?, _ cap: Int) -> Int32 {
    abiCall(err, cap) {
        let sh = try BatchNorm.Shape(n: try size(n, "n"), c: try size(c, "c"), s: try size(s, "s"))
        let (x, gamma, beta) = (try nonNull(x, "x"), try nonNull(gamma, "gamma"), try nonNull(beta, "beta"))
        let (y, mean, invstd) = (try nonNull(y, "y"), try nonNull(mean, "mean"), try nonNull(invstd, "invstd"))
        if training != 0 {
            try require((runningMean == nil) == (runningVar == nil), "running_mean and running_var must both be given or both be null")
            try BatchNorm.forwardTrain(x, sh, gamma: gamma, beta: beta, eps: eps, momentum: momentum,
                                       runningMean: runningMean, runningVar: runningVar, y: y, mean: mean, invstd: invstd)
        } else {
            let rm = try nonNull(runningMean, "running_mean"), rv = try nonNull(runningVar, "running_var")
            try BatchNorm.invstd(rv, sh.c, eps: eps, invstd)
            mean.update(from: rm, count: sh.c)
            try BatchNorm.forwardEval(x, sh, gamma: gamma, beta: beta, mean: mean, invstd: invstd, y: y)
        }
    }
}

@_cdecl("fnl_batchnorm_backward")
public func fnl_batchnorm_backward(_ dy: UnsafePointer<Float>?, _ x: UnsafePointer<Float>?, _ n: Int64, _ c: Int64,
                                   _ s: Int64, _ gamma: UnsafePointer<Float>?, _ mean: UnsafePointer<Float>?,
                                   _ invstd: UnsafePointer<Float>?, _ training: Int32, _ accumulate: Int32,
                                   _ dgamma: UnsafeMutablePointer<Float>?, _ dbeta: UnsafeMutablePointer<Float>?,
                                   _ dx: UnsafeMutablePointer<Float>?,
                                   _ err: UnsafeMutablePointer<CChar>?, _ cap: Int) -> Int32 {
    abiCall(err, cap) {
        let sh = try BatchNorm.Shape(n: try size(n, "n"), c: try size(c, "c"), s: try size(s, "s"))
        try BatchNorm.backward(try nonNull(dy, "dy"), try nonNull(x, "x"), sh, gamma: try nonNull(gamma, "gamma"),
                               mean: try nonNull(mean, "mean"), invstd: try nonNull(invstd, "invstd"),
                               training: training != 0, accumulate: accumulate != 0, dx: dx,
                               dgamma: try nonNull(dgamma, "dgamma"), dbeta: try nonNull(dbeta, "dbeta"))
    }
}

@_cdecl("fnl_batchnorm_act_forward")
public func fnl_batchnorm_act_forward(_ x: UnsafePointer<Float>?, _ n: Int64, _ c: Int64, _ s: Int64,
                                      _ gamma: UnsafePointer<Float>?, _ beta: UnsafePointer<Float>?,
                                      _ runningMean: UnsafeMutablePointer<Float>?,
                                      _ runningVar: UnsafeMutablePointer<Float>?,
                                      _ training: Int32, _ momentum: Float, _ eps: Float,
                                      _ residual: UnsafePointer<Float>?, _ relu: Int32,
                                      _ y: UnsafeMutablePointer<Float>?, _ mean: UnsafeMutablePointer<Float>?,
                                      _ invstd: UnsafeMutablePointer<Float>?,
                                      _ err: UnsafeMutablePointer<CChar>?, _ cap: Int) -> Int32 {
    abiCall(err, cap) {
        let sh = try BatchNorm.Shape(n: try size(n, "n"), c: try size(c, "c"), s: try size(s, "s"))
        let (x, gamma, beta) = (try nonNull(x, "x"), try nonNull(gamma, "gamma"), try nonNull(beta, "beta"))
        let (y, mean, invstd) = (try nonNull(y, "y"), try nonNull(mean, "mean"), try nonNull(invstd, "invstd"))
        if training != 0 {
            try require((runningMean == nil) == (runningVar == nil), "running_mean and running_var must both be given or both be null")
            try BatchNorm.forwardTrain(x, sh, gamma: gamma, beta: beta, eps: eps, momentum: momentum,
                                       runningMean: runningMean, runningVar: runningVar, residual: residual,
                                       relu: relu != 0, y: y, mean: mean, invstd: invstd)
        } else {
            let rm = try nonNull(runningMean, "running_mean"), rv = try nonNull(runningVar, "running_var")
            try BatchNorm.invstd(rv, sh.c, eps: eps, invstd)
            mean.update(from: rm, count: sh.c)
            try BatchNorm.forwardEval(x, sh, gamma: gamma, beta: beta, mean: mean, invstd: invstd,
                                      residual: residual, relu: relu != 0, y: y)
        }
    }
}

@_cdecl("fnl_batchnorm_act_backward")
public func fnl_batchnorm_act_backward(_ dy: UnsafePointer<Float>?, _ x: UnsafePointer<Float>?,
                                       _ output: UnsafePointer<Float>?, _ n: Int64, _ c: Int64, _ s: Int64,
                                       _ gamma: UnsafePointer<Float>?, _ mean: UnsafePointer<Float>?,
                                       _ invstd: UnsafePointer<Float>?, _ training: Int32, _ accumulate: Int32,
                                       _ dgamma: UnsafeMutablePointer<Float>?, _ dbeta: UnsafeMutablePointer<Float>?,
                                       _ dx: UnsafeMutablePointer<Float>?, _ maskedGrad: UnsafeMutablePointer<Float>?,
                                       _ err: UnsafeMutablePointer<CChar>?, _ cap: Int) -> Int32 {
    abiCall(err, cap) {
        let sh = try BatchNorm.Shape(n: try size(n, "n"), c: try size(c, "c"), s: try size(s, "s"))
        try require(maskedGrad == nil || output != nil, "masked_grad needs the fused output y")
        try require(maskedGrad == nil || dx == nil || maskedGrad != dx, "dx and masked_grad must be different buffers")
        try BatchNorm.backward(try nonNull(dy, "dy"), try nonNull(x, "x"), sh, gamma: try nonNull(gamma, "gamma"),
                               mean: try nonNull(mean, "mean"), invstd: try nonNull(invstd, "invstd"),
                               training: training != 0, accumulate: accumulate != 0, output: output,
                               maskedGrad: maskedGrad, dx: dx,
                               dgamma: try nonNull(dgamma, "dgamma"), dbeta: try nonNull(dbeta, "dbeta"))
    }
}

private func geometry(_ n: Int64, _ c: Int64, _ h: Int64, _ w: Int64, _ kh: Int64, _ kw: Int64, _ sh: Int64,
                      _ sw: Int64, _ ph: Int64, _ pw: Int64, _ oh: Int64, _ ow: Int64) throws -> PoolGeometry {
    try PoolGeometry(n: try size(n, "n"), c: try size(c, "c"), h: try size(h, "h"), w: try size(w, "w"),
                     kh: try size(kh, "kh"), kw: try size(kw, "kw"), sh: try size(sh, "sh"), sw: try size(sw, "sw"),
                     ph: try size(ph, "ph"), pw: try size(pw, "pw"), oh: try size(oh, "oh"), ow: try size(ow, "ow"))
}

@_cdecl("fnl_maxpool2d_forward")
public func fnl_maxpool2d_forward(_ x: UnsafePointer<Float>?, _ n: Int64, _ c: Int64, _ h: Int64, _ w: Int64,
                                  _ kh: Int64, _ kw: Int64, _ sh: Int64, _ sw: Int64, _ ph: Int64, _ pw: Int64,
                                  _ oh: Int64, _ ow: Int64, _ y: UnsafeMutablePointer<Float>?,
                                  _ idx: UnsafeMutablePointer<Int32>?,
                                  _ err: UnsafeMutablePointer<CChar>?, _ cap: Int) -> Int32 {
    abiCall(err, cap) {
        let g = try geometry(n, c, h, w, kh, kw, sh, sw, ph, pw, oh, ow)
        try Pooling.maxForward(try nonNull(x, "x"), g, y: try nonNull(y, "y"), idx: try nonNull(idx, "indices"))
    }
}

@_cdecl("fnl_maxpool2d_backward")
public func fnl_maxpool2d_backward(_ dy: UnsafePointer<Float>?, _ idx: UnsafePointer<Int32>?, _ planes: Int64,
                                   _ outPlane: Int64, _ inPlane: Int64, _ dx: UnsafeMutablePointer<Float>?,
                                   _ err: UnsafeMutablePointer<CChar>?, _ cap: Int) -> Int32 {
    abiCall(err, cap) {
        try Pooling.maxBackward(try nonNull(dy, "dy"), try nonNull(idx, "indices"), planes: try size(planes, "planes"),
                                outPlane: try size(outPlane, "out_plane"), inPlane: try size(inPlane, "in_plane"),
                                dx: try nonNull(dx, "dx"))
    }
}

@_cdecl("fnl_avgpool2d_forward")
public func fnl_avgpool2d_forward(_ x: UnsafePointer<Float>?, _ n: Int64, _ c: Int64, _ h: Int64, _ w: Int64,
                                  _ kh: Int64, _ kw: Int64, _ sh: Int64, _ sw: Int64, _ ph: Int64, _ pw: Int64,
                                  _ oh: Int64, _ ow: Int64, _ includePad: Int32, _ y: UnsafeMutablePointer<Float>?,
                                  _ err: UnsafeMutablePointer<CChar>?, _ cap: Int) -> Int32 {
    abiCall(err, cap) {
        let g = try geometry(n, c, h, w, kh, kw, sh, sw, ph, pw, oh, ow)
        try Pooling.avgForward(try nonNull(x, "x"), g, includePad: includePad != 0, y: try nonNull(y, "y"))
    }
}

@_cdecl("fnl_avgpool2d_backward")
public func fnl_avgpool2d_backward(_ dy: UnsafePointer<Float>?, _ n: Int64, _ c: Int64, _ h: Int64, _ w: Int64,
                                   _ kh: Int64, _ kw: Int64, _ sh: Int64, _ sw: Int64, _ ph: Int64, _ pw: Int64,
                                   _ oh: Int64, _ ow: Int64, _ includePad: Int32, _ dx: UnsafeMutablePointer<Float>?,
                                   _ err: UnsafeMutablePointer<CChar>?, _ cap: Int) -> Int32 {
    abiCall(err, cap) {
        let g = try geometry(n, c, h, w, kh, kw, sh, sw, ph, pw, oh, ow)
        try Pooling.avgBackward(try nonNull(dy, "dy"), g, includePad: includePad != 0, dx: try nonNull(dx, "dx"))
    }
}

@_cdecl("fnl_relu_forward")
public func fnl_relu_forward(_ x: UnsafePointer<Float>?, _ count: Int64, _ y: UnsafeMutablePointer<Float>?,
                             _ err: UnsafeMutablePointer<CChar>?, _ cap: Int) -> Int32 {
    abiCall(err, cap) {
        Activation.reluForward(try nonNull(x, "x"), try size(count, "count"), try nonNull(y, "y"))
    }
}

@_cdecl("fnl_relu_backward")
public func fnl_relu_backward(_ dy: UnsafePointer<Float>?, _ y: UnsafePointer<Float>?, _ count: Int64,
                              _ dx: UnsafeMutablePointer<Float>?,
                              _ err: UnsafeMutablePointer<CChar>?, _ cap: Int) -> Int32 {
    abiCall(err, cap) {
        Activation.reluBackward(try nonNull(dy, "dy"), try nonNull(y, "y"), try size(count, "count"), try nonNull(dx, "dx"))
    }
}

@_cdecl("fnl_cross_entropy")
public func fnl_cross_entropy(_ logits: UnsafePointer<Float>?, _ labels: UnsafePointer<Int64>?, _ n: Int64, _ k: Int64,
                              _ smoothing: Float, _ loss: UnsafeMutablePointer<Double>?,
                              _ dlogits: UnsafeMutablePointer<Float>?,
                              _ err: UnsafeMutablePointer<CChar>?, _ cap: Int) -> Int32 {
    abiCall(err, cap) {
        let value = try CrossEntropy.forwardBackward(try nonNull(logits, "logits"), try nonNull(labels, "labels"),
                                                     n: try size(n, "n"), k: try size(k, "k"), smoothing: smoothing,
                                                     dlogits: dlogits)
        try nonNull(loss, "loss").pointee = value
    }
}
