import XCTest
import CFNLEngine

/// The C ABI contract through the header's declarations: statuses, messages and bad arguments.
final class ABITests: XCTestCase {
    var err = [CChar](repeating: 0, count: 512)

    /// Runs `call(err, cap)`, returns (status, message).
    func call(_ body: (UnsafeMutablePointer<CChar>, Int) -> Int32) -> (Int32, String) {
        err = [CChar](repeating: 0, count: 512)
        let status = err.withUnsafeMutableBufferPointer { body($0.baseAddress!, 512) }
        return (status, String(cString: err))
    }

    func expect(_ status: Int32, _ fragment: String, file: StaticString = #filePath, line: UInt = #line,
                _ body: (UnsafeMutablePointer<CChar>, Int) -> Int32) {
        let (s, msg) = call(body)
        XCTAssertEqual(s, status, "status for \"\(msg)\"", file: file, line: line)
        if fragment.isEmpty {
            XCTAssertEqual(msg, "", "a successful call writes no message", file: file, line: line)
        } else {
            XCTAssertTrue(msg.contains(fragment), "\"\(msg)\" lacks \"\(fragment)\"", file: file, line: line)
        }
    }

    let u: [Float] = [1, 2, 3, 4, 5, 6]      // 3 x 2
    let v: [Float] = [1, 0, 0, 1]            // 2 x 2

    func testVersionAndStatusCodes() {
        XCTAssertEqual(fnl_abi_version(), FNL_ABI_VERSION)
        XCTAssertEqual(FNL_OK, 0)
        XCTAssertEqual(FNL_EVALUE, 1)
        XCTAssertEqual(FNL_ENOMEM, 2)
        XCTAssertEqual(FNL_ENUMERIC, 3)
    }

    func testThreads() {
        let before = fnl_get_num_threads()
        XCTAssertGreaterThanOrEqual(before, 1)
        expect(FNL_EVALUE, "n must be in 1..1024, got 0") { fnl_set_num_threads(0, $0, $1) }
        expect(FNL_EVALUE, "got 1025") { fnl_set_num_threads(1025, $0, $1) }
        expect(FNL_EVALUE, "n must be in") { fnl_set_num_threads(Int64.min, $0, $1) }
        XCTAssertEqual(fnl_get_num_threads(), before)
        expect(FNL_OK, "") { fnl_set_num_threads(1, $0, $1) }
        XCTAssertEqual(fnl_get_num_threads(), 1)
        _ = fnl_set_num_threads(before, nil, 0)
    }

    func testBlasInfo() {
        var config = [CChar](repeating: 0, count: 256), core = [CChar](repeating: 0, count: 64)
        XCTAssertEqual(fnl_blas_info(&config, 256, &core, 64), FNL_OK)
        XCTAssertTrue(String(cString: config).contains("OpenBLAS"))
        XCTAssertFalse(String(cString: core).isEmpty)
        XCTAssertEqual(fnl_blas_info(nil, 0, nil, 0), FNL_OK)
    }

    func testErrorBufferTruncation() {
        var small = [CChar](repeating: 0x7F, count: 12)
        let s = fnl_set_num_threads(0, &small, 8)
        XCTAssertEqual(s, FNL_EVALUE)
        XCTAssertEqual(String(cString: small), "n must ")     // cap - 1 bytes
        XCTAssertEqual(small[7], 0)
        XCTAssertEqual(Array(small[8...]), [0x7F, 0x7F, 0x7F, 0x7F])  // nothing written beyond cap
        var one = [CChar](repeating: 0x7F, count: 2)
        XCTAssertEqual(fnl_set_num_threads(0, &one, 1), FNL_EVALUE)
        XCTAssertEqual(one, [0, 0x7F])
        XCTAssertEqual(fnl_set_num_threads(0, nil, 100), FNL_EVALUE)   // no buffer: status only
        var zero: [CChar] = [0x7F]
        XCTAssertEqual(fnl_set_num_threads(0, &zero, 0), FNL_EVALUE)
        XCTAssertEqual(zero, [0x7F])
    }

