import XCTest
import CFNLEngine
@testable import FNLEngine

/// The conv part of the C ABI: statuses and messages for bad arguments, and a working call.
final class ConvExportsTests: XCTestCase {
    var err = [CChar](repeating: 0, count: 256)
    var message: String { String(cString: err) }

    func testPlanAndForward() {
        let geom: [Int64] = [1, 1, 4, 4, 1, 3, 3, 1, 1, 1, 1, 1, 1]
        var oh: Int64 = 0, ow: Int64 = 0, wf: Int64 = 0, wb: Int64 = 0
        XCTAssertEqual(fnl_conv2d_plan(geom, &oh, &ow, &wf, &wb, &err, err.count), FNL_OK)
        XCTAssertEqual(oh, 4); XCTAssertEqual(ow, 4); XCTAssertGreaterThan(wf, 0)
        let x = [Float](repeating: 1, count: 16), k = [Float](repeating: 1, count: 9)
        var y = [Float](repeating: 0, count: 16)
        XCTAssertEqual(fnl_conv2d_forward(geom, x, k, nil, &y, nil, 0, &err, err.count), FNL_OK)
        XCTAssertEqual(y[5], 9); XCTAssertEqual(y[0], 4)
        var chosen: Int32 = -1, rank: Int64 = 0, inter: Int64 = 0
        let ranks: [Int64] = [1]
        XCTAssertEqual(fnl_lowrank_conv2d_plan(geom, 0, ranks, FNL_LRCONV_AUTO, &chosen, &rank, nil, nil, nil, nil, &inter,
                                               &err, err.count), FNL_OK)
        XCTAssertEqual(rank, 1)
        XCTAssertTrue(chosen == FNL_LRCONV_FUSED || chosen == FNL_LRCONV_COMPOSE)
    }

    func testBadArguments() {
        XCTAssertEqual(fnl_conv2d_plan(nil, nil, nil, nil, nil, &err, err.count), FNL_EVALUE)
        XCTAssertEqual(message, "geom is a null pointer")
        let bad: [Int64] = [1, 1, 4, 4, 1, 3, 3, 0, 1, 1, 1, 1, 1]
        XCTAssertEqual(fnl_conv2d_plan(bad, nil, nil, nil, nil, &err, err.count), FNL_EVALUE)
        XCTAssertTrue(message.contains("the stride along the height must be in 1.."), message)
        let geom: [Int64] = [1, 1, 4, 4, 1, 3, 3, 1, 1, 1, 1, 1, 1]
        let ranks: [Int64] = [1]
        XCTAssertEqual(fnl_lowrank_conv2d_plan(geom, 0, ranks, 7, nil, nil, nil, nil, nil, nil, nil, &err, err.count), FNL_EVALUE)
        XCTAssertTrue(message.contains("path must be 0 (auto), 1 (fused), 2 (compose) or 3 (fused, matrix products)"), message)
        XCTAssertEqual(fnl_lowrank_conv2d_plan(geom, -1, ranks, 0, nil, nil, nil, nil, nil, nil, nil, &err, err.count), FNL_EVALUE)
        var x = [Float](repeating: 1, count: 16)
        x[2] = .nan
        let k = [Float](repeating: 1, count: 9)
        var y = [Float](repeating: 0, count: 16)
        XCTAssertEqual(fnl_conv2d_forward(geom, x, k, nil, &y, nil, 0, &err, err.count), FNL_EVALUE)
        XCTAssertTrue(message.contains("x contains NaN or inf"), message)
        x[2] = 1
        XCTAssertEqual(fnl_conv2d_forward(geom, x, nil, nil, &y, nil, 0, &err, err.count), FNL_EVALUE)
        XCTAssertEqual(message, "K is a null pointer")
        var ws = [Float](repeating: 0, count: 4)
        XCTAssertEqual(fnl_conv2d_forward(geom, x, k, nil, &y, &ws, 4, &err, err.count), FNL_EVALUE)
        XCTAssertTrue(message.contains("the workspace holds 4 floats"), message)
    }
}
