"""2-d convolution layers (NCHW, groups = 1) on the engine's conv kernels (fnl.conv).

    Conv2d:            y = conv2d(x, K) + b,                       K: (c_out, c_in, kh, kw)
    FactorizedConv2d:  the same with K = matrix_to_conv(U M_1 ... M_d V^T), U: (c_out*kh, r),
                       V: (c_in*kw, r), run by the fused low-rank kernel as a 1 x kw conv
                       (c_in -> r) followed by a kh x 1 conv (r -> c_out), never forming K.
"""
from __future__ import annotations

import threading
from typing import Tuple, Union

import numpy as np

from . import init as _init
from .factorized import FactorizedMixin
from .module import Module, as_float32
from .parameter import Parameter

from .. import conv as _conv

IntPair = Union[int, Tuple[int, int]]

_local = threading.local()


def _workspace() -> "_conv.ConvWorkspace":
    """The convolution workspace of the calling thread, shared by every conv layer: it grows
    to the largest layer's need once, after which training steps allocate no lowering
    scratch. One per thread, as a workspace must not serve two calls at the same time."""
    ws = getattr(_local, "workspace", None)
    if ws is None:
        ws = _local.workspace = _conv.ConvWorkspace()
    return ws


def _pair(v, name: str, where: str, lo: int) -> Tuple[int, int]:
    vals = tuple(v) if isinstance(v, (tuple, list)) else (v, v)
    if len(vals) != 2 or any(isinstance(a, bool) or not isinstance(a, (int, np.integer)) or a < lo for a in vals):
        raise ValueError(f"[fnl.nn.{where}] {name} must be an int >= {lo} or a pair of them, got {v!r}")
    return int(vals[0]), int(vals[1])


