/// One-dimensional convolution along one axis of planes (rows x cols, row-major), stride 1,
/// dilation 1, zero padding `padding` on that axis, kernel length `kernel`:
///
///     out[o, i] = bias[o] + sum_{c, t} weight[o, c, t] * in[c, i + (t - padding) * step]
///
/// step = one row (.height) or one column within the same row (.width); `in` is zero outside
/// the plane (height: rows outside 0..<rows; width: columns outside 0..<cols). These are the
/// two stages of the low-rank convolution (a 1 x kw conv, then a kh x 1 conv).
///
/// The weight gradient of one image is
///
///     dW[o, c, t] = sum_i gradOutput[o, i] * in[c, i + (t - padding) * step],
///
/// and the input gradient is the same convolution run backwards: `forward` with
/// weight'[c, o, t] = weight[o, c, k-1-t] (packed through negative strides) and padding
/// k-1-padding, on an `AxisConv` over the output plane.
///
/// How it runs (direct convolution, register-blocked, one core):
/// - Both axes are seen as *lines* of outputs: a height conv is one line of outRows*cols
///   outputs with taps `cols` apart; a width conv is outRows lines of outCols outputs with taps
///   1 apart. Each call copies the input into a zero-padded buffer (scratch) where line r's
///   output s reads tap t at `r * linePitch + s + t * tapStep`: every tap of a vector of 8
///   outputs is then one unaligned load at a fixed offset, with no bounds tests.
/// - `forward` computes J = 4 or 6 output channels x 2 vectors of 8 outputs per step (8 or 12
///   SIMD8 accumulators, FMA), with the weights packed per block as [Cin][tap][J] and read one
///   broadcast each. The last vector of a line whose length is not a multiple of 8 overlaps
///   the one before (it recomputes a few outputs, which is harmless since outputs are
///   overwritten); lines shorter than 8 are computed into staging planes and copied.
/// - `weightGradient` computes 4 output channels x 3 (input channel, tap) pairs per step (12
///   accumulators of partial sums over the vectors of outputs), summed across lanes at the
///   end. Lines whose length is not a multiple of 8 read a copy of gradOutput whose lanes past
///   the line end are zero. On planes of at most 256 outputs it runs over vectors of 8 output
///   channels instead (gradOutput copied transposed; no lane sums), summing several images
///   per call into the scratch before one pass into dW.
public struct AxisConv {
    public enum Axis { case height, width }
    public let axis: Axis
    /// The input plane.
    public let rows: Int, cols: Int
    public let kernel: Int, padding: Int

    /// rows + 2 padding - kernel + 1 on .height, else rows.
    public var outRows: Int { axis == .height ? rows + 2 * padding - kernel + 1 : rows }
    /// cols + 2 padding - kernel + 1 on .width, else cols.
    public var outCols: Int { axis == .width ? cols + 2 * padding - kernel + 1 : cols }

    /// Lines of outputs (outRows on .width, 1 on .height) and outputs per line.
    let lineCount: Int, lineLength: Int
    /// Vectors of 8 outputs that cover a line: ceil(lineLength / 8).
    let vectorsPerLine: Int
    /// Floats from one line to the next in the padded input, and from one tap to the next.
    let linePitch: Int, tapStep: Int
    /// Floats of one input channel's padded copy (a multiple of 8).
    let paddedPlane: Int
    /// Lines shorter than 8: `forward` computes them into staging planes of 8 floats a line.
    let forwardStaged: Bool
    /// (padded input offset, output offset) of every vector `forward` computes, in pairs (an
    /// odd count repeats the last vector). Output offsets point into the staging planes when
    /// `forwardStaged`.
    let forwardVectors: [Int]

    /// Throws FNLError.invalid unless rows, cols >= 1, 1 <= kernel <= 16,
    /// 0 <= padding <= kernel - 1 and the output is non-empty.
    public init(axis: Axis, rows: Int, cols: Int, kernel: Int, padding: Int) throws {
        try require(rows >= 1 && cols >= 1, "the plane must have at least one row and column, got \(rows) x \(cols)")
        let (plane, overflow) = rows.multipliedReportingOverflow(by: cols)
        try require(!overflow && plane <= Int(Int32.max), "the plane \(rows) x \(cols) exceeds \(Int32.max) elements")
        try require(kernel >= 1 && kernel <= 16, "the kernel length must be in 1...16, got \(kernel)")
        try require(padding >= 0 && padding <= kernel - 1,
                    "the padding must be in 0...\(kernel - 1) (kernel - 1), got \(padding)")
        let length = axis == .height ? rows : cols
        try require(length + 2 * padding - kernel + 1 >= 1,
                    "the output is empty: the \(axis == .height ? "height" : "width") \(length) with padding \(padding) is shorter than the kernel \(kernel)")
        self.axis = axis; self.rows = rows; self.cols = cols; self.kernel = kernel; self.padding = padding

        let outRows = axis == .height ? rows + 2 * padding - kernel + 1 : rows
        let outCols = axis == .width ? cols + 2 * padding - kernel + 1 : cols
        switch axis {
        case .height:
            lineCount = 1; lineLength = outRows * cols; tapStep = cols
            vectorsPerLine = (lineLength + 7) / 8
            // Zero rows above, the plane, zeros below up to the last tap of the last vector.
            linePitch = 0
            paddedPlane = (8 * vectorsPerLine + (kernel - 1) * cols + 7) / 8 * 8
        case .width:
            lineCount = outRows; lineLength = outCols; tapStep = 1
            vectorsPerLine = (lineLength + 7) / 8
            // Each row: `padding` zeros, the row, zeros up to the last tap of the last vector;
            // rows a multiple of 8 apart so that every vector's first tap is an aligned load.
            linePitch = (8 * vectorsPerLine + kernel - 1 + 7) / 8 * 8
            paddedPlane = (rows * linePitch + 7) / 8 * 8
        }
        forwardStaged = lineLength < 8
        var vectors: [Int] = []
        for r in 0..<lineCount {
            if forwardStaged {
                vectors += [r * linePitch, r * 8]
                continue
            }
            for u in 0..<(lineLength / 8) { vectors += [r * linePitch + 8 * u, r * lineLength + 8 * u] }
            if lineLength % 8 != 0 { vectors += [r * linePitch + lineLength - 8, r * lineLength + lineLength - 8] }
        }
        if vectors.count % 4 != 0 { vectors += vectors.suffix(2) }
        forwardVectors = vectors
    }

    // MARK: - Packed weights

    /// The blocks of output channels `forward` computes together: `wide` blocks of 6, then
    /// `narrow` blocks of 4, covering outChannels rounded up to even (the extra rows of the
    /// packed weights are zero and their outputs are discarded). Width convs favour blocks of
    /// 6, height convs blocks of 4 (measured faster for each by the prototype sweep).
    func blocks(_ outChannels: Int) -> (wide: Int, narrow: Int) {
        let n = max(4, (outChannels + 1) / 2 * 2)
        switch axis {
        case .width:
            switch n % 6 {
            case 0: return (n / 6, 0)
            case 4: return (n / 6, 1)
            default: return ((n - 8) / 6, 2)
            }
        case .height:
            switch n % 4 {
            case 0: return (0, n / 4)
            default: return (1, (n - 6) / 4)
            }
        }
    }

    /// Floats of the packed weights for these channel counts.
    public func packedCount(outChannels: Int, inChannels: Int) -> Int {
        let b = blocks(outChannels)
        return (6 * b.wide + 4 * b.narrow) * inChannels * kernel
    }

