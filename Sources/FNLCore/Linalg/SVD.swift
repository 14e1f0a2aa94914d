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

    /// The leading `r` singular triplets only (1 <= r <= min(m, n)), through LAPACK's sgesvdx
    /// (bidiagonalization, then bisection and inverse iteration on the Golub-Kahan tridiagonal
    /// matrix for the r largest values, then back-transformation of r vectors): for r well
    /// below min(m, n) this skips most of the vector work of sgesdd. `a` (m*n) is destroyed;
    /// `s` (min(m, n) floats, workspace beyond the first r) receives the values in descending
    /// order, `p` (m*r) the left and `qt` (r*n) the right vectors, row-major.
    public static func leading(_ a: UnsafeMutablePointer<Float>, _ m: Int, _ n: Int, _ r: Int,
                               s: UnsafeMutablePointer<Float>,
                               p: UnsafeMutablePointer<Float>, qt: UnsafeMutablePointer<Float>) throws {
        let k = min(m, n)
        try require(r >= 1 && r <= k, "rank must be in 1..\(k), got \(r)")
        try withScratch(12 * k, "the sgesvdx integer workspace") { w in
            let iwork = UnsafeMutableRawPointer(w).bindMemory(to: Int32.self, capacity: 12 * k)
            var found: Int32 = 0
            // Column-major A^T (n x m) = U_a S VT_a: U_a (n x r, ld n) read row-major is Q^T (r x n),
            // VT_a (r x m, ld r) read row-major is P (m x r).
            let v = CChar(UInt8(ascii: "V"))
            let info = LAPACKE_sgesvdx(LAPACK_COL_MAJOR, v, v, CChar(UInt8(ascii: "I")),
                                       Int32(n), Int32(m), a, Int32(n), 0, 0, 1, Int32(r), &found,
                                       s, qt, Int32(n), p, Int32(r), iwork)
            try check(info, "sgesvdx")
            if found != Int32(r) { throw FNLError.numerical("LAPACK sgesvdx found \(found) of \(r) singular values") }
        }
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
