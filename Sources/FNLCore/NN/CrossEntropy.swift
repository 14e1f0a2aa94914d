#if canImport(Glibc)
import Glibc
#endif

/// Softmax cross-entropy with label smoothing over logits z (N x K), labels y_i in 0..K-1,
/// smoothing eps in [0, 1]: the target distribution is q = (1 - eps) onehot(y_i) + eps / K and
///
///     loss = (1/N) sum_i [ logsumexp(z_i) - sum_k q_ik z_ik ]
///     dL/dz_ik = (softmax(z_i)_k - q_ik) / N
///
/// computed with the row maximum subtracted; the loss is accumulated in float64.
public enum CrossEntropy {
    public static func forwardBackward(_ logits: UnsafePointer<Float>, _ labels: UnsafePointer<Int64>,
                                       n: Int, k: Int, smoothing: Float,
                                       dlogits: UnsafeMutablePointer<Float>?) throws -> Double {
        try require(n >= 1 && k >= 1, "logits must be non-empty (N, K), got (\(n), \(k))")
        try require(smoothing.isFinite && smoothing >= 0 && smoothing <= 1, "label_smoothing must be in [0, 1], got \(smoothing)")
        let total = try Dimensions.product([n, k], "logits")
        try Finite.check(logits, total, "logits")
        for i in 0..<n {
            try require(labels[i] >= 0 && labels[i] < Int64(k),
                        "labels must be in 0..\(k - 1), got \(labels[i]) at index \(i)")
        }
        let off = Double(smoothing) / Double(k), on = 1 - Double(smoothing) + off
        var losses = [Double](repeating: 0, count: n)
        losses.withUnsafeMutableBufferPointer { lp in
            Threads.parallelFor(n, work: 8 * total) { i in
                let z = logits + i * k
                var mx = z[0]
                for j in 1..<k { mx = max(mx, z[j]) }
                var se = 0.0, sz = 0.0
                for j in 0..<k {
                    se += exp(Double(z[j] - mx))
                    sz += Double(z[j] - mx)
                }
                let lse = log(se)
                let label = Int(labels[i])
                // sum_k q_k (z_k - mx) = off * sum_k (z_k - mx) + (on - off) (z_y - mx)
                lp[i] = lse - (off * sz + (on - off) * Double(z[label] - mx))
                if let dlogits {
                    let g = dlogits + i * k
                    let invN = 1.0 / Double(n)
                    for j in 0..<k {
                        let p = exp(Double(z[j] - mx) - lse)
                        g[j] = Float((p - (j == label ? on : off)) * invN)
                    }
                }
            }
        }
        return losses.reduce(0, +) / Double(n)
    }
}