    /// Packs weight[o, c, t] = w[o * outStride + c * inStride + t * tapStride] (strides may be
    /// negative) as blocks of J output channels, each [Cin][tap][J]; rows past outChannels
    /// are zero.
    public func pack(_ w: UnsafePointer<Float>, outChannels: Int, inChannels: Int,
                     outStride: Int, inStride: Int, tapStride: Int, into packed: UnsafeMutablePointer<Float>) {
        let b = blocks(outChannels)
        var dst = packed, o0 = 0
        for block in 0..<(b.wide + b.narrow) {
            let width = block < b.wide ? 6 : 4
            for c in 0..<inChannels {
                for t in 0..<kernel {
                    for j in 0..<width {
                        let o = o0 + j
                        dst[j] = o < outChannels ? w[o * outStride + c * inStride + t * tapStride] : 0
                    }
                    dst += width
                }
            }
            o0 += width
        }
    }

    // MARK: - Scratch

    /// Floats of scratch one call of `forward` or `weightGradient` needs (padded input copies,
    /// tails); the caller gives each thread its own scratch.
    public func scratchCount(inChannels: Int, outChannels: Int) -> Int {
        scratchCount(inChannels: inChannels, outChannels: outChannels,
                     transposed: gradientTransposed(outChannels: outChannels))
    }

    /// The scratch with the weight-gradient path given (`transposed`: over output-channel
    /// vectors).
    func scratchCount(inChannels: Int, outChannels: Int, transposed: Bool) -> Int {
        let padded = inChannels * paddedPlane
        let b = blocks(outChannels)
        let bias = 6 * b.wide + 4 * b.narrow
        let planes = forwardStaged ? 6 * lineCount * 8 : outRows * outCols   // staging or sink
        let gradCopy = gradientStaged ? outChannels * lineCount * 8 * vectorsPerLine : 0
        let gradT = transposed ? transposedCount(inChannels: inChannels, outChannels: outChannels) : 0
        return padded + max(bias + planes, gradCopy, gradT) + 8 + 16
    }

    /// The scratch from its first 64-byte boundary (the padded copies are then aligned: every
    /// vector's first tap is an aligned load, and no load of the first taps splits a cache line).
    @inline(__always)
    func aligned(_ scratch: UnsafeMutablePointer<Float>) -> UnsafeMutablePointer<Float> {
        let misalignment = Int(bitPattern: scratch) & 63
        return misalignment == 0 ? scratch : scratch + (64 - misalignment) / 4
    }

    /// Copies the input planes into the zero-padded layout (every float of the copy is
    /// written: zeros where the plane is not). Inline vector moves, not library calls: the
    /// rows are short (8 to 32 floats) and there are many of them.
    func copyPadded(_ input: UnsafePointer<Float>, inChannels: Int, inStride: Int, into buffer: UnsafeMutablePointer<Float>) {
        for c in 0..<inChannels {
            let src = input + c * inStride, dst = buffer + c * paddedPlane
            switch axis {
            case .height:
                let lead = padding * cols, body = rows * cols
                zeroFloats(dst, lead)
                copyFloats(src, dst + lead, body)
                zeroFloats(dst + lead + body, paddedPlane - lead - body)
            case .width:
                // The whole line zeroed with aligned vector stores (linePitch is a multiple of
                // 8), then the row copied over it: no short loops, which the compiler would
                // turn into memset calls.
                var line = dst, row = src
                for _ in 0..<rows {
                    var z = 0
                    while z < linePitch { storeVector(SIMD8(), line + z); z &+= 8 }
                    copyFloats(row, line + padding, cols)
                    line += linePitch; row += cols
                }
                zeroFloats(dst + rows * linePitch, paddedPlane - rows * linePitch)
            }
        }
    }

    // MARK: - Forward

    /// One image: input channel c's plane starts at input + c * inStride (rows x cols,
    /// contiguous rows), output channel o's plane at output + o * outStride (outRows x outCols).
    /// Overwrites the output (adds bias[o] when given). `packed` comes from `pack`.
    /// `inPlace`: a 1 x 1 convolution of one line (kernel 1, padding 0, one row on .width)
    /// reads its input where it is, without the padded copy; each input plane must then be
    /// readable up to 8 floats (lines shorter than 8 read past their end into lanes that are
    /// dropped).
    public func forward(_ packed: UnsafePointer<Float>, outChannels: Int, inChannels: Int,
                        input: UnsafePointer<Float>, inStride: Int,
                        output: UnsafeMutablePointer<Float>, outStride: Int,
                        bias: UnsafePointer<Float>?, scratch: UnsafeMutablePointer<Float>, inPlace: Bool = false) {
        let padded = aligned(scratch)
        let readsInPlace = inPlace && kernel == 1 && padding == 0 && lineCount == 1
        if !readsInPlace { copyPadded(input, inChannels: inChannels, inStride: inStride, into: padded) }
        let b = blocks(outChannels)
        let biasBlock = padded + inChannels * paddedPlane
        let paddedOut = 6 * b.wide + 4 * b.narrow
        for o in 0..<paddedOut { biasBlock[o] = o < outChannels ? (bias?[o] ?? 0) : 0 }
        let planes = biasBlock + paddedOut
        let stagePlane = lineCount * 8
        let x = readsInPlace ? input : UnsafePointer(padded)
        forwardVectors.withUnsafeBufferPointer { table in
            let vectors = table.baseAddress!, pairs = table.count / 4
            var wp = packed, o0 = 0
            for block in 0..<(b.wide + b.narrow) {
                let width = block < b.wide ? 6 : 4
                // Output plane of channel o0 + j: the real one, a staging plane, or the sink.
                @inline(__always)
                func target(_ j: Int) -> UnsafeMutablePointer<Float> {
                    forwardTarget(o0 + j, j, outChannels, output, outStride, planes)
                }
                let args = ForwardArguments(x: x, channelStride: readsInPlace ? inStride : paddedPlane,
                                            channels: inChannels, step: tapStep,
                                            weights: wp, bias: UnsafePointer(biasBlock + o0),
                                            vectors: vectors, pairs: pairs)
                if width == 6 {
                    if kernel == 3 {
                        forwardBlock6Taps3(args, target(0), target(1), target(2), target(3), target(4), target(5))
                    } else {
                        forwardBlock6(args, taps: kernel, target(0), target(1), target(2), target(3), target(4), target(5))
                    }
                } else {
                    if kernel == 3 {
                        forwardBlock4Taps3(args, target(0), target(1), target(2), target(3))
                    } else {
                        forwardBlock4(args, taps: kernel, target(0), target(1), target(2), target(3))
                    }
                }
                if forwardStaged {
                    for j in 0..<min(width, outChannels - o0) {
                        let src = planes + j * stagePlane, dst = output + (o0 + j) * outStride
                        for r in 0..<lineCount {
                            for s in 0..<lineLength { dst[r * lineLength + s] = src[r * 8 + s] }
                        }
                    }
                }
                wp += width * inChannels * kernel
                o0 += width
            }
        }
    }

    /// Output plane of channel o (slot j of its block): in `output`, a staging plane
    /// (`forwardStaged`), or the sink for the padding channels of the last block.
    @inline(__always)
    func forwardTarget(_ o: Int, _ j: Int, _ outChannels: Int, _ output: UnsafeMutablePointer<Float>, _ outStride: Int,
                       _ planes: UnsafeMutablePointer<Float>) -> UnsafeMutablePointer<Float> {
        if forwardStaged { return planes + j * lineCount * 8 }
        return o < outChannels ? output + o * outStride : planes
    }

