/// One spatial axis of a 2-D convolution (cross-correlation, as in deep learning):
///
///     out[o] = sum_t k[t] * in[o * stride - padding + t * dilation],   t < kernel,
///
/// with zero padding: input indices outside 0..<size contribute nothing. The output extent is
///
///     output = (size + 2 padding - dilation (kernel - 1) - 1) / stride + 1     (floor).
public struct ConvAxis: Equatable, CustomStringConvertible {
    public let size: Int
    public let kernel: Int
    public let stride: Int
    public let padding: Int
    public let dilation: Int
    public let output: Int

    /// Largest accepted spatial size, kernel, stride, padding or dilation: every index
    /// computed from them fits in Int without overflow.
    public static let limit = Int(Int32.max)

    /// Validates the options of axis `name` ("height"/"width") and computes the output extent.
    public init(size: Int, kernel: Int, stride: Int, padding: Int, dilation: Int, name: String) throws {
        try require(size >= 1 && size <= Self.limit, "the input \(name) must be in 1..\(Self.limit), got \(size)")
        try require(kernel >= 1 && kernel <= Self.limit, "the kernel \(name) must be in 1..\(Self.limit), got \(kernel)")
        try require(stride >= 1 && stride <= Self.limit, "the stride along the \(name) must be in 1..\(Self.limit), got \(stride)")
        try require(padding >= 0 && padding <= Self.limit, "the padding along the \(name) must be in 0..\(Self.limit), got \(padding)")
        try require(dilation >= 1 && dilation <= Self.limit, "the dilation along the \(name) must be in 1..\(Self.limit), got \(dilation)")
        let span = dilation * (kernel - 1) + 1            // < 2^62: no overflow
        let padded = size + 2 * padding
        try require(span <= padded,
                    "the dilated kernel \(name) \(span) (kernel \(kernel), dilation \(dilation)) exceeds the padded input \(name) \(padded) (input \(size) + 2 x padding \(padding))")
        self.size = size; self.kernel = kernel; self.stride = stride
        self.padding = padding; self.dilation = dilation
        self.output = (padded - span) / stride + 1
    }

    private init(identity size: Int) {
        self.size = size; kernel = 1; stride = 1; padding = 0; dilation = 1; output = size
    }

    /// The trivial axis (kernel 1, stride 1, no padding): output index = input index.
    public static func identity(_ size: Int) -> ConvAxis { ConvAxis(identity: size) }

    public var isIdentity: Bool { kernel == 1 && stride == 1 && padding == 0 && output == size }

    /// Input index of output `o` and tap `t` is `o * stride + offset(t)`.
    @inline(__always) public func offset(_ tap: Int) -> Int { tap * dilation - padding }

    /// The outputs `o` whose input index `o * stride + offset(tap)` lies in 0..<size.
    @inline(__always) public func valid(_ tap: Int) -> Range<Int> {
        let off = offset(tap)
        let lo = off >= 0 ? 0 : (-off + stride - 1) / stride
        let last = size - 1 - off
        let hi = last < 0 ? 0 : min(output, last / stride + 1)
        return lo < hi ? lo..<hi : lo..<lo
    }

    public var description: String {
        "size \(size), kernel \(kernel), stride \(stride), padding \(padding), dilation \(dilation) -> \(output)"
    }
}

/// The shapes of a 2-D convolution over a batch in NCHW layout:
/// x (batch, cIn, height, width), kernel (cOut, cIn, kh, kw), y (batch, cOut, outH, outW),
/// with per-axis stride, zero padding and dilation; groups = 1.
public struct ConvGeometry: Equatable {
    public let batch: Int
    public let cIn: Int
    public let cOut: Int
    public let h: ConvAxis
    public let w: ConvAxis

    /// Number of Int64 entries of the ABI geometry array:
    /// {n, c_in, h, w, c_out, kh, kw, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w}.
    public static let abiCount = 13

    public init(batch: Int, cIn: Int, height: Int, width: Int, cOut: Int, kh: Int, kw: Int,
                stride: (Int, Int) = (1, 1), padding: (Int, Int) = (0, 0), dilation: (Int, Int) = (1, 1)) throws {
        try require(batch >= 1 && batch <= ConvAxis.limit, "the batch size must be in 1..\(ConvAxis.limit), got \(batch)")
        try require(cIn >= 1 && cIn <= ConvAxis.limit, "the input channels must be in 1..\(ConvAxis.limit), got \(cIn)")
        try require(cOut >= 1 && cOut <= ConvAxis.limit, "the output channels must be in 1..\(ConvAxis.limit), got \(cOut)")
        h = try ConvAxis(size: height, kernel: kh, stride: stride.0, padding: padding.0, dilation: dilation.0, name: "height")
        w = try ConvAxis(size: width, kernel: kw, stride: stride.1, padding: padding.1, dilation: dilation.1, name: "width")
        self.batch = batch; self.cIn = cIn; self.cOut = cOut
        _ = try Dimensions.product([batch, cIn, height, width], "the input x")
        _ = try Dimensions.product([batch, cOut, h.output, w.output], "the output y")
        _ = try Dimensions.product([cOut, cIn, kh, kw], "the kernel")
        // One image's plane is a block of columns of the lowered matrices (BLAS 32-bit sizes).
        _ = try Dimensions.blas(try Dimensions.product([height, width], "the input plane"), "the input plane (h*w)")
        _ = try Dimensions.blas(try Dimensions.product([h.output, w.output], "the output plane"),
                                "the output plane (out_h*out_w)")
        _ = try Dimensions.blas(try Dimensions.product([height, w.output], "the intermediate plane"),
                                "the intermediate plane (h*out_w)")
    }

    /// Reads the 13-entry ABI geometry array (see `abiCount`).
    public init(abi g: UnsafePointer<Int64>) throws {
        func v(_ i: Int) -> Int { Int(clamping: g[i]) }
        try self.init(batch: v(0), cIn: v(1), height: v(2), width: v(3), cOut: v(4), kh: v(5), kw: v(6),
                      stride: (v(7), v(8)), padding: (v(9), v(10)), dilation: (v(11), v(12)))
    }

    public var kh: Int { h.kernel }
    public var kw: Int { w.kernel }
    public var inPlane: Int { h.size * w.size }
    public var outPlane: Int { h.output * w.output }
    public var inputCount: Int { batch * cIn * inPlane }
    public var outputCount: Int { batch * cOut * outPlane }
    public var kernelCount: Int { cOut * cIn * kh * kw }

    /// Multiply-adds x 2 of the direct convolution (forward).
    public var denseFlops: Double {
        2 * Double(batch) * Double(outPlane) * Double(cOut) * Double(cIn) * Double(kh * kw)
    }
}
