/// Elementwise activations over flat float32 arrays, in parallel blocks.
public enum Activation {
    static let block = 1 << 15

    /// y = max(x, 0) (NaN propagates).
    public static func reluForward(_ x: UnsafePointer<Float>, _ count: Int, _ y: UnsafeMutablePointer<Float>) {
        let chunks = (count + block - 1) / block
        Threads.parallelFor(chunks, work: count, minimumWork: 1 << 18) { c in
            let lo = c * block, hi = min(count, lo + block)
            for i in lo..<hi { let v = x[i]; y[i] = v > 0 ? v : (v.isNaN ? v : 0) }
        }
    }

    /// dx = dy where y > 0, else 0 (y is the forward output).
    public static func reluBackward(_ dy: UnsafePointer<Float>, _ y: UnsafePointer<Float>, _ count: Int,
                                    _ dx: UnsafeMutablePointer<Float>) {
        let chunks = (count + block - 1) / block
        Threads.parallelFor(chunks, work: count, minimumWork: 1 << 18) { c in
            let lo = c * block, hi = min(count, lo + block)
            for i in lo..<hi { dx[i] = y[i] > 0 ? dy[i] : 0 }
        }
    }
}
