import XCTest
@testable import FNLCore

/// NN kernels against float64 references computed here (small shapes).
final class NNKernelTests: XCTestCase {
    private func random(_ n: Int, seed: UInt64) -> [Float] {
        var s = seed &* 6364136223846793005 &+ 1442695040888963407
        return (0..<n).map { _ in
            s = s &* 6364136223846793005 &+ 1442695040888963407
            return Float(Int64(bitPattern: s >> 11) % 2000 - 1000) / 500
        }
    }

    func testBatchNormTrainForwardBackward() throws {
        let (n, c, s) = (3, 2, 5)
        let x = random(n * c * s, seed: 1), dy = random(n * c * s, seed: 2)
        let gamma: [Float] = [1.5, -0.5], beta: [Float] = [0.1, 0.2]
        var y = [Float](repeating: 0, count: x.count), mean = [Float](repeating: 0, count: c)
        var inv = [Float](repeating: 0, count: c), rm: [Float] = [0, 0], rv: [Float] = [1, 1]
        let sh = try BatchNorm.Shape(n: n, c: c, s: s)
        try BatchNorm.forwardTrain(x, sh, gamma: gamma, beta: beta, eps: 1e-5, momentum: 0.1,
                                   runningMean: &rm, runningVar: &rv, y: &y, mean: &mean, invstd: &inv)
        var dx = [Float](repeating: 0, count: x.count), dg: [Float] = [0, 0], db: [Float] = [0, 0]
        try BatchNorm.backward(dy, x, sh, gamma: gamma, mean: mean, invstd: inv, training: true, accumulate: false,
                               dx: &dx, dgamma: &dg, dbeta: &db)
        for ch in 0..<c {
            var vals: [Double] = [], grads: [Double] = []
            for b in 0..<n { for i in 0..<s { vals.append(Double(x[(b * c + ch) * s + i])); grads.append(Double(dy[(b * c + ch) * s + i])) } }
            let m = Double(vals.count)
            let mu = vals.reduce(0, +) / m
            let v = vals.map { ($0 - mu) * ($0 - mu) }.reduce(0, +) / m
            let istd = 1 / (v + 1e-5).squareRoot()
            XCTAssertEqual(Double(mean[ch]), mu, accuracy: 1e-6)
            XCTAssertEqual(Double(rv[ch]), 0.9 + 0.1 * v * m / (m - 1), accuracy: 1e-5)
            let xhat = vals.map { ($0 - mu) * istd }
            let sdy = grads.reduce(0, +), sdyx = zip(grads, xhat).map { $0 * $1 }.reduce(0, +)
            XCTAssertEqual(Double(db[ch]), sdy, accuracy: 1e-5)
            XCTAssertEqual(Double(dg[ch]), sdyx, accuracy: 1e-4)
            var k = 0
            for b in 0..<n {
                for i in 0..<s {
                    let idx = (b * c + ch) * s + i
                    XCTAssertEqual(Double(y[idx]), Double(gamma[ch]) * xhat[k] + Double(beta[ch]), accuracy: 1e-5)
                    let ref = Double(gamma[ch]) * istd / m * (m * grads[k] - sdy - xhat[k] * sdyx)
                    XCTAssertEqual(Double(dx[idx]), ref, accuracy: 1e-4)
                    k += 1
                }
            }
        }
    }