    func testComposeSucceedsAndChecksArguments() {
        var ranks: [Int64] = [2]
        var w = [Float](repeating: 0, count: 6)
        expect(FNL_OK, "") { e, c in fnl_compose(1, 3, 2, 0, &ranks, u, v, nil, &w, e, c) }
        XCTAssertEqual(w, [1, 2, 3, 4, 5, 6])
        expect(FNL_EVALUE, "U is a null pointer") { e, c in fnl_compose(1, 3, 2, 0, &ranks, nil, v, nil, &w, e, c) }
        expect(FNL_EVALUE, "V is a null pointer") { e, c in fnl_compose(1, 3, 2, 0, &ranks, u, nil, nil, &w, e, c) }
        expect(FNL_EVALUE, "W is a null pointer") { e, c in fnl_compose(1, 3, 2, 0, &ranks, u, v, nil, nil, e, c) }
        expect(FNL_EVALUE, "ranks is a null pointer") { e, c in fnl_compose(1, 3, 2, 0, nil, u, v, nil, &w, e, c) }
        expect(FNL_EVALUE, "m must be >= 0, got -3") { e, c in fnl_compose(1, -3, 2, 0, &ranks, u, v, nil, &w, e, c) }
        expect(FNL_EVALUE, "batch must be >= 0") { e, c in fnl_compose(-1, 3, 2, 0, &ranks, u, v, nil, &w, e, c) }
        expect(FNL_EVALUE, "batch must be >= 1") { e, c in fnl_compose(0, 3, 2, 0, &ranks, u, v, nil, &w, e, c) }
        expect(FNL_EVALUE, "depth must be >= 0") { e, c in fnl_compose(1, 3, 2, -1, &ranks, u, v, nil, &w, e, c) }
        expect(FNL_EVALUE, "depth must be in 0..64") { e, c in fnl_compose(1, 3, 2, 65, &ranks, u, v, nil, &w, e, c) }
        expect(FNL_EVALUE, "middle is a null pointer") { e, c in fnl_compose(1, 3, 2, 1, [2, 2], u, v, nil, &w, e, c) }
        // Absurd sizes are rejected from the sizes alone, before any memory is read.
        expect(FNL_EVALUE, "exceeds the BLAS limit") { e, c in fnl_compose(1, 1 << 40, 2, 0, &ranks, u, v, nil, &w, e, c) }
        expect(FNL_EVALUE, "the composed W") { e, c in fnl_compose(1, 1 << 20, 1 << 20, 0, [1], u, v, nil, &w, e, c) }
        expect(FNL_EVALUE, "absurd size") { e, c in fnl_compose(Int64.max, 3, 2, 0, &ranks, u, v, nil, &w, e, c) }
        expect(FNL_EVALUE, "rank r_0 must be >= 1") { e, c in fnl_compose(1, 3, 2, 0, [-5], u, v, nil, &w, e, c) }
        var bad = u
        bad[3] = .nan
        expect(FNL_EVALUE, "U contains NaN or inf (first at flat index 3") { e, c in
            fnl_compose(1, 3, 2, 0, &ranks, bad, v, nil, &w, e, c)
        }
    }

    func testMiddleChain() {
        let m1: [Float] = [2, 0, 0, 2]
        var w = [Float](repeating: 0, count: 6)
        let status: Int32 = m1.withUnsafeBufferPointer { mp in
            var mids: [UnsafePointer<Float>?] = [mp.baseAddress]
            return fnl_compose(1, 3, 2, 1, [2, 2], u, v, &mids, &w, &err, 512)
        }
        XCTAssertEqual(status, FNL_OK)
        XCTAssertEqual(w, [2, 4, 6, 8, 10, 12])
        var nullMids: [UnsafePointer<Float>?] = [nil]
        expect(FNL_EVALUE, "middle[0] is a null pointer") { e, c in fnl_compose(1, 3, 2, 1, [2, 2], u, v, &nullMids, &w, e, c) }
    }

