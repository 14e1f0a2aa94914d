/// 2-d max and average pooling over NCHW planes with per-axis kernel, stride and zero padding
/// (PyTorch semantics, including ceil_mode output sizes computed by the caller).
///
/// Output size per axis: o = floor((h + 2p - k) / s) + 1 (or ceil, then reduced by one when
/// the last window would start in the right padding). Every window must overlap the input.
public struct PoolGeometry {
    public let n: Int, c: Int, h: Int, w: Int
    public let kh: Int, kw: Int, sh: Int, sw: Int, ph: Int, pw: Int
    public let oh: Int, ow: Int

    public init(n: Int, c: Int, h: Int, w: Int, kh: Int, kw: Int, sh: Int, sw: Int, ph: Int, pw: Int,
                oh: Int, ow: Int) throws {
        try require(n >= 1 && c >= 1 && h >= 1 && w >= 1, "x must be non-empty (N, C, H, W), got (\(n), \(c), \(h), \(w))")
        try require(kh >= 1 && kw >= 1 && kh <= 1 << 20 && kw <= 1 << 20, "kernel_size must be >= 1, got (\(kh), \(kw))")
        try require(sh >= 1 && sw >= 1 && sh <= 1 << 20 && sw <= 1 << 20, "stride must be >= 1, got (\(sh), \(sw))")
        try require(ph >= 0 && pw >= 0 && 2 * ph <= kh && 2 * pw <= kw,
                    "padding must be in 0..kernel_size/2, got padding (\(ph), \(pw)) for kernel (\(kh), \(kw))")
        try require(oh >= 1 && ow >= 1, "output size must be >= 1, got (\(oh), \(ow))")
        try require(oh <= h + 2 * ph && ow <= w + 2 * pw, "output size (\(oh), \(ow)) too large for the input")
        // The last window must start inside the input or left padding.
        try require((oh - 1) * sh - ph < h && (ow - 1) * sw - pw < w,
                    "output size (\(oh), \(ow)) has windows outside the input")
        _ = try Dimensions.product([n, c, h, w], "x")
        _ = try Dimensions.product([n, c, oh, ow], "y")
        self.n = n; self.c = c; self.h = h; self.w = w
        self.kh = kh; self.kw = kw; self.sh = sh; self.sw = sw; self.ph = ph; self.pw = pw
        self.oh = oh; self.ow = ow
    }

    var planes: Int { n * c }
    var inPlane: Int { h * w }
    var outPlane: Int { oh * ow }
    /// One window covering each whole unpadded plane (global pooling).
    var isGlobal: Bool { oh == 1 && ow == 1 && ph == 0 && pw == 0 && kh == h && kw == w }

    /// Output row oy's window: its first row (negative in the padding) and its rows inside the
    /// input (never empty: every window overlaps the input).
    @inline(__always)
    func windowRows(_ oy: Int) -> (start: Int, inside: Range<Int>) {
        let y0 = oy * sh - ph
        return (y0, max(0, y0)..<min(h, y0 + kh))
    }

    /// Output column ox's window: its first column and its columns inside the input.
    @inline(__always)
    func windowCols(_ ox: Int) -> (start: Int, inside: Range<Int>) {
        let x0 = ox * sw - pw
        return (x0, max(0, x0)..<min(w, x0 + kw))
    }
}

public enum Pooling {
    /// y = max over each window (padding never wins); idx = the flat index (row * W + col) of
    /// the maximum inside its input plane (the first one on ties; NaN wins, as in PyTorch).
    public static func maxForward(_ x: UnsafePointer<Float>, _ g: PoolGeometry,
                                  y: UnsafeMutablePointer<Float>, idx: UnsafeMutablePointer<Int32>) throws {
        _ = try Dimensions.blas(g.inPlane, "H*W")
        Threads.parallelFor(g.planes, work: g.planes * g.outPlane * g.kh * g.kw) { p in
            let xp = x + p * g.inPlane, yp = y + p * g.outPlane, ip = idx + p * g.outPlane
            for oy in 0..<g.oh {
                let rows = g.windowRows(oy).inside
                for ox in 0..<g.ow {
                    let cols = g.windowCols(ox).inside
                    var arg = rows.lowerBound * g.w + cols.lowerBound
                    var best = xp[arg]
                    scan: for iy in rows {
                        let row = xp + iy * g.w
                        for ix in cols {
                            let v = row[ix]
                            if best.isNaN { break scan }
                            if v > best || v.isNaN { best = v; arg = iy * g.w + ix }
                        }
                    }
                    yp[oy * g.ow + ox] = best
                    ip[oy * g.ow + ox] = Int32(arg)
                }
            }
        }
    }