    // MARK: - Weight gradient

    /// Lines whose length is not a multiple of 8: `weightGradient` reads a copy of gradOutput
    /// with lines of 8 * vectorsPerLine floats, zero past the line end.
    var gradientStaged: Bool { lineLength % 8 != 0 }

    /// The contribution of `images` images to the weight gradient:
    ///
    ///     dW[o, c, t] (+)= sum_n sum_i gradOutput_n[o, i] * in_n[c, i + (t - padding) * step]
    ///
    /// image n's gradOutput channel o's plane (outRows x outCols) at gradOutput + n *
    /// gradImageStride + o * outStride, its input as in `forward` from input + n *
    /// inputImageStride; dW[o, c, t] at dw[o * dOutStride + c * dInStride + t * dTapStride]
    /// (non-negative strides). accumulate false overwrites dW, true adds to it. On small
    /// planes the sums of all the images are kept in the scratch and added to dW once.
    public func weightGradient(gradOutput: UnsafePointer<Float>, outChannels: Int, outStride: Int,
                               input: UnsafePointer<Float>, inChannels: Int, inStride: Int,
                               into dw: UnsafeMutablePointer<Float>, dOutStride: Int, dInStride: Int, dTapStride: Int,
                               accumulate: Bool, images: Int = 1, gradImageStride: Int = 0, inputImageStride: Int = 0,
                               scratch unaligned: UnsafeMutablePointer<Float>) {
        if gradientTransposed(outChannels: outChannels) {
            weightGradientTransposed(gradOutput: gradOutput, outChannels: outChannels, outStride: outStride,
                                     input: input, inChannels: inChannels, inStride: inStride,
                                     images: images, gradImageStride: gradImageStride, inputImageStride: inputImageStride,
                                     into: dw, dOutStride: dOutStride, dInStride: dInStride, dTapStride: dTapStride,
                                     accumulate: accumulate, scratch: aligned(unaligned))
            return
        }
        for n in 0..<images {
            weightGradient(gradOutput: gradOutput + n * gradImageStride, outChannels: outChannels, outStride: outStride,
                           input: input + n * inputImageStride, inChannels: inChannels, inStride: inStride,
                           into: dw, dOutStride: dOutStride, dInStride: dInStride, dTapStride: dTapStride,
                           accumulate: accumulate || n > 0, transposed: false, scratch: unaligned)
        }
    }

    /// `weightGradient` with the path given (`transposed`: over output-channel vectors; the
    /// scratch then holds `scratchCount(inChannels:outChannels:transposed:)` floats).
    func weightGradient(gradOutput: UnsafePointer<Float>, outChannels: Int, outStride: Int,
                        input: UnsafePointer<Float>, inChannels: Int, inStride: Int,
                        into dw: UnsafeMutablePointer<Float>, dOutStride: Int, dInStride: Int, dTapStride: Int,
                        accumulate: Bool, transposed: Bool, scratch unaligned: UnsafeMutablePointer<Float>) {
        let scratch = aligned(unaligned)
        if transposed {
            weightGradientTransposed(gradOutput: gradOutput, outChannels: outChannels, outStride: outStride,
                                     input: input, inChannels: inChannels, inStride: inStride,
                                     images: 1, gradImageStride: 0, inputImageStride: 0,
                                     into: dw, dOutStride: dOutStride, dInStride: dInStride, dTapStride: dTapStride,
                                     accumulate: accumulate, scratch: scratch)
            return
        }
        copyPadded(input, inChannels: inChannels, inStride: inStride, into: scratch)
        let x = UnsafePointer(scratch)
        // The gradient planes as the vectors read them: line r starts at r * gLinePitch.
        var g = gradOutput, gPlane = outStride, gLinePitch = lineLength
        if gradientStaged {
            let copy = scratch + inChannels * paddedPlane
            gLinePitch = 8 * vectorsPerLine
            gPlane = lineCount * gLinePitch
            for o in 0..<outChannels {
                for r in 0..<lineCount {
                    let src = gradOutput + o * outStride + r * lineLength, dst = copy + o * gPlane + r * gLinePitch
                    copyFloats(src, dst, lineLength)
                    (dst + lineLength).update(repeating: 0, count: gLinePitch - lineLength)
                }
            }
            g = UnsafePointer(copy)
        }
        let lines = GradientLines(count: lineCount, vectors: vectorsPerLine, inputPitch: linePitch, gradPitch: gLinePitch)
        let pairs = inChannels * kernel
        var o0 = 0
        while o0 < outChannels {
            // Four gradient planes (past the last channel: repeats of it, results dropped).
            let last = outChannels - 1
            let g0 = g + o0 * gPlane, g1 = g + min(o0 + 1, last) * gPlane
            let g2 = g + min(o0 + 2, last) * gPlane, g3 = g + min(o0 + 3, last) * gPlane
            let jb = min(4, outChannels - o0)
            // The (input channel, tap) pairs f0, f0+1, f0+2 of f = c * kernel + t, walked
            // without divisions (past the last pair: repeats of it, results dropped).
            var c0 = 0, t0 = 0, f0 = 0
            while f0 < pairs {
                var (c1, t1) = t0 + 1 < kernel ? (c0, t0 + 1) : (c0 + 1, 0)
                if f0 + 1 >= pairs { (c1, t1) = (c0, t0) }
                var (c2, t2) = t1 + 1 < kernel ? (c1, t1 + 1) : (c1 + 1, 0)
                if f0 + 2 >= pairs { (c2, t2) = (c1, t1) }
                let (s8, s4) = gradientBlock(lines, g0, g1, g2, g3,
                                             x + c0 * paddedPlane + t0 * tapStep,
                                             x + c1 * paddedPlane + t1 * tapStep,
                                             x + c2 * paddedPlane + t2 * tapStep)
                // dW offsets of the three pairs within an output channel's row.
                let d0 = c0 &* dInStride &+ t0 &* dTapStride, d1 = c1 &* dInStride &+ t1 &* dTapStride
                let d2 = c2 &* dInStride &+ t2 &* dTapStride
                if jb == 4 && f0 + 3 <= pairs {
                    storeGradient(dw + o0 &* dOutStride, dOutStride, d0, d1, d2, s8, s4, accumulate)
                } else {
                    let sums = GradientSums(s8, s4), mb = min(3, pairs - f0)
                    for j in 0..<jb {
                        let row = dw + (o0 + j) * dOutStride
                        for m in 0..<mb {
                            let at = row + (m == 0 ? d0 : m == 1 ? d1 : d2), sum = sums[j * 3 + m]
                            at.pointee = accumulate ? at.pointee + sum : sum
                        }
                    }
                }
                (c0, t0) = t2 + 1 < kernel ? (c2, t2 + 1) : (c2 + 1, 0)
                f0 += 3
            }
            o0 += 4
        }
    }


    // MARK: - Weight gradient over output-channel vectors

    /// Small planes: `weightGradient` vectorizes over output channels instead of outputs (the
    /// sums over the outputs are then plain FMAs, with no lane sums per block).
    func gradientTransposed(outChannels: Int) -> Bool {
        outRows * outCols <= 256
    }