    func testFrobeniusFunctions() {
        var ranks: [Int64] = [2]
        var out = [Double](repeating: 0, count: 1)
        expect(FNL_OK, "") { e, c in fnl_frobenius_sq_norms(1, 3, 2, 0, &ranks, u, v, nil, &out, e, c) }
        XCTAssertEqual(out[0], 91, accuracy: 1e-9)
        expect(FNL_OK, "") { e, c in fnl_frobenius_penalty(1, 3, 2, 0, &ranks, u, v, nil, 0.5, &out, e, c) }
        XCTAssertEqual(out[0], 22.75, accuracy: 1e-9)
        expect(FNL_EVALUE, "lam must be a finite number >= 0") { e, c in
            fnl_frobenius_penalty(1, 3, 2, 0, &ranks, u, v, nil, -1, &out, e, c)
        }
        expect(FNL_EVALUE, "lam must be a finite number >= 0, got nan") { e, c in
            fnl_frobenius_penalty(1, 3, 2, 0, &ranks, u, v, nil, .nan, &out, e, c)
        }
        expect(FNL_EVALUE, "penalty is a null pointer") { e, c in fnl_frobenius_penalty(1, 3, 2, 0, &ranks, u, v, nil, 1, nil, e, c) }
        expect(FNL_EVALUE, "squared_norms is a null pointer") { e, c in fnl_frobenius_sq_norms(1, 3, 2, 0, &ranks, u, v, nil, nil, e, c) }
        var du = [Float](repeating: 1, count: 6), dv = [Float](repeating: 1, count: 4)
        expect(FNL_OK, "") { e, c in fnl_frobenius_decay_grad(1, 3, 2, 0, &ranks, u, v, nil, 1, 0, &du, &dv, nil, e, c) }
        XCTAssertEqual(du, u)    // dU = lam U V^T V = U (V = I)
        expect(FNL_OK, "") { e, c in fnl_frobenius_decay_grad(1, 3, 2, 0, &ranks, u, v, nil, 1, 1, &du, &dv, nil, e, c) }
        XCTAssertEqual(du, u.map { 2 * $0 })
        expect(FNL_EVALUE, "dU is a null pointer") { e, c in fnl_frobenius_decay_grad(1, 3, 2, 0, &ranks, u, v, nil, 1, 0, nil, &dv, nil, e, c) }
        expect(FNL_EVALUE, "dmiddle is a null pointer") { e, c in
            fnl_frobenius_decay_grad(1, 3, 2, 1, [2, 2], u, v, [UnsafePointer(v)], 1, 0, &du, &dv, nil, e, c)
        }
        expect(FNL_EVALUE, "lam") { e, c in fnl_frobenius_decay_grad(1, 3, 2, 0, &ranks, u, v, nil, .infinity, 0, &du, &dv, nil, e, c) }
    }

    func testDiagnostics() {
        var ranks: [Int64] = [2]
        var out = [Double](repeating: 0, count: 1)
        expect(FNL_OK, "") { e, c in fnl_nuclear_norms(1, 2, 2, 0, &ranks, v, v, nil, &out, e, c) }
        XCTAssertEqual(out[0], 2, accuracy: 1e-6)
        expect(FNL_EVALUE, "nuclear is a null pointer") { e, c in fnl_nuclear_norms(1, 2, 2, 0, &ranks, v, v, nil, nil, e, c) }
        expect(FNL_OK, "") { e, c in fnl_factor_balance(1, 2, 2, 2, v, v, &out, e, c) }
        XCTAssertEqual(out[0], 0)
        expect(FNL_EVALUE, "balance is a null pointer") { e, c in fnl_factor_balance(1, 2, 2, 2, v, v, nil, e, c) }
        expect(FNL_EVALUE, "rank r_0 must be >= 1, got 0") { e, c in fnl_factor_balance(1, 2, 2, 0, v, v, &out, e, c) }
        expect(FNL_EVALUE, "m must be >= 0") { e, c in fnl_factor_balance(1, -2, 2, 2, v, v, &out, e, c) }
    }

