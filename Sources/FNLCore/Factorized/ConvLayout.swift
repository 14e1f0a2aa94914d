/// The matrix layout of a convolution kernel used for factorization (Tai et al.):
/// a kernel K (c_out, c_in, kh, kw) is the (c_out*kh) x (c_in*kw) matrix W with
///
///     K[o, i, h, w] = W[o*kh + h, i*kw + w]
///
/// Rows are (output channel, kernel row) and columns (input channel, kernel column), so a
/// rank-r factorization W = U V^T is a 1 x kw conv (c_in -> r) followed by a kh x 1 conv
/// (r -> c_out). This is an axis permutation (c_out, kh, c_in, kw), not a bare reshape.
public enum ConvLayout {
    public struct Shape {
        public let cOut: Int, cIn: Int, kh: Int, kw: Int
        public init(cOut: Int, cIn: Int, kh: Int, kw: Int) throws {
            for (name, d) in [("c_out", cOut), ("c_in", cIn), ("kh", kh), ("kw", kw)] {
                try require(d >= 1, "\(name) must be >= 1, got \(d)")
            }
            _ = try Dimensions.product([cOut, cIn, kh, kw], "the kernel")
            self.cOut = cOut; self.cIn = cIn; self.kh = kh; self.kw = kw
        }
        public var rows: Int { cOut * kh }
        public var cols: Int { cIn * kw }
    }

    /// K (c_out, c_in, kh, kw) -> W ((c_out*kh) x (c_in*kw)).
    public static func toMatrix(_ k: UnsafePointer<Float>, _ s: Shape, _ w: UnsafeMutablePointer<Float>) {
        permute(s, from: k, to: w, kernelToMatrix: true)
    }

    /// W ((c_out*kh) x (c_in*kw)) -> K (c_out, c_in, kh, kw).
    public static func toKernel(_ w: UnsafePointer<Float>, _ s: Shape, _ k: UnsafeMutablePointer<Float>) {
        permute(s, from: w, to: k, kernelToMatrix: false)
    }

    /// One loop nest serves both directions: kernel index (o, i, h, x) <-> matrix index.
    static func permute(_ s: Shape, from src: UnsafePointer<Float>, to dst: UnsafeMutablePointer<Float>,
                        kernelToMatrix: Bool) {
        for o in 0..<s.cOut {
            for i in 0..<s.cIn {
                for h in 0..<s.kh {
                    let kBase = ((o * s.cIn + i) * s.kh + h) * s.kw
                    let wBase = (o * s.kh + h) * s.cols + i * s.kw
                    if kernelToMatrix {
                        (dst + wBase).update(from: src + kBase, count: s.kw)
                    } else {
                        (dst + kBase).update(from: src + wBase, count: s.kw)
                    }
                }
            }
        }
    }
}