    /// Floats of the transposed gradient copy ([pixel][outChannels rounded up to 8]) and the
    /// sums ([pair][outChannels rounded up to 8], pairs rounded up to 8) that follow it.
    func transposedCount(inChannels: Int, outChannels: Int) -> Int {
        (outRows * outCols + (inChannels * kernel + 7) / 8 * 8) * ((outChannels + 7) / 8 * 8)
    }

    /// The weight gradient with gradOutput copied transposed, gT[p][o] (o rounded up to a
    /// multiple of 8 with zeros), then, per block of 8 Jo output channels x Jc (input channel,
    /// tap) pairs (Jo x Jc = 3 x 4, 2 x 4 or 1 x 8):
    ///
    ///     acc[jo][jc] += gT[p][8 jo..<8 jo + 8] * broadcast(in[c_jc, p + shift_jc])
    ///
    /// over every output p of every image (each image's input padded and gradOutput
    /// transposed in turn into the aligned scratch); each accumulator is dW for 8 consecutive
    /// output channels, stored (first image) or added in sums[pair][o]. A last pass adds (or
    /// stores) the sums to dW once: 8 x 8 blocks transposed
    /// to rows of 8 pairs when the pairs are consecutive floats of dW (pairs are numbered
    /// c * kernel + t, or t * inChannels + c when that is the layout), else one float at a time.
    func weightGradientTransposed(gradOutput: UnsafePointer<Float>, outChannels: Int, outStride: Int,
                                  input: UnsafePointer<Float>, inChannels: Int, inStride: Int,
                                  images: Int, gradImageStride: Int, inputImageStride: Int,
                                  into dw: UnsafeMutablePointer<Float>, dOutStride: Int, dInStride: Int, dTapStride: Int,
                                  accumulate: Bool, scratch: UnsafeMutablePointer<Float>) {
        let pixels = outRows * outCols
        let gStride = (outChannels + 7) / 8 * 8
        let x = UnsafePointer(scratch)
        let gT = scratch + inChannels * paddedPlane, sums = gT + pixels * gStride
        let pairs = inChannels * kernel
        let tapMajor = sumsOrder(inChannels: inChannels, dInStride: dInStride, dTapStride: dTapStride).tapMajor
        withUnsafeTemporaryAllocation(of: Int.self, capacity: pairs + 8) { sources in
            // Offset of pair f's input plane in the padded copy (past the last pair: the last
            // one again; its sums land in the rows past `pairs`, which are never read).
            for f in 0..<(pairs + 8) {
                let (c, t) = pair(min(f, pairs - 1), inChannels: inChannels, tapMajor: tapMajor)
                sources[f] = c * paddedPlane + t * tapStep
            }
            for n in 0..<images {
                copyPadded(input + n * inputImageStride, inChannels: inChannels, inStride: inStride, into: scratch)
                transposeGradient(gradOutput + n * gradImageStride, outChannels: outChannels, outStride: outStride,
                                  pixels: pixels, into: gT, gStride: gStride)
                transposedSums(x, gT, gStride: gStride, pairs: pairs, sources: sources.baseAddress!, sums: sums,
                               addToSums: n > 0)
            }
        }
        writeTransposedSums(sums, gStride: gStride, outChannels: outChannels, inChannels: inChannels, into: dw,
                            dOutStride: dOutStride, dInStride: dInStride, dTapStride: dTapStride, accumulate: accumulate)
    }

    /// How dW's layout orders the (input channel, tap) pairs: `consecutive` when the pairs of
    /// an output channel are consecutive floats ([o][c][t], or [o][t][c] = `tapMajor`, which
    /// numbers the pairs t * inChannels + c).
    func sumsOrder(inChannels: Int, dInStride: Int, dTapStride: Int) -> (consecutive: Bool, tapMajor: Bool) {
        let channelMajor = dTapStride == 1 && dInStride == kernel
        let tapMajor = !channelMajor && dInStride == 1 && dTapStride == inChannels
        return (channelMajor || tapMajor, tapMajor)
    }

    /// The pair numbering of the transposed sums: f = t * inChannels + c when `tapMajor`
    /// (dW's layout [o][t][c]), else f = c * kernel + t.
    @inline(__always)
    func pair(_ f: Int, inChannels: Int, tapMajor: Bool) -> (c: Int, t: Int) {
        if tapMajor { let t = f / inChannels; return (f - t * inChannels, t) }
        let c = f / kernel
        return (c, f - c * kernel)
    }

    /// sums[f][o] (=, or += when `addToSums`) sum_p gT[p][o] x_f[p] for one image's padded
    /// input `x` and transposed gradient `gT`; x_f starts at x + sources[f] (pairs + 8 entries).
    func transposedSums(_ x: UnsafePointer<Float>, _ gT: UnsafeMutablePointer<Float>, gStride: Int, pairs: Int,
                        sources: UnsafePointer<Int>, sums: UnsafeMutablePointer<Float>, addToSums: Bool) {
        let vectors = gStride / 8
        // Pairs outermost, in groups of 24 (a multiple of every Jc): the group's input planes
        // stay in L1 while the output-channel blocks run over them.
        var group = 0
        while group < pairs {
            let groupEnd = min(group + 24, pairs)
            var vector0 = 0
            while vector0 < vectors {
                let remaining = vectors - vector0
                let jo = remaining == 1 ? 1 : (remaining == 2 || remaining == 4) ? 2 : 3
                let jc = jo == 1 ? 8 : 4
                var f0 = group
                while f0 < groupEnd {
                    @inline(__always)
                    func source(_ m: Int) -> UnsafePointer<Float> { x + sources[f0 + m] }
                    let args = TransposedArguments(g: UnsafePointer(gT + 8 * vector0), gStride: gStride,
                                                   lines: lineCount, length: lineLength, inputPitch: linePitch,
                                                   sums: sums + f0 * gStride + 8 * vector0, addToSums: addToSums)
                    switch jo {
                    case 3: gradientT3x4(args, source(0), source(1), source(2), source(3))
                    case 2: gradientT2x4(args, source(0), source(1), source(2), source(3))
                    default: gradientT1x8(args, source(0), source(1), source(2), source(3),
                                          source(4), source(5), source(6), source(7))
                    }
                    f0 += jc
                }
                vector0 += jo
            }
            group = groupEnd
        }
    }

    /// sums[f][o] to dW[o, pair f] (added when `accumulate`).
    func writeTransposedSums(_ sums: UnsafeMutablePointer<Float>, gStride: Int, outChannels: Int, inChannels: Int,
                             into dw: UnsafeMutablePointer<Float>, dOutStride: Int, dInStride: Int, dTapStride: Int,
                             accumulate: Bool) {
        let pairs = inChannels * kernel, vectors = gStride / 8
        let (consecutive, tapMajor) = sumsOrder(inChannels: inChannels, dInStride: dInStride, dTapStride: dTapStride)
        for v in 0..<vectors {
            let o0 = 8 * v, ob = min(8, outChannels - o0)
            let rows = dw + o0 * dOutStride
            var f0 = 0
            while f0 < pairs {
                let src = UnsafePointer(sums + f0 * gStride + o0)
                if consecutive && ob == 8 && f0 + 8 <= pairs {
                    let c = transpose8x8(src, gStride)
                    addOrStore(c.0, rows + f0, accumulate)
                    addOrStore(c.1, rows + dOutStride + f0, accumulate)
                    addOrStore(c.2, rows + 2 * dOutStride + f0, accumulate)
                    addOrStore(c.3, rows + 3 * dOutStride + f0, accumulate)
                    addOrStore(c.4, rows + 4 * dOutStride + f0, accumulate)
                    addOrStore(c.5, rows + 5 * dOutStride + f0, accumulate)
                    addOrStore(c.6, rows + 6 * dOutStride + f0, accumulate)
                    addOrStore(c.7, rows + 7 * dOutStride + f0, accumulate)
                } else {
                    for f in f0..<min(f0 + 8, pairs) {
                        let (c, t) = pair(f, inChannels: inChannels, tapMajor: tapMajor)
                        let at = rows + c * dInStride + t * dTapStride, from = src + (f - f0) * gStride
                        if accumulate {
                            for o in 0..<ob { at[o &* dOutStride] += from[o] }
                        } else {
                            for o in 0..<ob { at[o &* dOutStride] = from[o] }
                        }
                    }
                }
                f0 += 8
            }
        }
    }