    func testSpectralInit() {
        let w: [Float] = [3, 0, 0, 0, 2, 0]   // 2 x 3, singular values 3, 2
        var uu = [Float](repeating: 9, count: 6), vv = [Float](repeating: 9, count: 9), s = [Float](repeating: 9, count: 3)
        var total = 0.0, tail = 0.0
        expect(FNL_OK, "") { e, c in
            fnl_spectral_init(w, 2, 3, 1, FNL_SI_EXACT, 10, 2, 0, &uu, &vv, &s, &total, &tail, e, c)
        }
        XCTAssertEqual(total, 13, accuracy: 1e-6)
        XCTAssertEqual(tail, 4, accuracy: 1e-5)
        XCTAssertEqual(s[0], 3, accuracy: 1e-6)
        expect(FNL_OK, "") { e, c in
            fnl_spectral_init(w, 2, 3, 3, FNL_SI_EXACT, 10, 2, 0, &uu, &vv, &s, nil, nil, e, c)   // padding, no energies
        }
        XCTAssertEqual(uu[2], 0)
        expect(FNL_EVALUE, "method must be 0 (exact) or 1 (randomized), got 7") { e, c in
            fnl_spectral_init(w, 2, 3, 1, 7, 10, 2, 0, &uu, &vv, &s, nil, nil, e, c)
        }
        expect(FNL_EVALUE, "W is a null pointer") { e, c in fnl_spectral_init(nil, 2, 3, 1, 0, 10, 2, 0, &uu, &vv, &s, nil, nil, e, c) }
        expect(FNL_EVALUE, "U is a null pointer") { e, c in fnl_spectral_init(w, 2, 3, 1, 0, 10, 2, 0, nil, &vv, &s, nil, nil, e, c) }
        expect(FNL_EVALUE, "s is a null pointer") { e, c in fnl_spectral_init(w, 2, 3, 1, 0, 10, 2, 0, &uu, &vv, nil, nil, nil, e, c) }
        expect(FNL_EVALUE, "rank must be >= 1, got 0") { e, c in fnl_spectral_init(w, 2, 3, 0, 0, 10, 2, 0, &uu, &vv, &s, nil, nil, e, c) }
        expect(FNL_EVALUE, "rank must be >= 1") { e, c in fnl_spectral_init(w, 2, 3, -4, 0, 10, 2, 0, &uu, &vv, &s, nil, nil, e, c) }
        expect(FNL_EVALUE, "BLAS limit") { e, c in fnl_spectral_init(w, 2, 3, 1 << 40, 0, 10, 2, 0, &uu, &vv, &s, nil, nil, e, c) }
        expect(FNL_EVALUE, "m must be >= 0") { e, c in fnl_spectral_init(w, -2, 3, 1, 0, 10, 2, 0, &uu, &vv, &s, nil, nil, e, c) }
        expect(FNL_EVALUE, "BLAS limit") { e, c in fnl_spectral_init(w, 1 << 33, 3, 1, 0, 10, 2, 0, &uu, &vv, &s, nil, nil, e, c) }
        expect(FNL_EVALUE, "oversample must be in") { e, c in fnl_spectral_init(w, 2, 3, 1, 1, -1, 2, 0, &uu, &vv, &s, nil, nil, e, c) }
        expect(FNL_EVALUE, "power_iters must be in") { e, c in fnl_spectral_init(w, 2, 3, 1, 1, 1, Int64.max, 0, &uu, &vv, &s, nil, nil, e, c) }
        var nanW = w
        nanW[4] = .infinity
        expect(FNL_EVALUE, "W contains NaN or inf (first at flat index 4: inf)") { e, c in
            fnl_spectral_init(nanW, 2, 3, 1, 0, 10, 2, 0, &uu, &vv, &s, nil, nil, e, c)
        }
    }

    func testConvLayout() {
        let k: [Float] = Array(0..<12).map(Float.init)   // (2, 1, 3, 2)
        var w = [Float](repeating: 0, count: 12), back = [Float](repeating: 0, count: 12)
        expect(FNL_OK, "") { e, c in fnl_conv_to_matrix(k, 2, 1, 3, 2, &w, e, c) }
        expect(FNL_OK, "") { e, c in fnl_matrix_to_conv(w, 2, 1, 3, 2, &back, e, c) }
        XCTAssertEqual(back, k)
        expect(FNL_EVALUE, "K is a null pointer") { e, c in fnl_conv_to_matrix(nil, 2, 1, 3, 2, &w, e, c) }
        expect(FNL_EVALUE, "W is a null pointer") { e, c in fnl_conv_to_matrix(k, 2, 1, 3, 2, nil, e, c) }
        expect(FNL_EVALUE, "c_out must be >= 1, got 0") { e, c in fnl_conv_to_matrix(k, 0, 1, 3, 2, &w, e, c) }
        expect(FNL_EVALUE, "kh must be >= 1, got -3") { e, c in fnl_matrix_to_conv(w, 2, 1, -3, 2, &back, e, c) }
        expect(FNL_EVALUE, "absurd size") { e, c in fnl_conv_to_matrix(k, Int64.max, 2, 2, 2, &w, e, c) }
        var nanK = k
        nanK[7] = .nan
        expect(FNL_EVALUE, "K contains NaN or inf (first at flat index 7") { e, c in fnl_conv_to_matrix(nanK, 2, 1, 3, 2, &w, e, c) }
    }
}
