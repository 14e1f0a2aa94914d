/// Finiteness checks on inputs: NaN or infinity in an argument is reported as
/// `.invalid` naming the argument and the first offending flat index, never computed with.
public enum Finite {
    /// Index of the first non-finite value in `x[0..<count]`, or nil.
    public static func firstNonFinite(_ x: UnsafePointer<Float>, _ count: Int) -> Int? {
        if allFinite(x, count) { return nil }
        for j in 0..<count where !x[j].isFinite { return j }
        return nil
    }

    /// Arrays of at least this many floats are scanned by the engine's workers in parallel.
    static let parallelCount = 1 << 18

    /// Whether `x[0..<count]` holds only finite values: `poisonedSum` over contiguous parts, one
    /// per worker for large arrays (the scan is memory-bound; one core does not saturate it).
    static func allFinite(_ x: UnsafePointer<Float>, _ count: Int) -> Bool {
        let parts = count >= parallelCount ? min(Threads.count, count / (parallelCount / 4)) : 1
        if parts <= 1 { return poisonedSum(x, count) == 0 }
        return withUnsafeTemporaryAllocation(of: Float.self, capacity: parts) { sums in
            Threads.run(workers: parts) { w in
                let lo = count * w / parts, hi = count * (w + 1) / parts
                sums[w] = poisonedSum(x + lo, hi - lo)
            }
            return sums.allSatisfy { $0 == 0 }
        }
    }

    /// sum_i x[i] * 0 by SIMD lanes: 0 when every value is finite, NaN otherwise.
    static func poisonedSum(_ x: UnsafePointer<Float>, _ count: Int) -> Float {
        let lanes = 16
        var i = 0
        var acc = SIMD16<Float>(repeating: 0)
        while i + lanes <= count {
            let v = UnsafeRawPointer(x + i).loadUnaligned(as: SIMD16<Float>.self)
            acc += v * 0
            i += lanes
        }
        var tail: Float = 0
        while i < count { tail += x[i] * 0; i += 1 }
        return acc.sum() + tail
    }

    /// Checks the `inputs` (pointer, count, name) in order only when one of the `results` is not
    /// finite. For results that every input value reaches through sums of products (the kernel
    /// gradients of a convolution, which sum over every pixel), a NaN or infinity in an input
    /// makes them non-finite (NaN * 0 and inf * 0 are NaN; inf - inf is NaN), so large inputs
    /// are scanned only on that path. An input value that enters no result (one skipped by a
    /// stride) changes nothing and is not reported; finite inputs whose results overflowed are
    /// not an input error either and pass.
    public static func checkInputs(ifNotFinite results: [(UnsafePointer<Float>, Int)],
                                   _ inputs: [(UnsafePointer<Float>, Int, String)]) throws {
        if results.allSatisfy({ allFinite($0.0, $0.1) }) { return }
        for (x, count, name) in inputs { try check(x, count, name) }
    }

    /// Throws `.invalid` when `x` holds NaN or infinity.
    public static func check(_ x: UnsafePointer<Float>, _ count: Int, _ name: String) throws {
        if let j = firstNonFinite(x, count) {
            throw FNLError.invalid("\(name) contains NaN or inf (first at flat index \(j): \(x[j]))")
        }
    }
}