    /// gT[p * gStride + o] = gradOutput[o * outStride + p], zero for o in outChannels..<gStride:
    /// 8 x 8 blocks transposed (rows past outChannels zero), the last pixels one at a time.
    func transposeGradient(_ g: UnsafePointer<Float>, outChannels: Int, outStride: Int, pixels: Int,
                           into gT: UnsafeMutablePointer<Float>, gStride: Int) {
        let whole = pixels / 8 * 8
        for o0 in stride(from: 0, to: gStride, by: 8) {
            let src = g + o0 * outStride, dst = gT + o0
            let live = min(8, outChannels - o0)
            @inline(__always)
            func row(_ j: Int, _ p: Int) -> SIMD8<Float> { j < live ? loadVector(src + j * outStride + p) : SIMD8() }
            var p = 0
            while p < whole {
                let c = transpose8x8(row(0, p), row(1, p), row(2, p), row(3, p), row(4, p), row(5, p), row(6, p), row(7, p))
                let d = dst + p * gStride
                storeVector(c.0, d); storeVector(c.1, d + gStride); storeVector(c.2, d + 2 * gStride)
                storeVector(c.3, d + 3 * gStride); storeVector(c.4, d + 4 * gStride); storeVector(c.5, d + 5 * gStride)
                storeVector(c.6, d + 6 * gStride); storeVector(c.7, d + 7 * gStride)
                p += 8
            }
            for p in whole..<pixels {
                for j in 0..<8 { dst[p * gStride + j] = j < live ? src[j * outStride + p] : 0 }
            }
        }
    }
}

// MARK: - Helpers

/// Copies `count` floats with 8-float moves (the last one overlapping the one before when
/// count is not a multiple of 8).
@inline(__always)
func copyFloats(_ src: UnsafePointer<Float>, _ dst: UnsafeMutablePointer<Float>, _ count: Int) {
    if count < 8 {
        for i in 0..<count { dst[i] = src[i] }
        return
    }
    var i = 0
    while i &+ 8 <= count {
        storeVector(loadVector(src + i), dst + i)
        i &+= 8
    }
    if i < count { storeVector(loadVector(src + (count &- 8)), dst + (count &- 8)) }
}

/// Sets `count` floats to zero (8-float stores as `copyFloats`).
@inline(__always)
func zeroFloats(_ dst: UnsafeMutablePointer<Float>, _ count: Int) {
    if count < 8 {
        for i in 0..<count { dst[i] = 0 }
        return
    }
    var i = 0
    while i &+ 8 <= count {
        storeVector(SIMD8(), dst + i)
        i &+= 8
    }
    if i < count { storeVector(SIMD8(), dst + (count &- 8)) }
}

@inline(__always)
func loadVector(_ p: UnsafePointer<Float>) -> SIMD8<Float> {
    UnsafeRawPointer(p).loadUnaligned(as: SIMD8<Float>.self)
}

@inline(__always)
func storeVector(_ v: SIMD8<Float>, _ p: UnsafeMutablePointer<Float>) {
    UnsafeMutableRawPointer(p).storeBytes(of: v, as: SIMD8<Float>.self)
}

// MARK: - Forward microkernels

/// What a forward microkernel reads: the padded input (`channels` planes `channelStride`
/// apart, taps `step` apart), the packed weights of one block ([channels][taps][J]), the
/// block's J biases, and `pairs` pairs of vectors as (input offset, output offset) x 2.
struct ForwardArguments {
    let x: UnsafePointer<Float>
    let channelStride: Int, channels: Int, step: Int
    let weights: UnsafePointer<Float>
    let bias: UnsafePointer<Float>
    let vectors: UnsafePointer<Int>
    let pairs: Int
}

/// J = 6 output channels x 2 vectors of 8 outputs, 12 accumulators:
///
///     y_j[out_v + l] = bias_j + sum_c sum_t w[c, t, j] * x[c * channelStride + in_v + l + t * step]
@inline(__always)
func forwardBlock6Core(_ a: ForwardArguments, taps: Int,
                       _ y0: UnsafeMutablePointer<Float>, _ y1: UnsafeMutablePointer<Float>,
                       _ y2: UnsafeMutablePointer<Float>, _ y3: UnsafeMutablePointer<Float>,
                       _ y4: UnsafeMutablePointer<Float>, _ y5: UnsafeMutablePointer<Float>) {
    let cs = a.channelStride, step = a.step
    let b0 = SIMD8<Float>(repeating: a.bias[0]), b1 = SIMD8<Float>(repeating: a.bias[1])
    let b2 = SIMD8<Float>(repeating: a.bias[2]), b3 = SIMD8<Float>(repeating: a.bias[3])
    let b4 = SIMD8<Float>(repeating: a.bias[4]), b5 = SIMD8<Float>(repeating: a.bias[5])
    var v = a.vectors
    for _ in 0..<a.pairs {
        var a00 = b0, a01 = b0, a10 = b1, a11 = b1, a20 = b2, a21 = b2
        var a30 = b3, a31 = b3, a40 = b4, a41 = b4, a50 = b5, a51 = b5
        var q0 = a.x + v[0], q1 = a.x + v[2]
        var w = a.weights
        for _ in 0..<a.channels {
            var r0 = q0, r1 = q1
            for _ in 0..<taps {
                let x0 = loadVector(r0), x1 = loadVector(r1)
                var k = SIMD8<Float>(repeating: w[0])
                a00 = a00.plusProduct(k, x0); a01 = a01.plusProduct(k, x1)
                k = SIMD8<Float>(repeating: w[1])
                a10 = a10.plusProduct(k, x0); a11 = a11.plusProduct(k, x1)
                k = SIMD8<Float>(repeating: w[2])
                a20 = a20.plusProduct(k, x0); a21 = a21.plusProduct(k, x1)
                k = SIMD8<Float>(repeating: w[3])
                a30 = a30.plusProduct(k, x0); a31 = a31.plusProduct(k, x1)
                k = SIMD8<Float>(repeating: w[4])
                a40 = a40.plusProduct(k, x0); a41 = a41.plusProduct(k, x1)
                k = SIMD8<Float>(repeating: w[5])
                a50 = a50.plusProduct(k, x0); a51 = a51.plusProduct(k, x1)
                w += 6; r0 += step; r1 += step
            }
            q0 += cs; q1 += cs
        }
        let o0 = v[1], o1 = v[3]
        storeVector(a00, y0 + o0); storeVector(a01, y0 + o1)
        storeVector(a10, y1 + o0); storeVector(a11, y1 + o1)
        storeVector(a20, y2 + o0); storeVector(a21, y2 + o1)
        storeVector(a30, y3 + o0); storeVector(a31, y3 + o1)
        storeVector(a40, y4 + o0); storeVector(a41, y4 + o1)
        storeVector(a50, y5 + o0); storeVector(a51, y5 + o1)
        v += 4
    }
}

