import FNLCore

/// The geometry array of a conv call (13 entries, see fnl_conv.h).
private func geometry(_ geom: UnsafePointer<Int64>?) throws -> ConvGeometry {
    try ConvGeometry(abi: try nonNull(geom, "geom"))
}

private func path(_ raw: Int32) throws -> LowRankConv.Path {
    guard let p = LowRankConv.Path(rawValue: raw) else {
        throw FNLError.invalid("path must be 0 (auto), 1 (fused), 2 (compose) or 3 (fused, matrix products), got \(raw)")
    }
    return p
}

private func ranks(_ depth: Int64, _ ranks: UnsafePointer<Int64>?) throws -> [Int] {
    let d = try size(depth, "depth")
    try require(d <= 64, "depth must be in 0..64, got \(d)")
    let r = try nonNull(ranks, "ranks")
    return (0...d).map { Int(clamping: r[$0]) }
}

private func workspaceCount(_ ws: UnsafeMutablePointer<Float>?, _ count: Int64) throws -> Int {
    ws == nil ? 0 : try size(count, "workspace_count")
}

@_cdecl("fnl_conv2d_plan")
public func fnl_conv2d_plan(_ geom: UnsafePointer<Int64>?, _ outH: UnsafeMutablePointer<Int64>?,
                            _ outW: UnsafeMutablePointer<Int64>?, _ wsForward: UnsafeMutablePointer<Int64>?,
                            _ wsBackward: UnsafeMutablePointer<Int64>?,
                            _ err: UnsafeMutablePointer<CChar>?, _ cap: Int) -> Int32 {
    abiCall(err, cap) {
        let p = try DenseConv.Plan(try geometry(geom))
        outH?.pointee = Int64(p.geometry.h.output)
        outW?.pointee = Int64(p.geometry.w.output)
        wsForward?.pointee = Int64(p.forwardWorkspace)
        wsBackward?.pointee = Int64(p.backwardWorkspace)
    }
}

@_cdecl("fnl_conv2d_forward")
public func fnl_conv2d_forward(_ geom: UnsafePointer<Int64>?, _ x: UnsafePointer<Float>?, _ k: UnsafePointer<Float>?,
                               _ bias: UnsafePointer<Float>?, _ y: UnsafeMutablePointer<Float>?,
                               _ ws: UnsafeMutablePointer<Float>?, _ wsCount: Int64,
                               _ err: UnsafeMutablePointer<CChar>?, _ cap: Int) -> Int32 {
    abiCall(err, cap) {
        let p = try DenseConv.Plan(try geometry(geom))
        let g = p.geometry
        let x = try nonNull(x, "x"), k = try nonNull(k, "K")
        try Finite.check(k, g.kernelCount, "K")
        if let bias { try Finite.check(bias, g.cOut, "bias") }
        let finite = try DenseConv.forward(p, x: x, kernel: k, bias: bias, y: try nonNull(y, "y"),
                                           workspace: ws, workspaceCount: try workspaceCount(ws, wsCount))
        // Every used value of x reaches y: x is scanned only when y is not finite.
        if !finite { try Finite.check(x, g.inputCount, "x") }
    }
}

@_cdecl("fnl_conv2d_backward")
public func fnl_conv2d_backward(_ geom: UnsafePointer<Int64>?, _ gy: UnsafePointer<Float>?, _ x: UnsafePointer<Float>?,
                                _ k: UnsafePointer<Float>?, _ dx: UnsafeMutablePointer<Float>?,
                                _ dk: UnsafeMutablePointer<Float>?, _ dbias: UnsafeMutablePointer<Float>?,
                                _ ws: UnsafeMutablePointer<Float>?, _ wsCount: Int64,
                                _ err: UnsafeMutablePointer<CChar>?, _ cap: Int) -> Int32 {
    abiCall(err, cap) {
        let p = try DenseConv.Plan(try geometry(geom))
        let g = p.geometry
        let gy = try nonNull(gy, "grad_y"), x = try nonNull(x, "x"), k = try nonNull(k, "K")
        try Finite.check(k, g.kernelCount, "K")
        let dk = try nonNull(dk, "dK")
        try DenseConv.backward(p, gradOutput: gy, x: x, kernel: k, dx: try nonNull(dx, "dx"),
                               dKernel: dk, dbias: dbias,
                               workspace: ws, workspaceCount: try workspaceCount(ws, wsCount))
        // grad_y and x reach dK (a sum over every pixel): scanned only when it is not finite.
        try Finite.checkInputs(ifNotFinite: [(UnsafePointer(dk), g.kernelCount)],
                               [(gy, g.outputCount, "grad_y"), (x, g.inputCount, "x")])
    }
}