    /// y = relu(bn(x) + r) and its backward against the unfused kernels composed here.
    func testBatchNormFusedResidualReLU() throws {
        for (n, c, s) in [(3, 2, 5), (2, 3, 37), (1, 2, 16)] {
            let count = n * c * s
            let x = random(count, seed: 3), r = random(count, seed: 4), dy = random(count, seed: 5)
            let gamma: [Float] = (0..<c).map { Float($0) * 0.7 - 0.4 }, beta: [Float] = (0..<c).map { Float($0) * 0.1 }
            let sh = try BatchNorm.Shape(n: n, c: c, s: s)
            for training in [true, false] {
                var mean = [Float](repeating: 0.1, count: c), inv = [Float](repeating: 0.9, count: c)
                var rm = [Float](repeating: 0.2, count: c), rv = [Float](repeating: 1.3, count: c)
                var plain = [Float](repeating: 0, count: count), fused = plain
                if training {
                    try BatchNorm.forwardTrain(x, sh, gamma: gamma, beta: beta, eps: 1e-5, momentum: 0.1,
                                               runningMean: nil, runningVar: nil, y: &plain, mean: &mean, invstd: &inv)
                    try BatchNorm.forwardTrain(x, sh, gamma: gamma, beta: beta, eps: 1e-5, momentum: 0.1,
                                               runningMean: &rm, runningVar: &rv, residual: r, relu: true,
                                               y: &fused, mean: &mean, invstd: &inv)
                } else {
                    try BatchNorm.forwardEval(x, sh, gamma: gamma, beta: beta, mean: mean, invstd: inv, y: &plain)
                    try BatchNorm.forwardEval(x, sh, gamma: gamma, beta: beta, mean: mean, invstd: inv,
                                              residual: r, relu: true, y: &fused)
                }
                for i in 0..<count { XCTAssertEqual(fused[i], max(plain[i] + r[i], 0), accuracy: 1e-5) }
                // backward: the masked gradient g, then the plain backward of g
                let g = (0..<count).map { fused[$0] > 0 ? dy[$0] : 0 }
                var dxRef = [Float](repeating: 0, count: count), dgRef = [Float](repeating: 0, count: c), dbRef = dgRef
                try BatchNorm.backward(g, x, sh, gamma: gamma, mean: mean, invstd: inv, training: training,
                                       accumulate: false, dx: &dxRef, dgamma: &dgRef, dbeta: &dbRef)
                // with masked output, without it (dx holds g first), and with neither dx nor masked output
                var dx = [Float](repeating: 0, count: count), masked = dx, dg = dgRef, db = dgRef
                try BatchNorm.backward(dy, x, sh, gamma: gamma, mean: mean, invstd: inv, training: training,
                                       accumulate: false, output: fused, maskedGrad: &masked, dx: &dx,
                                       dgamma: &dg, dbeta: &db)
                XCTAssertEqual(masked, g)
                for i in 0..<count { XCTAssertEqual(dx[i], dxRef[i], accuracy: 1e-5) }
                for ch in 0..<c {
                    XCTAssertEqual(dg[ch], dgRef[ch], accuracy: 1e-4)
                    XCTAssertEqual(db[ch], dbRef[ch], accuracy: 1e-4)
                }
                var dx2 = [Float](repeating: 0, count: count)
                try BatchNorm.backward(dy, x, sh, gamma: gamma, mean: mean, invstd: inv, training: training,
                                       accumulate: false, output: fused, dx: &dx2, dgamma: &dg, dbeta: &db)
                for i in 0..<count { XCTAssertEqual(dx2[i], dxRef[i], accuracy: 1e-5) }
                try BatchNorm.backward(dy, x, sh, gamma: gamma, mean: mean, invstd: inv, training: training,
                                       accumulate: false, output: fused, dx: nil, dgamma: &dg, dbeta: &db)
                for ch in 0..<c {
                    XCTAssertEqual(dg[ch], dgRef[ch], accuracy: 1e-4)
                    XCTAssertEqual(db[ch], dbRef[ch], accuracy: 1e-4)
                }
            }
        }
    }

    func testBatchNormRejectsBadArguments() throws {
        let sh = try BatchNorm.Shape(n: 1, c: 1, s: 1)
        var y: [Float] = [0], m: [Float] = [0], i: [Float] = [0]
        XCTAssertThrowsError(try BatchNorm.forwardTrain([1], sh, gamma: [1], beta: [0], eps: 1e-5, momentum: 0.1,
                                                        runningMean: nil, runningVar: nil, y: &y, mean: &m, invstd: &i))
        XCTAssertThrowsError(try BatchNorm.Shape(n: 0, c: 1, s: 1))
        XCTAssertThrowsError(try BatchNorm.invstd([-1], 1, eps: 1e-5, &i))
    }

    func testMaxAndAvgPooling() throws {
        let (h, w) = (5, 4)
        let x = random(h * w, seed: 3)
        let g = try PoolGeometry(n: 1, c: 1, h: h, w: w, kh: 3, kw: 2, sh: 2, sw: 2, ph: 1, pw: 0, oh: 3, ow: 2)
        var y = [Float](repeating: 0, count: 6), idx = [Int32](repeating: 0, count: 6)
        try Pooling.maxForward(x, g, y: &y, idx: &idx)
        var ya = [Float](repeating: 0, count: 6)
        try Pooling.avgForward(x, g, includePad: true, y: &ya)
        for oy in 0..<3 {
            for ox in 0..<2 {
                var best = -Float.infinity, sum: Float = 0
                for iy in max(0, oy * 2 - 1)..<min(h, oy * 2 + 2) {
                    for ix in (ox * 2)..<min(w, ox * 2 + 2) { best = max(best, x[iy * w + ix]); sum += x[iy * w + ix] }
                }
                XCTAssertEqual(y[oy * 2 + ox], best)
                XCTAssertEqual(x[Int(idx[oy * 2 + ox])], best)
                XCTAssertEqual(ya[oy * 2 + ox], sum / 6, accuracy: 1e-6)
            }
        }
        var dx = [Float](repeating: 1, count: h * w)
        try Pooling.maxBackward([Float](repeating: 1, count: 6), idx, planes: 1, outPlane: 6, inPlane: h * w, dx: &dx)
        XCTAssertEqual(dx.reduce(0, +), 6, accuracy: 1e-6)
        XCTAssertThrowsError(try Pooling.maxBackward([1], [99], planes: 1, outPlane: 1, inPlane: 4, dx: &dx))
        XCTAssertThrowsError(try PoolGeometry(n: 1, c: 1, h: 2, w: 2, kh: 2, kw: 2, sh: 1, sw: 1, ph: 2, pw: 0, oh: 1, ow: 1))
    }