/// J = 4 output channels x 2 vectors of 8 outputs, 8 accumulators (as `forwardBlock6Core`).
@inline(__always)
func forwardBlock4Core(_ a: ForwardArguments, taps: Int,
                       _ y0: UnsafeMutablePointer<Float>, _ y1: UnsafeMutablePointer<Float>,
                       _ y2: UnsafeMutablePointer<Float>, _ y3: UnsafeMutablePointer<Float>) {
    let cs = a.channelStride, step = a.step
    let b0 = SIMD8<Float>(repeating: a.bias[0]), b1 = SIMD8<Float>(repeating: a.bias[1])
    let b2 = SIMD8<Float>(repeating: a.bias[2]), b3 = SIMD8<Float>(repeating: a.bias[3])
    var v = a.vectors
    for _ in 0..<a.pairs {
        var a00 = b0, a01 = b0, a10 = b1, a11 = b1, a20 = b2, a21 = b2, a30 = b3, a31 = b3
        var q0 = a.x + v[0], q1 = a.x + v[2]
        var w = a.weights
        for _ in 0..<a.channels {
            var r0 = q0, r1 = q1
            for _ in 0..<taps {
                let x0 = loadVector(r0), x1 = loadVector(r1)
                var k = SIMD8<Float>(repeating: w[0])
                a00 = a00.plusProduct(k, x0); a01 = a01.plusProduct(k, x1)
                k = SIMD8<Float>(repeating: w[1])
                a10 = a10.plusProduct(k, x0); a11 = a11.plusProduct(k, x1)
                k = SIMD8<Float>(repeating: w[2])
                a20 = a20.plusProduct(k, x0); a21 = a21.plusProduct(k, x1)
                k = SIMD8<Float>(repeating: w[3])
                a30 = a30.plusProduct(k, x0); a31 = a31.plusProduct(k, x1)
                w += 4; r0 += step; r1 += step
            }
            q0 += cs; q1 += cs
        }
        let o0 = v[1], o1 = v[3]
        storeVector(a00, y0 + o0); storeVector(a01, y0 + o1)
        storeVector(a10, y1 + o0); storeVector(a11, y1 + o1)
        storeVector(a20, y2 + o0); storeVector(a21, y2 + o1)
        storeVector(a30, y3 + o0); storeVector(a31, y3 + o1)
        v += 4
    }
}

/// The kernel-3 specializations (the tap loop unrolled) and the any-length ones.
@inline(never)
func forwardBlock6Taps3(_ a: ForwardArguments,
                        _ y0: UnsafeMutablePointer<Float>, _ y1: UnsafeMutablePointer<Float>,
                        _ y2: UnsafeMutablePointer<Float>, _ y3: UnsafeMutablePointer<Float>,
                        _ y4: UnsafeMutablePointer<Float>, _ y5: UnsafeMutablePointer<Float>) {
    forwardBlock6Core(a, taps: 3, y0, y1, y2, y3, y4, y5)
}

@inline(never)
func forwardBlock6(_ a: ForwardArguments, taps: Int,
                   _ y0: UnsafeMutablePointer<Float>, _ y1: UnsafeMutablePointer<Float>,
                   _ y2: UnsafeMutablePointer<Float>, _ y3: UnsafeMutablePointer<Float>,
                   _ y4: UnsafeMutablePointer<Float>, _ y5: UnsafeMutablePointer<Float>) {
    forwardBlock6Core(a, taps: taps, y0, y1, y2, y3, y4, y5)
}

@inline(never)
func forwardBlock4Taps3(_ a: ForwardArguments,
                        _ y0: UnsafeMutablePointer<Float>, _ y1: UnsafeMutablePointer<Float>,
                        _ y2: UnsafeMutablePointer<Float>, _ y3: UnsafeMutablePointer<Float>) {
    forwardBlock4Core(a, taps: 3, y0, y1, y2, y3)
}

@inline(never)
func forwardBlock4(_ a: ForwardArguments, taps: Int,
                   _ y0: UnsafeMutablePointer<Float>, _ y1: UnsafeMutablePointer<Float>,
                   _ y2: UnsafeMutablePointer<Float>, _ y3: UnsafeMutablePointer<Float>) {
    forwardBlock4Core(a, taps: taps, y0, y1, y2, y3)
}

// MARK: - Weight-gradient microkernel

/// The vectors the weight gradient sums over: `count` lines of `vectors` vectors of 8, line r
/// starting at r * inputPitch in a padded input plane and r * gradPitch in a gradient plane.
struct GradientLines {
    let count: Int, vectors: Int, inputPitch: Int, gradPitch: Int
}

/// 4 output channels x 3 (input channel, tap) pairs, 12 accumulators:
///
///     s[j, m] = sum_vectors sum_lanes g_j[vector] * x_m[vector]
///
/// returned as s[0, 0...2], s[1, 0...2], s[2, 0...1] (8 lanes) and s[2, 2], s[3, 0...2].
@inline(never)
func gradientBlock(_ lines: GradientLines,
                   _ g0: UnsafePointer<Float>, _ g1: UnsafePointer<Float>,
                   _ g2: UnsafePointer<Float>, _ g3: UnsafePointer<Float>,
                   _ x0: UnsafePointer<Float>, _ x1: UnsafePointer<Float>,
                   _ x2: UnsafePointer<Float>) -> (SIMD8<Float>, SIMD4<Float>) {
    var a00 = SIMD8<Float>(), a01 = a00, a02 = a00, a10 = a00, a11 = a00, a12 = a00
    var a20 = a00, a21 = a00, a22 = a00, a30 = a00, a31 = a00, a32 = a00
    for r in 0..<lines.count {
        let xi = r &* lines.inputPitch, gi = r &* lines.gradPitch
        var p0 = x0 + xi, p1 = x1 + xi, p2 = x2 + xi
        var h0 = g0 + gi, h1 = g1 + gi, h2 = g2 + gi, h3 = g3 + gi
        for _ in 0..<lines.vectors {
            let u0 = loadVector(p0), u1 = loadVector(p1), u2 = loadVector(p2)
            var d = loadVector(h0)
            a00 = a00.plusProduct(d, u0); a01 = a01.plusProduct(d, u1); a02 = a02.plusProduct(d, u2)
            d = loadVector(h1)
            a10 = a10.plusProduct(d, u0); a11 = a11.plusProduct(d, u1); a12 = a12.plusProduct(d, u2)
            d = loadVector(h2)
            a20 = a20.plusProduct(d, u0); a21 = a21.plusProduct(d, u1); a22 = a22.plusProduct(d, u2)
            d = loadVector(h3)
            a30 = a30.plusProduct(d, u0); a31 = a31.plusProduct(d, u1); a32 = a32.plusProduct(d, u2)
            p0 += 8; p1 += 8; p2 += 8; h0 += 8; h1 += 8; h2 += 8; h3 += 8
        }
    }
    let s0 = laneSums(a00, a01, a02, a10), s1 = laneSums(a11, a12, a20, a21), s2 = laneSums(a22, a30, a31, a32)
    return (SIMD8(lowHalf: s0, highHalf: s1), s2)
}

