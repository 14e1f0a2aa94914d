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

    /// `x` as an Int32 for BLAS/LAPACK, or `.invalid` when it does not fit.
    public static func blas(_ x: Int, _ what: String) throws -> Int32 {
        guard x >= 0, x <= Int(Int32.max) else {
            throw FNLError.invalid("\(what)=\(x) exceeds the BLAS limit of \(Int32.max)")
        }
        return Int32(x)
    }

    /// Checks that a matrix of `rows` x `cols` has an element count BLAS can address.
    public static func checkMatrix(_ rows: Int, _ cols: Int, _ what: String) throws {
        try require(rows >= 1 && cols >= 1, "\(what) must be non-empty, got shape (\(rows), \(cols))")
        _ = try blas(rows, "\(what) rows")
        _ = try blas(cols, "\(what) columns")
        let n = try product([rows, cols], what)
        _ = try blas(n, "\(what) element count")
    }
}