class _ConvBase(Module):
    def _setup(self, where, in_channels, out_channels, kernel_size, stride, padding, dilation):
        for name, d in (("in_channels", in_channels), ("out_channels", out_channels)):
            if isinstance(d, bool) or not isinstance(d, (int, np.integer)) or d < 1:
                raise ValueError(f"[fnl.nn.{where}] {name} must be an int >= 1, got {d!r}")
        self.in_channels, self.out_channels = int(in_channels), int(out_channels)
        self.kernel_size = _pair(kernel_size, "kernel_size", where, 1)
        self.stride = _pair(stride, "stride", where, 1)
        self.padding = _pair(padding, "padding", where, 0)
        self.dilation = _pair(dilation, "dilation", where, 1)

    def _input(self, x, where):
        x = as_float32(x, f"fnl.nn.{where}", (4,))
        if x.shape[1] != self.in_channels:
            raise ValueError(f"[fnl.nn.{where}] input must have {self.in_channels} channels (N, C, H, W), got shape {x.shape}")
        return x

    def _geometry_repr(self) -> str:
        s = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}"
        if self.padding != (0, 0):
            s += f", padding={self.padding}"
        if self.dilation != (1, 1):
            s += f", dilation={self.dilation}"
        return s

    def output_shape(self, h: int, w: int) -> Tuple[int, int]:
        (kh, kw), (sh, sw), (ph, pw), (dh, dw) = self.kernel_size, self.stride, self.padding, self.dilation
        return (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1, (w + 2 * pw - dw * (kw - 1) - 1) // sw + 1


class Conv2d(_ConvBase):
    """Dense 2-d convolution with a Kaiming-normal kernel (std sqrt(2 / (c_in kh kw))), b = 0."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: IntPair, stride: IntPair = 1,
                 padding: IntPair = 0, dilation: IntPair = 1, bias: bool = True, seed=None):
        super().__init__()
        self._setup("Conv2d", in_channels, out_channels, kernel_size, stride, padding, dilation)
        kh, kw = self.kernel_size
        gen = _init.rng(seed)
        fan_in = self.in_channels * kh * kw
        self.weight = Parameter(_init.kaiming_normal((self.out_channels, self.in_channels, kh, kw), fan_in, gen), "weight")
        self.bias = Parameter(np.zeros(self.out_channels, np.float32), "bias") if bias else None

    def _bias(self):
        return None if self.bias is None else self.bias.data

    def forward(self, x):
        x = self._input(x, "Conv2d")
        y = _conv.conv2d(x, self.weight.data, self.stride, self.padding, self.dilation, self._bias(),
                         workspace=_workspace())
        self._save(x)
        return y

    def backward(self, grad):
        (x,) = self._take("Conv2d")
        g = _conv.conv2d_backward(as_float32(grad, "fnl.nn.Conv2d.backward", (4,)), x, self.weight.data,
                                  self.stride, self.padding, self.dilation, self._bias(), _workspace())
        self.weight.grad += g["K"]
        if self.bias is not None:
            self.bias.grad += g["bias"]
        return g["x"]

    def extra_repr(self) -> str:
        return f"{self._geometry_repr()}, bias={self.bias is not None}"


class FactorizedConv2d(FactorizedMixin, _ConvBase):
    """Rank-r factorized 2-d convolution (U M_1 ... M_d V^T in the (c_out*kh) x (c_in*kw)
    layout of fnl.conv_to_matrix). Independent Kaiming-normal factors by default: V with std
    sqrt(2 / (c_in kw)) (the 1 x kw conv), U with std sqrt(2 / (r kh)) (the kh x 1 conv);
    inner matrices start as identities. ``from_dense`` gives spectral initialization."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: IntPair, rank: int, stride: IntPair = 1,
                 padding: IntPair = 0, dilation: IntPair = 1, bias: bool = True, depth: int = 0, seed=None):
        super().__init__()
        self._setup("FactorizedConv2d", in_channels, out_channels, kernel_size, stride, padding, dilation)
        if isinstance(rank, bool) or not isinstance(rank, (int, np.integer)) or rank < 1:
            raise ValueError(f"[fnl.nn.FactorizedConv2d] rank must be an int >= 1, got {rank!r}")
        if isinstance(depth, bool) or not isinstance(depth, (int, np.integer)) or not 0 <= depth <= 64:
            raise ValueError(f"[fnl.nn.FactorizedConv2d] depth must be an int in 0..64, got {depth!r}")
        kh, kw = self.kernel_size
        self._rows, self._cols, self._kind = self.out_channels * kh, self.in_channels * kw, "conv"
        self._dense_shape = (self.out_channels, self.in_channels, kh, kw)
        gen = _init.rng(seed)
        r = int(rank)
        self.U = Parameter(_init.kaiming_normal((self._rows, r), r * kh, gen), "U")
        self.V = Parameter(_init.kaiming_normal((self._cols, r), self.in_channels * kw, gen), "V")
        self.middle = [Parameter(np.eye(r, dtype=np.float32), f"middle.{j}") for j in range(int(depth))]
        self.bias = Parameter(np.zeros(self.out_channels, np.float32), "bias") if bias else None

    @classmethod
    def from_dense(cls, layer: Conv2d, rank: int, depth: int = 0, init: str = "spectral", seed=None) -> "FactorizedConv2d":
        """Factorizes a Conv2d: "spectral" takes the rank-r truncated SVD of the kernel's
        (c_out*kh) x (c_in*kw) matrix (exact when rank >= min of those), "independent" draws
        fresh Kaiming factors. Geometry and bias are copied; inner matrices are identities."""
        if not isinstance(layer, Conv2d):
            raise TypeError(f"[fnl.nn.FactorizedConv2d.from_dense] layer must be a Conv2d, got {type(layer).__name__}")
        gen = _init.rng(seed)
        new = cls(layer.in_channels, layer.out_channels, layer.kernel_size, rank, layer.stride, layer.padding,
                  layer.dilation, layer.bias is not None, depth, seed=gen)
        if init == "spectral":
            from .. import functional as F

            U, V = F.spectral_init_conv(layer.weight.data, int(rank))
            U, V = _init.spread_factors(U, V, min(new._rows, new._cols), gen)
            new.U.assign(U)
            new.V.assign(V)
        elif init != "independent":
            raise ValueError(f"[fnl.nn.FactorizedConv2d.from_dense] init must be 'spectral' or 'independent', got {init!r}")
        if layer.bias is not None:
            new.bias.assign(layer.bias.data)
        return new

    def dense_kernel(self) -> np.ndarray:
        from .. import functional as F

        kh, kw = self.kernel_size
        return F.matrix_to_conv(self.dense_matrix(), self.out_channels, self.in_channels, kh, kw)

    def to_dense(self) -> Conv2d:
        """The equivalent Conv2d (kernel = matrix_to_conv(U M_1 ... M_d V^T), same bias)."""
        out = Conv2d(self.in_channels, self.out_channels, self.kernel_size, self.stride, self.padding, self.dilation,
                     self.bias is not None, seed=0)
        out.weight.assign(self.dense_kernel())
        if self.bias is not None:
            out.bias.assign(self.bias.data)
        out.training = self.training
        return out

    def _bias(self):
        return None if self.bias is None else self.bias.data

    def forward(self, x):
        x = self._input(x, "FactorizedConv2d")
        args = (x, self.U.data, self.V.data, self.kernel_size, self.stride, self.padding, self.dilation,
                self._bias(), self._middle_data())
        if self._keep():
            # Keep the 1 x kw stage's output z (r, N, H, W_out): backward then skips recomputing it.
            y, z = _conv.lowrank_conv2d_forward(*args, workspace=_workspace())
            self._saved = (x, z)
        else:
            y = _conv.lowrank_conv2d(*args, workspace=_workspace())
            self._saved = None
        return y

    def backward(self, grad):
        x, z = self._take("FactorizedConv2d")
        g = _conv.lowrank_conv2d_backward(as_float32(grad, "fnl.nn.FactorizedConv2d.backward", (4,)), x,
                                          self.U.data, self.V.data, self.kernel_size, self.stride, self.padding,
                                          self.dilation, self._bias(), self._middle_data(), _workspace(),
                                          intermediate=z)
        self.U.grad += g["U"]
        self.V.grad += g["V"]
        for m, gm in zip(self.middle, g.get("middle") or []):
            m.grad += gm
        if self.bias is not None:
            self.bias.grad += g["bias"]
        return g["x"]

    def extra_repr(self) -> str:
        return f"{self._geometry_repr()}, {self._factor_repr()}, bias={self.bias is not None}"