/// Stores (or adds) the 12 sums of a full `gradientBlock`: s[j, m] to
/// row[j * rowStride + d_m].
@inline(__always)
func storeGradient(_ row: UnsafeMutablePointer<Float>, _ rowStride: Int, _ d0: Int, _ d1: Int, _ d2: Int,
                   _ s8: SIMD8<Float>, _ s4: SIMD4<Float>, _ accumulate: Bool) {
    let r0 = row, r1 = row + rowStride, r2 = row + 2 &* rowStride, r3 = row + 3 &* rowStride
    if accumulate {
        r0[d0] += s8[0]; r0[d1] += s8[1]; r0[d2] += s8[2]
        r1[d0] += s8[3]; r1[d1] += s8[4]; r1[d2] += s8[5]
        r2[d0] += s8[6]; r2[d1] += s8[7]; r2[d2] += s4[0]
        r3[d0] += s4[1]; r3[d1] += s4[2]; r3[d2] += s4[3]
    } else {
        r0[d0] = s8[0]; r0[d1] = s8[1]; r0[d2] = s8[2]
        r1[d0] = s8[3]; r1[d1] = s8[4]; r1[d2] = s8[5]
        r2[d0] = s8[6]; r2[d1] = s8[7]; r2[d2] = s4[0]
        r3[d0] = s4[1]; r3[d1] = s4[2]; r3[d2] = s4[3]
    }
}

/// The 12 sums of `gradientBlock`, s[j, m] at index j * 3 + m.
struct GradientSums {
    let s8: SIMD8<Float>, s4: SIMD4<Float>
    init(_ s8: SIMD8<Float>, _ s4: SIMD4<Float>) { self.s8 = s8; self.s4 = s4 }
    @inline(__always)
    subscript(n: Int) -> Float { n < 8 ? s8[n] : s4[n &- 8] }
}

/// The lane sums of four vectors, [sum a, sum b, sum c, sum d]: halves added, then a 4 x 4
/// transposition folded into two rounds of pairwise additions (17 vector operations).
@inline(__always)
func laneSums(_ a: SIMD8<Float>, _ b: SIMD8<Float>, _ c: SIMD8<Float>, _ d: SIMD8<Float>) -> SIMD4<Float> {
    let ha = a.lowHalf + a.highHalf, hb = b.lowHalf + b.highHalf
    let hc = c.lowHalf + c.highHalf, hd = d.lowHalf + d.highHalf
    // [a0+a2, a1+a3, b0+b2, b1+b3] and the same for c, d.
    let ab = SIMD4(lowHalf: ha.lowHalf, highHalf: hb.lowHalf) + SIMD4(lowHalf: ha.highHalf, highHalf: hb.highHalf)
    let cd = SIMD4(lowHalf: hc.lowHalf, highHalf: hd.lowHalf) + SIMD4(lowHalf: hc.highHalf, highHalf: hd.highHalf)
    return SIMD4(lowHalf: ab.evenHalf, highHalf: cd.evenHalf) + SIMD4(lowHalf: ab.oddHalf, highHalf: cd.oddHalf)
}


// MARK: - Weight-gradient microkernels over output-channel vectors

/// What these microkernels read: gT from output channel 8 jo0 (pixel p at g + p * gStride),
/// the pixels as `lines` lines of `length` (line r of an input plane at r * inputPitch), and
/// where the sums go: sums[jc * gStride + 8 jo + lane].
struct TransposedArguments {
    let g: UnsafePointer<Float>
    let gStride: Int
    let lines: Int, length: Int, inputPitch: Int
    let sums: UnsafeMutablePointer<Float>
    /// Whether the sums are added to what `sums` holds (later images) instead of stored.
    let addToSums: Bool
}

/// Jo = 3 vectors of output channels x Jc = 4 pairs, 12 accumulators.
@inline(never)
func gradientT3x4(_ a: TransposedArguments, _ x0: UnsafePointer<Float>, _ x1: UnsafePointer<Float>,
                  _ x2: UnsafePointer<Float>, _ x3: UnsafePointer<Float>) {
    var a00 = SIMD8<Float>(), a01 = a00, a02 = a00, a03 = a00
    var a10 = a00, a11 = a00, a12 = a00, a13 = a00
    var a20 = a00, a21 = a00, a22 = a00, a23 = a00
    var gp = a.g
    let gs = a.gStride
    for r in 0..<a.lines {
        let off = r &* a.inputPitch
        let p0 = x0 + off, p1 = x1 + off, p2 = x2 + off, p3 = x3 + off
        for i in 0..<a.length {
            let g0 = loadVector(gp), g1 = loadVector(gp + 8), g2 = loadVector(gp + 16)
            var b = SIMD8<Float>(repeating: p0[i])
            a00 = a00.plusProduct(g0, b); a10 = a10.plusProduct(g1, b); a20 = a20.plusProduct(g2, b)
            b = SIMD8<Float>(repeating: p1[i])
            a01 = a01.plusProduct(g0, b); a11 = a11.plusProduct(g1, b); a21 = a21.plusProduct(g2, b)
            b = SIMD8<Float>(repeating: p2[i])
            a02 = a02.plusProduct(g0, b); a12 = a12.plusProduct(g1, b); a22 = a22.plusProduct(g2, b)
            b = SIMD8<Float>(repeating: p3[i])
            a03 = a03.plusProduct(g0, b); a13 = a13.plusProduct(g1, b); a23 = a23.plusProduct(g2, b)
            gp += gs
        }
    }
    let t = a.sums, t1 = t + gs, t2 = t1 + gs, t3 = t2 + gs
    addOrStore(a00, t, a.addToSums); addOrStore(a10, t + 8, a.addToSums); addOrStore(a20, t + 16, a.addToSums)
    addOrStore(a01, t1, a.addToSums); addOrStore(a11, t1 + 8, a.addToSums); addOrStore(a21, t1 + 16, a.addToSums)
    addOrStore(a02, t2, a.addToSums); addOrStore(a12, t2 + 8, a.addToSums); addOrStore(a22, t2 + 16, a.addToSums)
    addOrStore(a03, t3, a.addToSums); addOrStore(a13, t3 + 8, a.addToSums); addOrStore(a23, t3 + 16, a.addToSums)
}

/// Jo = 2 x Jc = 4, 8 accumulators (2 x 6 would fit the registers, but the compiler hoists
/// its six broadcasts and spills).
@inline(never)
func gradientT2x4(_ a: TransposedArguments, _ x0: UnsafePointer<Float>, _ x1: UnsafePointer<Float>,
                  _ x2: UnsafePointer<Float>, _ x3: UnsafePointer<Float>) {
    var a00 = SIMD8<Float>(), a01 = a00, a02 = a00, a03 = a00
    var a10 = a00, a11 = a00, a12 = a00, a13 = a00
    var gp = a.g
    let gs = a.gStride
    for r in 0..<a.lines {
        let off = r &* a.inputPitch
        let p0 = x0 + off, p1 = x1 + off, p2 = x2 + off, p3 = x3 + off
        for i in 0..<a.length {
            let g0 = loadVector(gp), g1 = loadVector(gp + 8)
            var b = SIMD8<Float>(repeating: p0[i])
            a00 = a00.plusProduct(g0, b); a10 = a10.plusProduct(g1, b)
            b = SIMD8<Float>(repeating: p1[i])
            a01 = a01.plusProduct(g0, b); a11 = a11.plusProduct(g1, b)
            b = SIMD8<Float>(repeating: p2[i])
            a02 = a02.plusProduct(g0, b); a12 = a12.plusProduct(g1, b)
            b = SIMD8<Float>(repeating: p3[i])
            a03 = a03.plusProduct(g0, b); a13 = a13.plusProduct(g1, b)
            gp += gs
        }
    }
    let t = a.sums, t1 = t + gs, t2 = t1 + gs, t3 = t2 + gs
    addOrStore(a00, t, a.addToSums); addOrStore(a10, t + 8, a.addToSums)
    addOrStore(a01, t1, a.addToSums); addOrStore(a11, t1 + 8, a.addToSums)
    addOrStore(a02, t2, a.addToSums); addOrStore(a12, t2 + 8, a.addToSums)
    addOrStore(a03, t3, a.addToSums); addOrStore(a13, t3 + 8, a.addToSums)
}

