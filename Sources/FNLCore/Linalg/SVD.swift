import CBLAS

/// Thin singular value decomposition of row-major matrices through LAPACK's sgesdd.
///
/// A row-major m x n matrix is the column-major n x m matrix A^T, so LAPACK is called on the
/// transposed problem A^T = U_a S VT_a: then A = VT_a^T S U_a^T, and the buffers LAPACK writes
/// are, read row-major, exactly P (m x k, left vectors) and Q^T (k x n, right vectors),
/// k = min(m, n). No transposition copies are made (LAPACKE's row-major path would make them).
public enum SVD {
    /// Computes A = P diag(s) Q^T. `a` (m*n) is destroyed. `s` receives k values in
    /// descending order; `p` (m*k) and `qt` (k*n) the vectors, or pass nil for both to get
    /// the values only.
    public static func thin(_ a: UnsafeMutablePointer<Float>, _ m: Int, _ n: Int,
                            s: UnsafeMutablePointer<Float>,
                            p: UnsafeMutablePointer<Float>?, qt: UnsafeMutablePointer<Float>?) throws {
        let k = min(m, n)
        let wantVectors = p != nil && qt != nil
        var dummy: Float = 0
        let info: Int32 = withUnsafeMutablePointer(to: &dummy) { d in
            LAPACKE_sgesdd(LAPACK_COL_MAJOR, wantVectors ? CChar(UInt8(ascii: "S")) : CChar(UInt8(ascii: "N")),
                           Int32(n), Int32(m), a, Int32(n), s,
                           qt ?? d, Int32(wantVectors ? n : 1),
                           p ?? d, Int32(wantVectors ? k : 1))
        }
        try check(info, "sgesdd")
    }

    /// Maps a LAPACKE status to an error: memory failures and non-convergence.
    static func check(_ info: Int32, _ routine: String) throws {
        if info == 0 { return }
        if info == LAPACK_WORK_MEMORY_ERROR || info == LAPACK_TRANSPOSE_MEMORY_ERROR {
            throw FNLError.outOfMemory("LAPACK \(routine) could not allocate its workspace")
        }
        if info > 0 { throw FNLError.numerical("LAPACK \(routine) did not converge (info=\(info))") }
        throw FNLError.numerical("LAPACK \(routine) rejected argument \(-info) (engine bug)")
    }
}

/// Orthogonal-triangular factorizations of row-major tall matrices, through the LQ
/// factorization of the column-major transpose (again no copies).
public enum QR {
    /// Overwrites the row-major m x l matrix `y` (m >= l) with an orthonormal basis Q of its
    /// column space (Y = Q R, Q^T Q = I).
    public static func orthonormalize(_ y: UnsafeMutablePointer<Float>, _ m: Int, _ l: Int) throws {
        try withScratch(l, "QR reflectors") { tau in
            // Column-major view: Y^T is l x m, lda = l. Y^T = L Q_lq, and Q_lq read row-major is Q.
            try SVD.check(LAPACKE_sgelqf(LAPACK_COL_MAJOR, Int32(l), Int32(m), y, Int32(l), tau), "sgelqf")
            try SVD.check(LAPACKE_sorglq(LAPACK_COL_MAJOR, Int32(l), Int32(m), Int32(l), y, Int32(l), tau), "sorglq")
        }
    }

    /// The triangular factor R (k x l, k = min(m, l), upper trapezoidal) of a row-major m x l
    /// matrix `y` = Q R; `y` is destroyed.
    public static func rFactor(_ y: UnsafeMutablePointer<Float>, _ m: Int, _ l: Int,
                               _ r: UnsafeMutablePointer<Float>) throws {
        let k = min(m, l)
        try withScratch(k, "QR reflectors") { tau in
            try SVD.check(LAPACKE_sgelqf(LAPACK_COL_MAJOR, Int32(l), Int32(m), y, Int32(l), tau), "sgelqf")
        }
        // L (l x k, column-major, lda = l) is R^T; read row-major, row i of the buffer is row i of R.
        for i in 0..<k {
            for j in 0..<l { r[i * l + j] = j >= i ? y[i * l + j] : 0 }
        }
    }
}
