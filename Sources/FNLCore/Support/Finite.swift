/// Finiteness checks on inputs: NaN or infinity in an argument is reported as
/// `.invalid` naming the argument and the first offending flat index, never computed with.
public enum Finite {
    /// Index of the first non-finite value in `x[0..<count]`, or nil.
    public static func firstNonFinite(_ x: UnsafePointer<Float>, _ count: Int) -> Int? {
        // Fast path: a SIMD reduction that is NaN/inf-poisoned by x * 0.
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
        if acc.sum() + tail == 0 { return nil }
        for j in 0..<count where !x[j].isFinite { return j }
        return nil
    }

    /// Throws `.invalid` when `x` holds NaN or infinity.
    public static func check(_ x: UnsafePointer<Float>, _ count: Int, _ name: String) throws {
        if let j = firstNonFinite(x, count) {
            throw FNLError.invalid("\(name) contains NaN or inf (first at flat index \(j): \(x[j]))")
        }
    }
}