/// Jo = 1 x Jc = 8, 8 accumulators.
@inline(never)
func gradientT1x8(_ a: TransposedArguments, _ x0: UnsafePointer<Float>, _ x1: UnsafePointer<Float>,
                  _ x2: UnsafePointer<Float>, _ x3: UnsafePointer<Float>,
                  _ x4: UnsafePointer<Float>, _ x5: UnsafePointer<Float>,
                  _ x6: UnsafePointer<Float>, _ x7: UnsafePointer<Float>) {
    var a0 = SIMD8<Float>(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0
    var gp = a.g
    let gs = a.gStride
    for r in 0..<a.lines {
        let off = r &* a.inputPitch
        let p0 = x0 + off, p1 = x1 + off, p2 = x2 + off, p3 = x3 + off
        let p4 = x4 + off, p5 = x5 + off, p6 = x6 + off, p7 = x7 + off
        for i in 0..<a.length {
            let g0 = loadVector(gp)
            a0 = a0.plusProduct(g0, SIMD8(repeating: p0[i])); a1 = a1.plusProduct(g0, SIMD8(repeating: p1[i]))
            a2 = a2.plusProduct(g0, SIMD8(repeating: p2[i])); a3 = a3.plusProduct(g0, SIMD8(repeating: p3[i]))
            a4 = a4.plusProduct(g0, SIMD8(repeating: p4[i])); a5 = a5.plusProduct(g0, SIMD8(repeating: p5[i]))
            a6 = a6.plusProduct(g0, SIMD8(repeating: p6[i])); a7 = a7.plusProduct(g0, SIMD8(repeating: p7[i]))
            gp += gs
        }
    }
    let t = a.sums
    addOrStore(a0, t, a.addToSums); addOrStore(a1, t + gs, a.addToSums); addOrStore(a2, t + 2 &* gs, a.addToSums); addOrStore(a3, t + 3 &* gs, a.addToSums)
    addOrStore(a4, t + 4 &* gs, a.addToSums); addOrStore(a5, t + 5 &* gs, a.addToSums); addOrStore(a6, t + 6 &* gs, a.addToSums); addOrStore(a7, t + 7 &* gs, a.addToSums)
}

/// v (+)= to p (8 floats).
@inline(__always)
func addOrStore(_ v: SIMD8<Float>, _ p: UnsafeMutablePointer<Float>, _ accumulate: Bool) {
    storeVector(accumulate ? loadVector(p) + v : v, p)
}

/// The 8 x 8 block at p (rows `stride` apart) transposed: column j as a vector. Unpacks,
/// in-lane shuffles and half swaps (24 shuffles), written as element moves the compiler
/// folds into them.
@inline(__always)
func transpose8x8(_ p: UnsafePointer<Float>, _ stride: Int)
    -> (SIMD8<Float>, SIMD8<Float>, SIMD8<Float>, SIMD8<Float>, SIMD8<Float>, SIMD8<Float>, SIMD8<Float>, SIMD8<Float>) {
    transpose8x8(loadVector(p), loadVector(p + stride), loadVector(p + 2 &* stride), loadVector(p + 3 &* stride),
                 loadVector(p + 4 &* stride), loadVector(p + 5 &* stride),
                 loadVector(p + 6 &* stride), loadVector(p + 7 &* stride))
}

/// Rows r0...r7 transposed: column j as a vector.
@inline(__always)
func transpose8x8(_ r0: SIMD8<Float>, _ r1: SIMD8<Float>, _ r2: SIMD8<Float>, _ r3: SIMD8<Float>,
                  _ r4: SIMD8<Float>, _ r5: SIMD8<Float>, _ r6: SIMD8<Float>, _ r7: SIMD8<Float>)
    -> (SIMD8<Float>, SIMD8<Float>, SIMD8<Float>, SIMD8<Float>, SIMD8<Float>, SIMD8<Float>, SIMD8<Float>, SIMD8<Float>) {
    @inline(__always) func lo(_ a: SIMD8<Float>, _ b: SIMD8<Float>) -> SIMD8<Float> {
        SIMD8(a[0], b[0], a[1], b[1], a[4], b[4], a[5], b[5])
    }
    @inline(__always) func hi(_ a: SIMD8<Float>, _ b: SIMD8<Float>) -> SIMD8<Float> {
        SIMD8(a[2], b[2], a[3], b[3], a[6], b[6], a[7], b[7])
    }
    @inline(__always) func pairsLo(_ a: SIMD8<Float>, _ b: SIMD8<Float>) -> SIMD8<Float> {
        SIMD8(a[0], a[1], b[0], b[1], a[4], a[5], b[4], b[5])
    }
    @inline(__always) func pairsHi(_ a: SIMD8<Float>, _ b: SIMD8<Float>) -> SIMD8<Float> {
        SIMD8(a[2], a[3], b[2], b[3], a[6], a[7], b[6], b[7])
    }
    let t0 = lo(r0, r1), t1 = hi(r0, r1), t2 = lo(r2, r3), t3 = hi(r2, r3)
    let t4 = lo(r4, r5), t5 = hi(r4, r5), t6 = lo(r6, r7), t7 = hi(r6, r7)
    // s0 = [r0_0 r1_0 r2_0 r3_0 | r0_4 r1_4 r2_4 r3_4], s1 columns 1 and 5, ...
    let s0 = pairsLo(t0, t2), s1 = pairsHi(t0, t2), s2 = pairsLo(t1, t3), s3 = pairsHi(t1, t3)
    let s4 = pairsLo(t4, t6), s5 = pairsHi(t4, t6), s6 = pairsLo(t5, t7), s7 = pairsHi(t5, t7)
    return (SIMD8(lowHalf: s0.lowHalf, highHalf: s4.lowHalf), SIMD8(lowHalf: s1.lowHalf, highHalf: s5.lowHalf),
            SIMD8(lowHalf: s2.lowHalf, highHalf: s6.lowHalf), SIMD8(lowHalf: s3.lowHalf, highHalf: s7.lowHalf),
            SIMD8(lowHalf: s0.highHalf, highHalf: s4.highHalf), SIMD8(lowHalf: s1.highHalf, highHalf: s5.highHalf),
            SIMD8(lowHalf: s2.highHalf, highHalf: s6.highHalf), SIMD8(lowHalf: s3.highHalf, highHalf: s7.highHalf))
}

extension SIMD8 where Scalar == Float {
    /// self + a * b: one fused multiply-add per lane on targets with FMA (`FNL_HASWELL`);
    /// elsewhere a multiply and an add (the fused form would call libm once per lane there).
    @inline(__always)
    fileprivate func plusProduct(_ a: SIMD8<Float>, _ b: SIMD8<Float>) -> SIMD8<Float> {
        #if FNL_HASWELL
        return addingProduct(a, b)
        #else
        return self + a * b
        #endif
    }
}