    func testCrossEntropyWithSmoothing() throws {
        let z: [Float] = [1, 2, 0.5, -1, 0, 3]
        let labels: [Int64] = [1, 2]
        var g = [Float](repeating: 0, count: 6)
        let loss = try CrossEntropy.forwardBackward(z, labels, n: 2, k: 3, smoothing: 0.3, dlogits: &g)
        var ref = 0.0
        for i in 0..<2 {
            let row = (0..<3).map { Double(z[i * 3 + $0]) }
            let lse = log(row.map { exp($0) }.reduce(0, +))
            for j in 0..<3 {
                let q = 0.1 + (j == Int(labels[i]) ? 0.7 : 0)
                ref += q * (lse - row[j]) / 2
                XCTAssertEqual(Double(g[i * 3 + j]), (exp(row[j] - lse) - q) / 2, accuracy: 1e-6)
            }
        }
        XCTAssertEqual(loss, ref, accuracy: 1e-6)
        XCTAssertThrowsError(try CrossEntropy.forwardBackward(z, [0, 3], n: 2, k: 3, smoothing: 0, dlogits: nil))
        XCTAssertThrowsError(try CrossEntropy.forwardBackward([Float.nan], [0], n: 1, k: 1, smoothing: 0, dlogits: nil))
    }

    func testLowRankLinearMatchesComposedDense() throws {
        let (n, nIn, nOut, r) = (3, 5, 4, 2)
        let x = random(n * nIn, seed: 4), u = random(nOut * r, seed: 5), v = random(nIn * r, seed: 6)
        let m = random(r * r, seed: 7), dy = random(n * nOut, seed: 8)
        // W = U M V^T
        var w = [Float](repeating: 0, count: nOut * nIn)
        for a in 0..<nOut { for b in 0..<nIn { var s: Float = 0
            for p in 0..<r { for q in 0..<r { s += u[a * r + p] * m[p * r + q] * v[b * r + q] } }
            w[a * nIn + b] = s } }
        var yd = [Float](repeating: 0, count: n * nOut), yl = yd
        try LinearLayer.forward(x, n: n, nIn: nIn, nOut: nOut, w: w, bias: nil, y: &yd)
        try u.withUnsafeBufferPointer { up in try v.withUnsafeBufferPointer { vp in try m.withUnsafeBufferPointer { mp in
            let c = try LinearLayer.Chain(n: n, nIn: nIn, nOut: nOut, ranks: [r, r], u: up.baseAddress!, v: vp.baseAddress!,
                                          middle: [mp.baseAddress!])
            try LinearLayer.lowRankForward(x, c, bias: nil, y: &yl)
            var du = [Float](repeating: 0, count: nOut * r), dv = [Float](repeating: 0, count: nIn * r)
            var dm = [Float](repeating: 0, count: r * r), dx = [Float](repeating: 0, count: n * nIn)
            try dm.withUnsafeMutableBufferPointer { dmp in
                try LinearLayer.lowRankBackward(dy, x, c, accumulate: false, du: &du, dv: &dv, dMiddle: [dmp.baseAddress!],
                                                db: nil, dx: &dx)
            }
            var dxd = [Float](repeating: 0, count: n * nIn), dw = [Float](repeating: 0, count: nOut * nIn)
            try LinearLayer.backward(dy, x, n: n, nIn: nIn, nOut: nOut, w: w, accumulate: false, dw: &dw, db: nil, dx: &dxd)
            for i in 0..<dx.count { XCTAssertEqual(dx[i], dxd[i], accuracy: 1e-4) }
            // dU = dW V M^T
            for a in 0..<nOut { for p in 0..<r { var s: Float = 0
                for b in 0..<nIn { for q in 0..<r { s += dw[a * nIn + b] * v[b * r + q] * m[p * r + q] } }
                XCTAssertEqual(du[a * r + p], s, accuracy: 1e-4) } }
        } } }
        for i in 0..<yd.count { XCTAssertEqual(yd[i], yl[i], accuracy: 1e-4) }
    }

    func testReLU() {
        let x: [Float] = [-1, 0, 2, .nan]
        var y = [Float](repeating: 0, count: 4), dx = y
        Activation.reluForward(x, 4, &y)
        XCTAssertEqual(Array(y[0..<3]), [0, 0, 2])
        XCTAssertTrue(y[3].isNaN)
        Activation.reluBackward([1, 1, 1, 1], y, 4, &dx)
        XCTAssertEqual(dx, [0, 0, 1, 0])
        // 16-lane bodies with tails
        for count in [16, 33, 100] {
            let x = random(count, seed: UInt64(count)), g = random(count, seed: 9)
            var y = [Float](repeating: 0, count: count), dx = y
            Activation.reluForward(x, count, &y)
            Activation.reluBackward(g, y, count, &dx)
            for i in 0..<count {
                XCTAssertEqual(y[i], max(x[i], 0))
                XCTAssertEqual(dx[i], x[i] > 0 ? g[i] : 0)
            }
        }
    }
}
