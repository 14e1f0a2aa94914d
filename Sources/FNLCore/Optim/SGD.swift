/// Stochastic gradient descent with momentum and Nesterov momentum, PyTorch's semantics
/// (torch.optim.SGD), with the decay term of `OptimTensors` added to the gradient first:
///
///     d   = g + decay_i * w + fd_i                  (weight decay / FD before momentum)
///     if mu != 0:
///         b = d                                     (first step: the buffer starts as d)
///         b = mu * b + (1 - dampening) * d          (later steps)
///         d = d + mu * b   if nesterov   else   d = b
///     w  -= lr * d
///
/// One fused pass per step: reads g, w, b (and fd), writes w and b.
public enum SGD {
    public struct Hyper {
        public var lr: Float
        public var momentum: Float
        public var dampening: Float
        public var nesterov: Bool
        /// True on the group's first step: the momentum buffer is set to d (its content is ignored).
        public var firstStep: Bool

        public init(lr: Float, momentum: Float = 0, dampening: Float = 0, nesterov: Bool = false, firstStep: Bool = false) {
            self.lr = lr; self.momentum = momentum; self.dampening = dampening
            self.nesterov = nesterov; self.firstStep = firstStep
        }

        func validate() throws {
            try require(lr.isFinite && lr >= 0, "lr must be a finite number >= 0, got \(lr)")
            try require(momentum.isFinite && momentum >= 0, "momentum must be a finite number >= 0, got \(momentum)")
            try require(dampening.isFinite && dampening >= 0 && dampening <= 1,
                        "dampening must be in [0, 1], got \(dampening)")
            try require(!nesterov || (momentum > 0 && dampening == 0),
                        "nesterov requires momentum > 0 and dampening = 0, got momentum=\(momentum), dampening=\(dampening)")
        }
    }

    /// One step over the group. `buffers` (one per tensor, like the parameters) is required
    /// when momentum != 0. Products get Frobenius decay with coefficients `fdLambda`.
    public static func step(_ t: OptimTensors, buffers: [UnsafeMutablePointer<Float>]?,
                            products: [FactorProduct] = [], fdLambda: [Float] = [],
                            workspace: UnsafeMutableBufferPointer<Float>? = nil,
                            _ h: Hyper, checkFinite: Bool = true) throws {
        try h.validate()
        if h.momentum != 0 {
            try require(buffers?.count == t.count, "momentum buffers must be given, one per tensor (\(t.count))")
        }
        let chunks = t.chunks()
        if checkFinite { try t.checkGradientsFinite(chunks) }
        try FactorDecayTerms.with(t, products, lambda: fdLambda, workspace: workspace) { fd in
            let lr = Lanes(repeating: h.lr), mu = Lanes(repeating: h.momentum)
            let keep = Lanes(repeating: 1 - h.dampening)
            let useMomentum = h.momentum != 0, first = h.firstStep, nesterov = h.nesterov
            let bufs = buffers ?? []
            t.run(chunks) { _, c in
                let w = t.params[c.tensor] + c.lo, g = t.grads[c.tensor] + c.lo
                let f = fd[c.tensor].map { $0 + c.lo }
                let lam = Lanes(repeating: t.decay[c.tensor])
                let b = useMomentum ? bufs[c.tensor] + c.lo : w
                if useMomentum && !first && !nesterov {
                    // The common case as branch-free loops (the general loop below tests its
                    // flags at every vector: the whole step was ~1.5x slower).
                    if let f {
                        forEachLanes(c.hi - c.lo) { i, k in
                            let wv = vload(w, i, k)
                            let d = vload(g, i, k) + lam * wv + vload(f, i, k)
                            let bv = mu * vload(b, i, k) + keep * d
                            vstore(bv, b, i, k)
                            vstore(wv - lr * bv, w, i, k)
                        }
                    } else {
                        forEachLanes(c.hi - c.lo) { i, k in
                            let wv = vload(w, i, k)
                            let d = vload(g, i, k) + lam * wv
                            let bv = mu * vload(b, i, k) + keep * d
                            vstore(bv, b, i, k)
                            vstore(wv - lr * bv, w, i, k)
                        }
                    }
                    return
                }
                forEachLanes(c.hi - c.lo) { i, k in
                    let wv = vload(w, i, k)
                    var d = vload(g, i, k) + lam * wv
                    if let f { d += vload(f, i, k) }
                    if useMomentum {
                        let bv = first ? d : mu * vload(b, i, k) + keep * d
                        vstore(bv, b, i, k)
                        d = nesterov ? d + mu * bv : bv
                    }
                    vstore(wv - lr * d, w, i, k)
                }
            }
        }
    }
}