    /// dx[argmax] += dy for each window (dx is overwritten).
    public static func maxBackward(_ dy: UnsafePointer<Float>, _ idx: UnsafePointer<Int32>, planes: Int,
                                   outPlane: Int, inPlane: Int, dx: UnsafeMutablePointer<Float>) throws {
        try require(planes >= 1 && outPlane >= 1 && inPlane >= 1, "shapes must be non-empty")
        _ = try Dimensions.product([planes, inPlane], "x")
        _ = try Dimensions.product([planes, outPlane], "y")
        // Validate indices first (they may come from Python).
        var badIndex = -1
        for i in 0..<(planes * outPlane) where idx[i] < 0 || Int(idx[i]) >= inPlane { badIndex = i; break }
        try require(badIndex < 0, "indices must be in 0..H*W-1=\(inPlane - 1), got \(badIndex >= 0 ? Int(idx[badIndex]) : 0) at flat index \(badIndex)")
        Threads.parallelFor(planes, work: planes * (inPlane + outPlane)) { p in
            let dxp = dx + p * inPlane, dyp = dy + p * outPlane, ip = idx + p * outPlane
            dxp.update(repeating: 0, count: inPlane)
            for o in 0..<outPlane { dxp[Int(ip[o])] += dyp[o] }
        }
    }

    /// The averaging divisor of a window: its size clipped to the padded input
    /// (count_include_pad) or the number of input elements it covers.
    @inline(__always)
    static func divisor(_ g: PoolGeometry, _ rows: (start: Int, inside: Range<Int>),
                        _ cols: (start: Int, inside: Range<Int>), _ includePad: Bool) -> Float {
        if includePad {
            let yb = min(rows.start + g.kh, g.h + g.ph), xb = min(cols.start + g.kw, g.w + g.pw)
            return Float((yb - rows.start) * (xb - cols.start))
        }
        return Float(rows.inside.count * cols.inside.count)
    }

    /// y = (sum over the window) / divisor.
    public static func avgForward(_ x: UnsafePointer<Float>, _ g: PoolGeometry, includePad: Bool,
                                  y: UnsafeMutablePointer<Float>) throws {
        Threads.parallelFor(g.planes, work: g.planes * g.outPlane * g.kh * g.kw) { p in
            let xp = x + p * g.inPlane, yp = y + p * g.outPlane
            if g.isGlobal {
                yp[0] = Float(Reduce.sum(xp, g.inPlane) / Double(g.inPlane))   // global average
                return
            }
            for oy in 0..<g.oh {
                let rows = g.windowRows(oy)
                for ox in 0..<g.ow {
                    let cols = g.windowCols(ox)
                    var s: Float = 0
                    for iy in rows.inside {
                        let row = xp + iy * g.w
                        for ix in cols.inside { s += row[ix] }
                    }
                    yp[oy * g.ow + ox] = s / divisor(g, rows, cols, includePad)
                }
            }
        }
    }

    /// dx[i] = sum over windows containing i of dy / divisor (dx is overwritten).
    public static func avgBackward(_ dy: UnsafePointer<Float>, _ g: PoolGeometry, includePad: Bool,
                                   dx: UnsafeMutablePointer<Float>) throws {
        Threads.parallelFor(g.planes, work: g.planes * (g.outPlane * g.kh * g.kw + g.inPlane)) { p in
            let dxp = dx + p * g.inPlane, dyp = dy + p * g.outPlane
            if g.isGlobal {
                dxp.update(repeating: dyp[0] / Float(g.inPlane), count: g.inPlane)
                return
            }
            dxp.update(repeating: 0, count: g.inPlane)
            for oy in 0..<g.oh {
                let rows = g.windowRows(oy)
                for ox in 0..<g.ow {
                    let cols = g.windowCols(ox)
                    let v = dyp[oy * g.ow + ox] / divisor(g, rows, cols, includePad)
                    for iy in rows.inside {
                        let row = dxp + iy * g.w
                        for ix in cols.inside { row[ix] += v }
                    }
                }
            }
        }
    }
}
