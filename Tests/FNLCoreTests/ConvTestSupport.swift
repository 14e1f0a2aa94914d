@testable import FNLCore

/// Deterministic pseudo-random floats in [-1, 1) (xorshift), for the conv tests.
struct ConvRandom {
    var state: UInt64
    init(_ seed: UInt64) { state = seed &* 0x9E37_79B9_7F4A_7C15 | 1 }
    mutating func next() -> Float {
        state ^= state << 13; state ^= state >> 7; state ^= state << 17
        return Float(state >> 40) / Float(1 << 24) * 2 - 1
    }
    mutating func array(_ n: Int) -> [Float] { (0..<n).map { _ in next() } }
}

/// Direct convolution in float64: y[n,o,i,j] = sum_{c,a,b} K[o,c,a,b] x[n,c,i*sh-ph+a*dh, j*sw-pw+b*dw].
func naiveConv(_ x: [Float], _ k: [Float], _ g: ConvGeometry) -> [Double] {
    var y = [Double](repeating: 0, count: g.outputCount)
    for n in 0..<g.batch { for o in 0..<g.cOut { for i in 0..<g.h.output { for j in 0..<g.w.output {
        var s = 0.0
        for c in 0..<g.cIn { for a in 0..<g.kh { for b in 0..<g.kw {
            let hh = i * g.h.stride - g.h.padding + a * g.h.dilation
            let ww = j * g.w.stride - g.w.padding + b * g.w.dilation
            if hh < 0 || hh >= g.h.size || ww < 0 || ww >= g.w.size { continue }
            s += Double(k[((o * g.cIn + c) * g.kh + a) * g.kw + b]) * Double(x[((n * g.cIn + c) * g.h.size + hh) * g.w.size + ww])
        } } }
        y[((n * g.cOut + o) * g.h.output + i) * g.w.output + j] = s
    } } } }
    return y
}

/// Gradients of sum(gy * conv(x, K)) in float64: (dx, dK, dbias).
func naiveConvBackward(_ gy: [Float], _ x: [Float], _ k: [Float], _ g: ConvGeometry) -> ([Double], [Double], [Double]) {
    var dx = [Double](repeating: 0, count: g.inputCount)
    var dk = [Double](repeating: 0, count: g.kernelCount)
    var db = [Double](repeating: 0, count: g.cOut)
    for n in 0..<g.batch { for o in 0..<g.cOut { for i in 0..<g.h.output { for j in 0..<g.w.output {
        let gv = Double(gy[((n * g.cOut + o) * g.h.output + i) * g.w.output + j])
        db[o] += gv
        for c in 0..<g.cIn { for a in 0..<g.kh { for b in 0..<g.kw {
            let hh = i * g.h.stride - g.h.padding + a * g.h.dilation
            let ww = j * g.w.stride - g.w.padding + b * g.w.dilation
            if hh < 0 || hh >= g.h.size || ww < 0 || ww >= g.w.size { continue }
            let xi = ((n * g.cIn + c) * g.h.size + hh) * g.w.size + ww
            let ki = ((o * g.cIn + c) * g.kh + a) * g.kw + b
            dx[xi] += gv * Double(k[ki])
            dk[ki] += gv * Double(x[xi])
        } } }
    } } } }
    return (dx, dk, db)
}

/// max |a - b| <= tol * max(1, max |b|).
func assertClose(_ a: [Float], _ b: [Double], _ tol: Double = 1e-5, _ what: String = "",
                 file: StaticString = #filePath, line: UInt = #line) {
    XCTAssertEqual(a.count, b.count, what, file: file, line: line)
    let scale = max(1, b.map { abs($0) }.max() ?? 0)
    let err = zip(a, b).map { abs(Double($0) - $1) }.max() ?? 0
    XCTAssertLessThanOrEqual(err, tol * scale, what, file: file, line: line)
}

func assertClose(_ a: [Float], _ b: [Float], _ tol: Double = 1e-5, _ what: String = "",
                 file: StaticString = #filePath, line: UInt = #line) {
    assertClose(a, b.map { Double($0) }, tol, what, file: file, line: line)
}

import XCTest

/// Geometries covering strides, padding, dilation, rectangular kernels and odd sizes.
let convTestGeometries: [ConvGeometry] = {
    let specs: [(Int, Int, Int, Int, Int, Int, Int, (Int, Int), (Int, Int), (Int, Int))] = [
        (2, 3, 7, 6, 4, 3, 3, (1, 1), (1, 1), (1, 1)),
        (3, 2, 5, 5, 3, 1, 1, (1, 1), (0, 0), (1, 1)),
        (1, 3, 9, 8, 2, 5, 5, (1, 1), (2, 2), (1, 1)),
        (2, 3, 9, 7, 2, 3, 1, (2, 1), (1, 0), (1, 1)),
        (3, 2, 5, 11, 4, 1, 5, (1, 2), (0, 2), (1, 1)),
        (2, 2, 10, 9, 3, 3, 3, (1, 3), (1, 1), (2, 2)),
        (1, 4, 8, 11, 3, 3, 5, (2, 2), (2, 1), (2, 1)),
        (4, 3, 4, 4, 2, 3, 3, (1, 1), (0, 0), (1, 1)),
    ]
    return specs.map {
        try! ConvGeometry(batch: $0.0, cIn: $0.1, height: $0.2, width: $0.3, cOut: $0.4, kh: $0.5, kw: $0.6,
                          stride: $0.7, padding: $0.8, dilation: $0.9)
    }
}()
