"""TEMPORARY NumPy float32 stand-in for ``fnl.conv`` (issue 3), used by fnl.nn only while
python/fnl/conv.py is missing from the branch. Same signatures and results as the engine's
fused kernels, but slow (im2col through NumPy). The coordinator deletes this file when the
conv branch is merged.
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from .functional import conv_to_matrix, matrix_to_conv


def _pair(v, name):
    if isinstance(v, (tuple, list)):
        if len(v) != 2:
            raise ValueError(f"[fnl.conv2d] {name} must be an int or a pair, got {v!r}")
        a, b = v
    else:
        a = b = v
    return int(a), int(b)


def _cols(x, kh, kw, stride, padding, dilation):
    sh, sw = stride
    ph, pw = padding
    dh, dw = dilation
    n, c, h, w = x.shape
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    oh = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    ow = (w + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    if oh < 1 or ow < 1:
        raise ValueError(f"[fnl.conv2d] the kernel does not fit the padded input of shape {x.shape}")
    s = xp.strides
    cols = np.lib.stride_tricks.as_strided(
        xp, (n, c, kh, kw, oh, ow), (s[0], s[1], s[2] * dh, s[3] * dw, s[2] * sh, s[3] * sw), writeable=False)
    return cols, oh, ow


def conv2d(x, K, stride=1, padding=0, dilation=1, bias=None):
    x = np.ascontiguousarray(x, dtype=np.float32)
    K = np.ascontiguousarray(K, dtype=np.float32)
    st, pd, dl = _pair(stride, "stride"), _pair(padding, "padding"), _pair(dilation, "dilation")
    cols, oh, ow = _cols(x, K.shape[2], K.shape[3], st, pd, dl)
    y = np.tensordot(cols, K, axes=([1, 2, 3], [1, 2, 3]))  # (n, oh, ow, c_out)
    y = np.ascontiguousarray(y.transpose(0, 3, 1, 2))
    if bias is not None:
        y += np.asarray(bias, np.float32)[None, :, None, None]
    return y


def conv2d_backward(grad_y, x, K, stride=1, padding=0, dilation=1, bias=None, workspace=None):
    x = np.ascontiguousarray(x, dtype=np.float32)
    K = np.ascontiguousarray(K, dtype=np.float32)
    g = np.ascontiguousarray(grad_y, dtype=np.float32)
    st, pd, dl = _pair(stride, "stride"), _pair(padding, "padding"), _pair(dilation, "dilation")
    kh, kw = K.shape[2], K.shape[3]
    cols, oh, ow = _cols(x, kh, kw, st, pd, dl)
    dK = np.tensordot(g, cols, axes=([0, 2, 3], [0, 4, 5])).astype(np.float32)  # (c_out, c, kh, kw)
    dcols = np.tensordot(K, g, axes=([0], [1]))  # (c, kh, kw, n, oh, ow)
    n, c, h, w = x.shape
    (sh, sw), (ph, pw), (dh, dw) = st, pd, dl
    dxp = np.zeros((n, c, h + 2 * ph, w + 2 * pw), np.float32)
    for i in range(kh):
        for j in range(kw):
            dxp[:, :, i * dh: i * dh + sh * (oh - 1) + 1: sh, j * dw: j * dw + sw * (ow - 1) + 1: sw] += \
                dcols[:, i, j].transpose(1, 0, 2, 3)
    dx = np.ascontiguousarray(dxp[:, :, ph: ph + h, pw: pw + w])
    db = g.sum(axis=(0, 2, 3), dtype=np.float64).astype(np.float32) if bias is not None else None
    return {"x": dx, "K": dK, "bias": db}


def _compose(U, V, middle):
    M = None
    for Mj in middle or []:
        M = Mj if M is None else M @ Mj
    return U @ V.T if M is None else U @ M @ V.T


def _kernel(U, V, kernel_size, c_out, c_in, middle):
    kh, kw = _pair(kernel_size, "kernel_size")
    W = _compose(np.asarray(U, np.float32), np.asarray(V, np.float32), [np.asarray(m, np.float32) for m in middle or []])
    return matrix_to_conv(W, c_out, c_in, kh, kw), kh, kw


def lowrank_conv2d(x, U, V, kernel_size, stride=1, padding=0, dilation=1, bias=None, middle=None):
    kh, kw = _pair(kernel_size, "kernel_size")
    c_out, c_in = np.shape(U)[0] // kh, np.shape(V)[0] // kw
    K, _, _ = _kernel(U, V, kernel_size, c_out, c_in, middle)
    return conv2d(x, K, stride, padding, dilation, bias)


def lowrank_conv2d_backward(grad_y, x, U, V, kernel_size, stride=1, padding=0, dilation=1, bias=None,
                            middle=None, workspace=None):
    kh, kw = _pair(kernel_size, "kernel_size")
    U = np.asarray(U, np.float32)
    V = np.asarray(V, np.float32)
    mids = [np.asarray(m, np.float32) for m in middle or []]
    c_out, c_in = U.shape[0] // kh, V.shape[0] // kw
    K, _, _ = _kernel(U, V, kernel_size, c_out, c_in, mids)
    g = conv2d_backward(grad_y, x, K, stride, padding, dilation, bias)
    dW = conv_to_matrix(g["K"])  # (c_out*kh, c_in*kw)
    # W = U M_1 .. M_d V^T: dU = dW V M^T, dV = dW^T U M, dM_j = (U M_<j)^T dW V (M_>j)^T
    d = len(mids)
    prefix = [np.eye(U.shape[1], dtype=np.float32)]
    for Mj in mids:
        prefix.append(prefix[-1] @ Mj)
    suffix = [np.eye(V.shape[1], dtype=np.float32)]
    for Mj in reversed(mids):
        suffix.append(Mj @ suffix[-1])
    suffix = suffix[::-1]  # suffix[j] = M_{j+1} .. M_d
    M = prefix[-1]
    dU = dW @ V @ M.T
    dV = dW.T @ U @ M
    dmid = [(U @ prefix[j]).T @ dW @ V @ suffix[j + 1].T for j in range(d)]
    return {"x": g["x"], "U": dU.astype(np.float32), "V": dV.astype(np.float32), "bias": g["bias"],
            "middle": [m.astype(np.float32) for m in dmid]}
