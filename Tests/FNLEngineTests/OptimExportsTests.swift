import XCTest
import FNLEngine

/// The optimizer exports (fnl_optim.h): statuses and messages for bad raw arguments.
final class OptimExportsTests: XCTestCase {
    private func call(_ body: (UnsafeMutablePointer<CChar>, Int) -> Int32) -> (Int32, String) {
        var buf = [CChar](repeating: 0, count: 256)
        let status = buf.withUnsafeMutableBufferPointer { body($0.baseAddress!, $0.count) }
        return (status, String(cString: buf))
    }

    func testSGDStepUpdatesInPlace() {
        var w: [Float] = [1, 2, 3], g: [Float] = [0.5, 0.5, 0.5]
        var sizes: [Int64] = [3], decay: [Float] = [0]
        let (status, msg) = w.withUnsafeMutableBufferPointer { wp in
            g.withUnsafeBufferPointer { gp in
                var ps: [UnsafeMutablePointer<Float>?] = [wp.baseAddress]
                var gs: [UnsafePointer<Float>?] = [gp.baseAddress]
                return call { e, c in
                    fnl_sgd_step(1, &ps, &gs, nil, &sizes, &decay, 0, 0, nil, nil, nil, 0,
                                 0.1, 0, 0, 0, 0, 1, e, c)
                }
            }
        }
        XCTAssertEqual(status, 0, msg)
        XCTAssertEqual(w, [0.95, 1.95, 2.95])
    }

    func testNullPointersAndBadValuesReturnValueStatus() {
        var sizes: [Int64] = [3], decay: [Float] = [0]
        var (status, msg) = call { e, c in
            fnl_sgd_step(1, nil, nil, nil, &sizes, &decay, 0, 0, nil, nil, nil, 0, 0.1, 0, 0, 0, 0, 1, e, c)
        }
        XCTAssertEqual(status, 1)
        XCTAssertTrue(msg.contains("params"), msg)
        (status, msg) = call { e, c in
            fnl_sgd_step(-1, nil, nil, nil, nil, nil, 0, 0, nil, nil, nil, 0, 0.1, 0, 0, 0, 0, 1, e, c)
        }
        XCTAssertEqual(status, 1)
        XCTAssertTrue(msg.contains("count"), msg)
        (status, msg) = call { e, c in
            fnl_adamw_step(0, nil, nil, nil, nil, nil, nil, 0, 0, nil, nil, nil, 0, 0.1, 0.9, 0.999, 1e-8, 0, 1, e, c)
        }
        XCTAssertEqual(status, 1)
        XCTAssertTrue(msg.contains("step"), msg)
        (status, msg) = call { e, c in
            fnl_lamb_step(0, nil, nil, nil, nil, nil, nil, 1, 0, nil, nil, nil, 0, nil, 0, 0.1, 0.9, 0.999, 1e-8, 1, 1, nil, e, c)
        }
        XCTAssertEqual(status, 1)
        XCTAssertTrue(msg.contains("chains"), msg)
    }

    func testMalformedChainRecordIsRejected() {
        var w: [Float] = [1, 2, 3, 4], v: [Float] = [1, 2]
        var sizes: [Int64] = [4, 2]
        // U 2x2, V 2x1: the record claims r_0 = 2 for V, which does not match its size.
        var chains: [Int64] = [0, 1, 2, 2, 2, 0, 1]
        let (status, msg) = w.withUnsafeMutableBufferPointer { wp in
            v.withUnsafeMutableBufferPointer { vp in
                var ps: [UnsafeMutablePointer<Float>?] = [wp.baseAddress, vp.baseAddress]
                return call { e, c in fnl_norm_match(2, &ps, &sizes, 1, 7, &chains, nil, nil, e, c) }
            }
        }
        XCTAssertEqual(status, 1)
        XCTAssertTrue(msg.contains("V"), msg)
    }
}