@_cdecl("fnl_lowrank_conv2d_plan")
public func fnl_lowrank_conv2d_plan(_ geom: UnsafePointer<Int64>?, _ depth: Int64, _ rankList: UnsafePointer<Int64>?,
                                    _ requested: Int32, _ chosen: UnsafeMutablePointer<Int32>?,
                                    _ rank: UnsafeMutablePointer<Int64>?, _ outH: UnsafeMutablePointer<Int64>?,
                                    _ outW: UnsafeMutablePointer<Int64>?, _ wsForward: UnsafeMutablePointer<Int64>?,
                                    _ wsBackward: UnsafeMutablePointer<Int64>?,
                                    _ intermediateCount: UnsafeMutablePointer<Int64>?,
                                    _ err: UnsafeMutablePointer<CChar>?, _ cap: Int) -> Int32 {
    abiCall(err, cap) {
        let p = try LowRankConv.Plan(try geometry(geom), ranks: try ranks(depth, rankList), path: try path(requested))
        chosen?.pointee = p.path.rawValue
        rank?.pointee = Int64(p.rank)
        outH?.pointee = Int64(p.geometry.h.output)
        outW?.pointee = Int64(p.geometry.w.output)
        wsForward?.pointee = Int64(p.forwardWorkspace)
        wsBackward?.pointee = Int64(p.backwardWorkspace)
        intermediateCount?.pointee = Int64(p.intermediateCount)
    }
}

@_cdecl("fnl_lowrank_conv2d_forward")
public func fnl_lowrank_conv2d_forward(_ geom: UnsafePointer<Int64>?, _ depth: Int64, _ rankList: UnsafePointer<Int64>?,
                                       _ x: UnsafePointer<Float>?, _ u: UnsafePointer<Float>?, _ v: UnsafePointer<Float>?,
                                       _ middle: UnsafePointer<UnsafePointer<Float>?>?, _ bias: UnsafePointer<Float>?,
                                       _ requested: Int32, _ y: UnsafeMutablePointer<Float>?,
                                       _ intermediate: UnsafeMutablePointer<Float>?,
                                       _ ws: UnsafeMutablePointer<Float>?, _ wsCount: Int64,
                                       _ err: UnsafeMutablePointer<CChar>?, _ cap: Int) -> Int32 {
    abiCall(err, cap) {
        let p = try LowRankConv.Plan(try geometry(geom), ranks: try ranks(depth, rankList), path: try path(requested))
        let g = p.geometry
        let x = try nonNull(x, "x")
        if let bias { try Finite.check(bias, g.cOut, "bias") }
        let finite = try LowRankConv.forward(p, x: x, u: try nonNull(u, "U"), v: try nonNull(v, "V"),
                                             middle: try pointerList(middle, p.depth, "middle"), bias: bias,
                                             y: try nonNull(y, "y"), intermediate: intermediate, workspace: ws,
                                             workspaceCount: try workspaceCount(ws, wsCount))
        // Every used value of x reaches y: x is scanned only when y is not finite.
        if !finite { try Finite.check(x, g.inputCount, "x") }
    }
}

@_cdecl("fnl_lowrank_conv2d_backward")
public func fnl_lowrank_conv2d_backward(_ geom: UnsafePointer<Int64>?, _ depth: Int64, _ rankList: UnsafePointer<Int64>?,
                                        _ gy: UnsafePointer<Float>?, _ x: UnsafePointer<Float>?,
                                        _ u: UnsafePointer<Float>?, _ v: UnsafePointer<Float>?,
                                        _ middle: UnsafePointer<UnsafePointer<Float>?>?,
                                        _ intermediate: UnsafePointer<Float>?, _ requested: Int32,
                                        _ dx: UnsafeMutablePointer<Float>?, _ du: UnsafeMutablePointer<Float>?,
                                        _ dv: UnsafeMutablePointer<Float>?,
                                        _ dmiddle: UnsafePointer<UnsafeMutablePointer<Float>?>?,
                                        _ dbias: UnsafeMutablePointer<Float>?,
                                        _ ws: UnsafeMutablePointer<Float>?, _ wsCount: Int64,
                                        _ err: UnsafeMutablePointer<CChar>?, _ cap: Int) -> Int32 {
    abiCall(err, cap) {
        let p = try LowRankConv.Plan(try geometry(geom), ranks: try ranks(depth, rankList), path: try path(requested))
        let g = p.geometry
        let gy = try nonNull(gy, "grad_y"), x = try nonNull(x, "x")
        let dms = try pointerList(dmiddle, p.depth, "dmiddle")
        let du = try nonNull(du, "dU"), dv = try nonNull(dv, "dV")
        try LowRankConv.backward(p, gradOutput: gy, x: x, u: try nonNull(u, "U"), v: try nonNull(v, "V"),
                                 middle: try pointerList(middle, p.depth, "middle"), intermediate: intermediate,
                                 dx: try nonNull(dx, "dx"), du: du, dv: dv,
                                 dMiddle: dms, dbias: dbias, workspace: ws,
                                 workspaceCount: try workspaceCount(ws, wsCount))
        // grad_y, x and the intermediate reach dU and dV (sums over every pixel): scanned only
        // when those are not finite.
        var inputs = [(gy, g.outputCount, "grad_y"), (x, g.inputCount, "x")]
        if let intermediate { inputs.append((intermediate, p.intermediateCount, "intermediate")) }
        try Finite.checkInputs(ifNotFinite: [(UnsafePointer(du), p.rowsW * p.ranks[0]),
                                             (UnsafePointer(dv), p.colsW * p.ranks[p.depth])], inputs)
    }
}
