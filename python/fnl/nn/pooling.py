"""Pooling layers on NCHW inputs (PyTorch semantics), computed by the engine.

Output size per axis: floor((h + 2 p - k) / s) + 1, or with ceil_mode the ceiling, minus one
when the last window would start in the right padding. Padding is at most kernel / 2;
max pooling never picks padding, average pooling divides by the window clipped to the padded
input (count_include_pad=True) or by the number of input values it covers.
"""
from __future__ import annotations

import numpy as np

from .. import _native
from .conv import _pair
from .module import Module, as_float32


def _out(size: int, k: int, s: int, p: int, ceil: bool) -> int:
    span = size + 2 * p - k
    o = (-(-span // s) if ceil else span // s) + 1
    if ceil and (o - 1) * s >= size + p:
        o -= 1
    return o


class _Pool2d(Module):
    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode: bool = False):
        super().__init__()
        name = type(self).__name__
        self.kernel_size = _pair(kernel_size, "kernel_size", name, 1)
        self.stride = self.kernel_size if stride is None else _pair(stride, "stride", name, 1)
        self.padding = _pair(padding, "padding", name, 0)
        if any(2 * p > k for p, k in zip(self.padding, self.kernel_size)):
            raise ValueError(f"[fnl.nn.{name}] padding must be at most kernel_size / 2, got padding {self.padding} "
                             f"for kernel {self.kernel_size}")
        self.ceil_mode = bool(ceil_mode)

    def _geometry(self, x):
        name = type(self).__name__
        x = as_float32(x, f"fnl.nn.{name}", (4,))
        h, w = x.shape[2:]
        (kh, kw), (sh, sw), (ph, pw) = self.kernel_size, self.stride, self.padding
        oh, ow = _out(h, kh, sh, ph, self.ceil_mode), _out(w, kw, sw, pw, self.ceil_mode)
        if oh < 1 or ow < 1:
            raise ValueError(f"[fnl.nn.{name}] input of shape {x.shape} is smaller than the kernel {self.kernel_size} "
                             f"(with padding {self.padding})")
        return x, (kh, kw, sh, sw, ph, pw, oh, ow)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, ceil_mode={self.ceil_mode}"


class MaxPool2d(_Pool2d):
    def forward(self, x):
        x, g = self._geometry(x)
        y, idx = _native.maxpool2d_forward(x, *g)
        self._save(idx, x.shape[2], x.shape[3])
        return y

    def backward(self, grad):
        idx, h, w = self._take("MaxPool2d")
        return _native.maxpool2d_backward(as_float32(grad, "fnl.nn.MaxPool2d.backward"), idx, h, w)


class AvgPool2d(_Pool2d):
    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode: bool = False, count_include_pad: bool = True):
        super().__init__(kernel_size, stride, padding, ceil_mode)
        self.count_include_pad = bool(count_include_pad)

    def forward(self, x):
        x, g = self._geometry(x)
        y = _native.avgpool2d_forward(x, *g, self.count_include_pad)
        self._save(x.shape[2], x.shape[3], g)
        return y

    def backward(self, grad):
        h, w, g = self._take("AvgPool2d")
        return _native.avgpool2d_backward(as_float32(grad, "fnl.nn.AvgPool2d.backward"), h, w, *g[:6],
                                          self.count_include_pad)


class GlobalAvgPool2d(Module):
    """(N, C, H, W) -> (N, C): the mean over each plane (reduced in float64 blocks)."""

    def forward(self, x):
        x = as_float32(x, "fnl.nn.GlobalAvgPool2d", (4,))
        h, w = x.shape[2:]
        y = _native.avgpool2d_forward(x, h, w, 1, 1, 0, 0, 1, 1, True)
        self._save(h, w)
        return y.reshape(x.shape[0], x.shape[1])

    def backward(self, grad):
        h, w = self._take("GlobalAvgPool2d")
        g = as_float32(grad, "fnl.nn.GlobalAvgPool2d.backward", (2,))
        return _native.avgpool2d_backward(g.reshape(g.shape + (1, 1)), h, w, h, w, 1, 1, 0, 0, True)
