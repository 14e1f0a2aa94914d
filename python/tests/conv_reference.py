"""NumPy float64 reference of 2-D convolution (direct, not lowered) and its gradients.

Explicit loops over the kernel offsets (a, b), vectorized over batch and channels:

    y[n, o, i, j] = bias[o] + sum_{c, a, b} K[o, c, a, b] xp[n, c, a*dh + i*sh, b*dw + j*sw]

with xp the zero-padded input. Used as the oracle of fnl.conv2d / fnl.lowrank_conv2d.
"""
from __future__ import annotations

import numpy as np


def pair(v):
    return (int(v), int(v)) if np.isscalar(v) else (int(v[0]), int(v[1]))


def out_size(size, k, s, p, d):
    return (size + 2 * p - d * (k - 1) - 1) // s + 1


def _window(xp, a, b, oh, ow, stride, dilation):
    (sh, sw), (dh, dw) = stride, dilation
    return xp[:, :, a * dh : a * dh + sh * (oh - 1) + 1 : sh, b * dw : b * dw + sw * (ow - 1) + 1 : sw]


def conv2d(x, K, stride=1, padding=0, dilation=1, bias=None):
    x = np.asarray(x, np.float64)
    K = np.asarray(K, np.float64)
    stride, padding, dilation = pair(stride), pair(padding), pair(dilation)
    n, c, h, w = x.shape
    o, _, kh, kw = K.shape
    oh = out_size(h, kh, stride[0], padding[0], dilation[0])
    ow = out_size(w, kw, stride[1], padding[1], dilation[1])
    xp = np.pad(x, ((0, 0), (0, 0), (padding[0],) * 2, (padding[1],) * 2))
    y = np.zeros((n, o, oh, ow))
    for a in range(kh):
        for b in range(kw):
            win = _window(xp, a, b, oh, ow, stride, dilation)
            y += np.einsum("nchw,oc->nohw", win, K[:, :, a, b])
    if bias is not None:
        y += np.asarray(bias, np.float64)[None, :, None, None]
    return y


def conv2d_backward(grad_y, x, K, stride=1, padding=0, dilation=1):
    """(dx, dK, dbias) in float64."""
    g = np.asarray(grad_y, np.float64)
    x = np.asarray(x, np.float64)
    K = np.asarray(K, np.float64)
    stride, padding, dilation = pair(stride), pair(padding), pair(dilation)
    n, c, h, w = x.shape
    o, _, kh, kw = K.shape
    oh, ow = g.shape[2:]
    xp = np.pad(x, ((0, 0), (0, 0), (padding[0],) * 2, (padding[1],) * 2))
    dxp = np.zeros_like(xp)
    dK = np.zeros_like(K)
    (sh, sw), (dh, dw) = stride, dilation
    for a in range(kh):
        for b in range(kw):
            win = _window(xp, a, b, oh, ow, stride, dilation)
            dK[:, :, a, b] = np.einsum("nohw,nchw->oc", g, win)
            dxp[:, :, a * dh : a * dh + sh * (oh - 1) + 1 : sh, b * dw : b * dw + sw * (ow - 1) + 1 : sw] += np.einsum(
                "nohw,oc->nchw", g, K[:, :, a, b]
            )
    dx = dxp[:, :, padding[0] : padding[0] + h, padding[1] : padding[1] + w]
    return dx, dK, g.sum(axis=(0, 2, 3))


def conv_to_matrix(K):
    o, c, kh, kw = K.shape
    return K.transpose(0, 2, 1, 3).reshape(o * kh, c * kw)


def matrix_to_conv(W, o, c, kh, kw):
    return W.reshape(o, kh, c, kw).transpose(0, 2, 1, 3)


def chain(mats):
    out = mats[0]
    for m in mats[1:]:
        out = out @ m
    return out


def lowrank_kernel(U, V, middle, c_out, c_in, kh, kw):
    mats = [np.asarray(U, np.float64)] + [np.asarray(m, np.float64) for m in (middle or [])]
    W = chain(mats) @ np.asarray(V, np.float64).T
    return matrix_to_conv(W, c_out, c_in, kh, kw)


def lowrank_conv2d(x, U, V, kernel_size, stride=1, padding=0, dilation=1, bias=None, middle=None):
    kh, kw = pair(kernel_size)
    c_out, c_in = np.shape(U)[0] // kh, np.shape(x)[1]
    K = lowrank_kernel(U, V, middle, c_out, c_in, kh, kw)
    return conv2d(x, K, stride, padding, dilation, bias)


def lowrank_conv2d_backward(grad_y, x, U, V, kernel_size, stride=1, padding=0, dilation=1, middle=None):
    """dict(x, U, V, bias, middle) in float64 via dW = conv_to_matrix(dK) and the chain rule."""
    kh, kw = pair(kernel_size)
    c_out, c_in = np.shape(U)[0] // kh, np.shape(x)[1]
    K = lowrank_kernel(U, V, middle, c_out, c_in, kh, kw)
    dx, dK, db = conv2d_backward(grad_y, x, K, stride, padding, dilation)
    dW = conv_to_matrix(dK)
    factors = [np.asarray(U, np.float64)] + [np.asarray(m, np.float64) for m in (middle or [])]
    factors.append(np.asarray(V, np.float64).T)
    grads = []
    for j in range(len(factors)):
        left = chain(factors[:j]) if j > 0 else np.eye(factors[0].shape[0])
        right = chain(factors[j + 1 :]) if j < len(factors) - 1 else np.eye(factors[-1].shape[1])
        grads.append(left.T @ dW @ right.T)
    return {"x": dx, "U": grads[0], "V": grads[-1].T, "bias": db, "middle": grads[1:-1]}
