/// Elementwise activations over flat float32 arrays, in parallel blocks, 16 lanes at a time.
public enum Activation {
    static let block = 1 << 15

    /// y = max(x, 0) (NaN propagates).
    public static func reluForward(_ x: UnsafePointer<Float>, _ count: Int, _ y: UnsafeMutablePointer<Float>) {
        let chunks = (count + block - 1) / block
        Threads.parallelFor(chunks, work: count, minimumWork: 1 << 18) { c in
            let lo = c * block, hi = min(count, lo + block)
            NNLanes.relu(x + lo, y + lo, hi - lo)
        }
    }

    /// dx = dy where y > 0, else 0 (y is the forward output).
    public static func reluBackward(_ dy: UnsafePointer<Float>, _ y: UnsafePointer<Float>, _ count: Int,
                                    _ dx: UnsafeMutablePointer<Float>) {
        let chunks = (count + block - 1) / block
        Threads.parallelFor(chunks, work: count, minimumWork: 1 << 18) { c in
            let lo = c * block, hi = min(count, lo + block)
            NNLanes.mask(dy + lo, y + lo, dx + lo, hi - lo)
        }
    }
}

/// Branch-free 16-lane loops shared by the NN kernels (the scalar ternary loops they replace
/// do not vectorize).
enum NNLanes {
    typealias V = SIMD16<Float>

    @inline(__always) static func load(_ p: UnsafePointer<Float>) -> V {
        UnsafeRawPointer(p).loadUnaligned(as: V.self)
    }

    @inline(__always) static func store(_ v: V, _ p: UnsafeMutablePointer<Float>) {
        UnsafeMutableRawPointer(p).storeBytes(of: v, as: V.self)
    }

    /// max(v, 0) keeping NaN (a NaN lane compares false and stays).
    @inline(__always) static func relu(_ v: V) -> V {
        v.replacing(with: 0, where: v .<= 0)
    }

    @inline(__always) static func relu(_ v: Float) -> Float {
        v <= 0 ? 0 : v
    }

    /// y = max(x, 0), NaN propagating.
    static func relu(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, _ count: Int) {
        var i = 0
        while i + 16 <= count { store(relu(load(x + i)), y + i); i += 16 }
        while i < count { y[i] = relu(x[i]); i += 1 }
    }

    /// out = g where y > 0, else 0 (out may be g).
    static func mask(_ g: UnsafePointer<Float>, _ y: UnsafePointer<Float>, _ out: UnsafeMutablePointer<Float>,
                     _ count: Int) {
        let zero = V(repeating: 0)
        var i = 0
        while i + 16 <= count {
            store(zero.replacing(with: load(g + i), where: load(y + i) .> 0), out + i)
            i += 16
        }
        while i < count { out[i] = y[i] > 0 ? g[i] : 0; i += 1 }
    }
}
