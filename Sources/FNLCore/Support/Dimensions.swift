/// Size arithmetic that cannot trap: every product is checked for overflow, and every
/// dimension handed to OpenBLAS/LAPACK (32-bit integers) is checked to fit.
public enum Dimensions {
    /// The product of `dims`, or `.invalid` naming `what` when it overflows Int.
    public static func product(_ dims: [Int], _ what: String) throws -> Int {
        var p = 1
        for d in dims {
            try require(d >= 0, "\(what) has a negative dimension \(d)")
            let (r, o) = p.multipliedReportingOverflow(by: d)
            if o { throw FNLError.invalid("\(what) has absurd size \(dims) (element count overflows)") }
            p = r
        }
        return p
    }

    /// The product a * b * c without allocating (the common case of `product`, which it calls
    /// for the message when a dimension is negative or the product overflows).
    @inline(__always)
    public static func product(_ a: Int, _ b: Int, _ c: Int, _ what: String) throws -> Int {
        let (ab, o1) = a.multipliedReportingOverflow(by: b)
        let (abc, o2) = ab.multipliedReportingOverflow(by: c)
        if a < 0 || b < 0 || c < 0 || o1 || o2 { return try product([a, b, c], what) }
        return abc
    }

    /// `x` as an Int32 for BLAS/LAPACK, or `.invalid` when it does not fit.
    public static func blas(_ x: Int, _ what: String) throws -> Int32 {
        guard x >= 0, x <= Int(Int32.max) else {
            throw FNLError.invalid("\(what)=\(x) exceeds the BLAS limit of \(Int32.max)")
        }
        return Int32(x)
    }

    /// Checks that a matrix of `rows` x `cols` has an element count BLAS can address.
    /// (The messages are built only on failure: this runs on every call, however small.)
    public static func checkMatrix(_ rows: Int, _ cols: Int, _ what: String) throws {
        try require(rows >= 1 && cols >= 1, "\(what) must be non-empty, got shape (\(rows), \(cols))")
        let limit = Int(Int32.max)
        if rows > limit { _ = try blas(rows, "\(what) rows") }
        if cols > limit { _ = try blas(cols, "\(what) columns") }
        let (n, overflow) = rows.multipliedReportingOverflow(by: cols)
        if overflow { _ = try product([rows, cols], what) }
        if n > limit { _ = try blas(n, "\(what) element count") }
    }
}
