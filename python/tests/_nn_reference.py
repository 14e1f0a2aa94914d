"""Float64 NumPy references of the fnl.nn layers and finite-difference helpers (tests only)."""
import numpy as np

import fnl
import fnl.nn as nn


def conv2d64(x, K, stride=(1, 1), padding=(0, 0), dilation=(1, 1), bias=None):
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    n, c, h, w = x.shape
    co, ci, kh, kw = K.shape
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    oh = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    ow = (w + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    y = np.zeros((n, co, oh, ow))
    for i in range(kh):
        for j in range(kw):
            patch = xp[:, :, i * dh: i * dh + sh * (oh - 1) + 1: sh, j * dw: j * dw + sw * (ow - 1) + 1: sw]
            y += np.einsum("nchw,oc->nohw", patch, K[:, :, i, j])
    if bias is not None:
        y += bias[None, :, None, None]
    return y


def compose64(U, V, middle=()):
    M = np.eye(U.shape[1])
    for m in middle:
        M = M @ m
    return U @ M @ V.T


def kernel64(W, co, ci, kh, kw):
    return W.reshape(co, kh, ci, kw).transpose(0, 2, 1, 3)


def bn64(x, gamma, beta, eps=1e-5, mean=None, var=None):
    axes = (0,) + tuple(range(2, x.ndim))
    shape = (1, -1) + (1,) * (x.ndim - 2)
    if mean is None:
        mean = x.mean(axis=axes)
        var = x.var(axis=axes)
    return (x - mean.reshape(shape)) / np.sqrt(var.reshape(shape) + eps) * gamma.reshape(shape) + beta.reshape(shape)


def pool64(x, k, s, p, mode, oh=None, ow=None, include_pad=True):
    n, c, h, w = x.shape
    (kh, kw), (sh, sw), (ph, pw) = k, s, p
    oh = oh or (h + 2 * ph - kh) // sh + 1
    ow = ow or (w + 2 * pw - kw) // sw + 1
    y = np.zeros((n, c, oh, ow))
    for i in range(oh):
        for j in range(ow):
            y0, x0 = i * sh - ph, j * sw - pw
            ya, yb, xa, xb = max(0, y0), min(h, y0 + kh), max(0, x0), min(w, x0 + kw)
            win = x[:, :, ya:yb, xa:xb]
            if mode == "max":
                y[:, :, i, j] = win.max(axis=(2, 3))
            else:
                div = (min(y0 + kh, h + ph) - y0) * (min(x0 + kw, w + pw) - x0) if include_pad else (yb - ya) * (xb - xa)
                y[:, :, i, j] = win.sum(axis=(2, 3)) / div
    return y


def cross_entropy64(z, labels, eps=0.0):
    n, k = z.shape
    zs = z - z.max(axis=1, keepdims=True)
    lse = np.log(np.exp(zs).sum(axis=1))
    q = np.full((n, k), eps / k)
    q[np.arange(n), labels] += 1 - eps
    return float(np.mean(lse - (q * zs).sum(axis=1)))


def numgrad(f, x, eps=1e-6):
    """Central differences of the scalar f at the float64 array x (modified in place, restored)."""
    g = np.zeros_like(x)
    flat, gf = x.reshape(-1), g.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + eps
        fp = f()
        flat[i] = old - eps
        fm = f()
        flat[i] = old
        gf[i] = (fp - fm) / (2 * eps)
    return g


def reference(module, x, params=None):
    """Float64 forward of an fnl.nn module tree, in training semantics when module.training
    (batch statistics), reading parameters from ``params`` (name -> float64) when given."""
    P = params if params is not None else {n: p.data.astype(np.float64) for n, p in module.named_parameters()}
    return _ref(module, x, P, "")


def _p(P, prefix, name):
    return P.get(prefix + name)


def _ref(m, x, P, pre):
    if isinstance(m, nn.Sequential):
        for name, child in m.named_children():
            x = _ref(child, x, P, f"{pre}{name}.")
        return x
    if isinstance(m, nn.BasicBlock):
        out = _ref(m.bn2, _ref(m.conv2, _ref(m.relu1, _ref(m.bn1, _ref(m.conv1, x, P, pre + "conv1."), P, pre + "bn1."),
                                            P, pre), P, pre + "conv2."), P, pre + "bn2.")
        sc = x if m.shortcut is None else _ref(m.shortcut, x, P, pre + "shortcut.")
        return np.maximum(out + sc, 0)
    if isinstance(m, nn.PadShortcut):
        sub = x[:, :, ::m.stride, ::m.stride]
        y = np.zeros((x.shape[0], m.planes) + sub.shape[2:])
        y[:, m._before:m._before + m.in_planes] = sub
        return y
    if isinstance(m, nn.Conv2d):
        return conv2d64(x, P[pre + "weight"], m.stride, m.padding, m.dilation, _p(P, pre, "bias"))
    if isinstance(m, nn.FactorizedConv2d):
        mids = [P[f"{pre}middle.{j}"] for j in range(m.depth)]
        W = compose64(P[pre + "U"], P[pre + "V"], mids)
        K = kernel64(W, m.out_channels, m.in_channels, *m.kernel_size)
        return conv2d64(x, K, m.stride, m.padding, m.dilation, _p(P, pre, "bias"))
    if isinstance(m, nn.Linear):
        y = x @ P[pre + "weight"].T
        return y + P[pre + "bias"] if m.bias is not None else y
    if isinstance(m, nn.FactorizedLinear):
        mids = [P[f"{pre}middle.{j}"] for j in range(m.depth)]
        y = x @ compose64(P[pre + "U"], P[pre + "V"], mids).T
        return y + P[pre + "bias"] if m.bias is not None else y
    if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
        if m.training:
            return bn64(x, P[pre + "weight"], P[pre + "bias"], m.eps)
        return bn64(x, P[pre + "weight"], P[pre + "bias"], m.eps, m.running_mean.astype(np.float64),
                    m.running_var.astype(np.float64))
    if isinstance(m, nn.ReLU):
        return np.maximum(x, 0)
    if isinstance(m, nn.GlobalAvgPool2d):
        return x.mean(axis=(2, 3))
    if isinstance(m, nn.Flatten):
        return x.reshape(x.shape[0], -1)
    if isinstance(m, (nn.MaxPool2d, nn.AvgPool2d)):
        from fnl.nn.pooling import _out

        oh, ow = (_out(x.shape[2 + a], m.kernel_size[a], m.stride[a], m.padding[a], m.ceil_mode) for a in (0, 1))
        if isinstance(m, nn.MaxPool2d):
            return pool64(x, m.kernel_size, m.stride, m.padding, "max", oh, ow)
        return pool64(x, m.kernel_size, m.stride, m.padding, "avg", oh, ow, include_pad=m.count_include_pad)
    raise TypeError(type(m))


def check_module(module, x, atol=2e-4, rtol=2e-3, seed=0, check_forward=True):
    """Forward vs the float64 reference, and backward (dx and every parameter gradient) vs
    central differences of sum(reference(x) * R) for a random R."""
    rng = np.random.default_rng(seed)
    x64 = np.asarray(x, np.float64)
    P = {n: p.data.astype(np.float64) for n, p in module.named_parameters()}
    saved = [(b, getattr(m, b).copy()) for m in module.modules() for b in m._buffers]
    y = module(x.astype(np.float32))
    ref = reference(module, x64, P)
    if check_forward:
        np.testing.assert_allclose(y, ref, atol=atol * max(1, np.abs(ref).max()), rtol=rtol)
    R = rng.standard_normal(ref.shape)
    module.zero_grad()
    dx = module.backward(R.astype(np.float32))
    f = lambda: float(np.sum(reference(module, x64, P) * R))
    num = numgrad(f, x64)
    scale = max(1.0, np.abs(num).max())
    np.testing.assert_allclose(dx, num, atol=atol * scale, rtol=rtol, err_msg="grad x")
    for name, p in module.named_parameters():
        num = numgrad(f, P[name])
        scale = max(1.0, np.abs(num).max())
        np.testing.assert_allclose(p.grad, num, atol=atol * scale, rtol=rtol, err_msg=f"grad {name}")
    return y
