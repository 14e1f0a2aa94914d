/// Small SIMD reductions shared by the NN kernels (float32 data, float64 results).
enum Reduce {
    /// sum_i x[i] (SIMD float accumulators per block of 4096, blocks summed in float64).
    static func sum(_ x: UnsafePointer<Float>, _ count: Int) -> Double {
        var total = 0.0
        var start = 0
        while start < count {
            let end = min(count, start + 4096)
            var acc = SIMD16<Float>(repeating: 0)
            var i = start
            while i + 16 <= end {
                acc += UnsafeRawPointer(x + i).loadUnaligned(as: SIMD16<Float>.self)
                i += 16
            }
            var s = Double(acc.sum())
            while i < end { s += Double(x[i]); i += 1 }
            total += s
            start = end
        }
        return total
    }

    /// sum_i (x[i] - c)^2.
    static func centeredSquares(_ x: UnsafePointer<Float>, _ count: Int, _ c: Float) -> Double {
        var total = 0.0
        var start = 0
        let cv = SIMD16<Float>(repeating: c)
        while start < count {
            let end = min(count, start + 4096)
            var acc = SIMD16<Float>(repeating: 0)
            var i = start
            while i + 16 <= end {
                let d = UnsafeRawPointer(x + i).loadUnaligned(as: SIMD16<Float>.self) - cv
                acc += d * d
                i += 16
            }
            var s = Double(acc.sum())
            while i < end { let d = Double(x[i] - c); s += d * d; i += 1 }
            total += s
            start = end
        }
        return total
    }

    /// (sum_i a[i], sum_i a[i] * (b[i] - c)).
    static func sumAndCenteredDot(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ count: Int,
                                  _ c: Float) -> (Double, Double) {
        var s0 = 0.0, s1 = 0.0
        var start = 0
        let cv = SIMD16<Float>(repeating: c)
        while start < count {
            let end = min(count, start + 4096)
            var acc0 = SIMD16<Float>(repeating: 0), acc1 = SIMD16<Float>(repeating: 0)
            var i = start
            while i + 16 <= end {
                let va = UnsafeRawPointer(a + i).loadUnaligned(as: SIMD16<Float>.self)
                let vb = UnsafeRawPointer(b + i).loadUnaligned(as: SIMD16<Float>.self) - cv
                acc0 += va
                acc1 += va * vb
                i += 16
            }
            var t0 = Double(acc0.sum()), t1 = Double(acc1.sum())
            while i < end { t0 += Double(a[i]); t1 += Double(a[i]) * Double(b[i] - c); i += 1 }
            s0 += t0
            s1 += t1
            start = end
        }
        return (s0, s1)
    }

    /// (sum_i g[i], sum_i g[i] * (b[i] - c)) with g[i] = a[i] where mask[i] > 0, else 0.
    static func maskedSumAndCenteredDot(_ a: UnsafePointer<Float>, _ mask: UnsafePointer<Float>,
                                        _ b: UnsafePointer<Float>, _ count: Int, _ c: Float) -> (Double, Double) {
        var s0 = 0.0, s1 = 0.0
        var start = 0
        let cv = SIMD16<Float>(repeating: c), zero = SIMD16<Float>(repeating: 0)
        while start < count {
            let end = min(count, start + 4096)
            var acc0 = SIMD16<Float>(repeating: 0), acc1 = SIMD16<Float>(repeating: 0)
            var i = start
            while i + 16 <= end {
                let va = zero.replacing(with: NNLanes.load(a + i), where: NNLanes.load(mask + i) .> 0)
                let vb = NNLanes.load(b + i) - cv
                acc0 += va
                acc1 += va * vb
                i += 16
            }
            var t0 = Double(acc0.sum()), t1 = Double(acc1.sum())
            while i < end {
                if mask[i] > 0 { t0 += Double(a[i]); t1 += Double(a[i]) * Double(b[i] - c) }
                i += 1
            }
            s0 += t0
            s1 += t1
            start = end
        }
        return (s0, s1)
    }
}
