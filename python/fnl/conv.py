"""2-D convolutions computed by the Swift engine: dense and fused low-rank, forward and backward.

Conventions (as the rest of fnl):
  * x is (N, C_in, H, W) in NCHW layout; array-likes of real numbers are accepted and
    converted to C-contiguous float32 (the engine computes in float32).
  * The convolution is a cross-correlation with zero padding, groups = 1:

        y[n, o, i, j] = bias[o] + sum_{c, a, b} K[o, c, a, b] * x[n, c, i*sh - ph + a*dh, j*sw - pw + b*dw]

    with output size out = (size + 2 pad - dil (k - 1) - 1) // stride + 1 per axis.
    ``stride``, ``padding``, ``dilation`` (and ``kernel_size``) are an int or a pair
    (height, width).
  * A low-rank kernel is given in the matrix layout of :func:`fnl.conv_to_matrix`:
    W = U M_1 ... M_d V^T with U ((c_out*kh) x r_0), M_j (r_{j-1} x r_j), V ((c_in*kw) x r_d),
    and K[o, c, a, b] = W[o*kh + a, c*kw + b].
  * Backward functions take the output gradient ``grad_y`` = dLoss/dy and return the
    gradients of every input as a dict.
  * ``workspace`` (optional): a :class:`ConvWorkspace` reused across calls so that the
    batch-sized temporaries are not allocated per call.
  * Bad input raises TypeError (types, dtypes), ValueError (shapes, options, NaN/inf) or
    MemoryError, with the message starting "[fnl.<function>]". Large inputs (x, grad_y, the
    intermediate) are scanned for NaN/inf only when a result is not finite (every value a
    convolution reads reaches its kernel gradients and y); the error names the argument and
    the first offending flat index. A value no output reads (one a stride skips) changes
    nothing and is not reported.

Execution: the batch is split over the engine's threads (fnl.set_num_threads), each worker
running its own images end to end with single-threaded OpenBLAS and its own partial kernel
gradients, added in worker order afterwards, so results agree across thread counts to float32
rounding. The fused low-rank convolution runs its two stages as direct one-dimensional
convolutions (register-blocked SIMD kernels, no lowering) where both axes have stride 1,
dilation 1 and padding <= kernel - 1 on an engine built for AVX2 + FMA, its 3-tap height stage
by Winograd F(4, 3) (the same kernels multiplying the transformed matrices) when r and C_out
are at least 32; otherwise, and for the dense convolution, each stage is lowered ("im2col")
per chunk of images into a channel-major matrix and multiplied by OpenBLAS sgemm, with
Winograd F(4, 3) or F(2, 3) along the height for 3-tap height kernels of stride 1.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from . import _native
from .functional import _middle

ArrayLike = Union[np.ndarray, Sequence]
IntOrPair = Union[int, Tuple[int, int]]
Middle = Optional[Sequence[ArrayLike]]

_PATHS = {"auto": 0, "fused": 1, "compose": 2, "fused-products": 3}

__all__ = [
    "ConvWorkspace",
    "conv2d",
    "conv2d_backward",
    "lowrank_conv2d",
    "lowrank_conv2d_backward",
    "lowrank_conv2d_forward",
]


class ConvWorkspace:
    """Reusable float32 scratch memory for the convolution functions.

    The engine processes the batch in chunks of images; the lowered ("im2col") matrices of
    a chunk live in this buffer. Pass the same workspace to every call of a layer (forward
    and backward may share one) and it grows once to the largest size needed, after which
    training steps allocate no batch-sized temporaries. Without a workspace each call
    allocates and frees its own. A workspace must not be used by two calls at the same time
    (one per thread).
    """

    __slots__ = ("_buffer",)

    def __init__(self) -> None:
        self._buffer: Optional[np.ndarray] = None

    def _reserve(self, count: int) -> np.ndarray:
        """A float32 buffer of at least ``count`` floats (grown when too small)."""
        count = max(int(count), 1)
        if self._buffer is None or self._buffer.size < count:
            self._buffer = None  # release the old buffer before allocating the new one
            self._buffer = np.empty(count, dtype=np.float32)
        return self._buffer

    @property
    def nbytes(self) -> int:
        """Bytes currently held."""
        return 0 if self._buffer is None else int(self._buffer.nbytes)

    def clear(self) -> None:
        """Releases the buffer (it is allocated again by the next call)."""
        self._buffer = None

    def __repr__(self) -> str:
        return f"ConvWorkspace({self.nbytes / 2**20:.1f} MiB)"


def _pair(fn: str, name: str, value, minimum: int) -> Tuple[int, int]:
    def is_int(v) -> bool:
        return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))

    if is_int(value):
        a = b = int(value)
    elif isinstance(value, (tuple, list)) and len(value) == 2 and all(is_int(v) for v in value):
        a, b = int(value[0]), int(value[1])
    else:
        raise TypeError(f"[fnl.{fn}] {name} must be an int or a pair of ints (height, width), got {value!r}")
    if a < minimum or b < minimum:
        raise ValueError(f"[fnl.{fn}] {name} must be >= {minimum} along both axes, got {value!r}")
    if a > 2**31 - 1 or b > 2**31 - 1:
        raise ValueError(f"[fnl.{fn}] {name} must be < 2**31 along both axes, got {value!r}")
    return a, b


def _options(fn: str, stride, padding, dilation, groups) -> Tuple[int, ...]:
    if isinstance(groups, (bool, np.bool_)) or not isinstance(groups, (int, np.integer)):
        raise TypeError(f"[fnl.{fn}] groups must be the int 1, got {groups!r}")
    if groups != 1:
        raise ValueError(
            f"[fnl.{fn}] groups must be 1: grouped and depthwise convolutions are not supported, got groups={groups}"
        )
    return _pair(fn, "stride", stride, 1) + _pair(fn, "padding", padding, 0) + _pair(fn, "dilation", dilation, 1)


def _workspace(fn: str, workspace):
    if workspace is not None and not isinstance(workspace, ConvWorkspace):
        raise TypeError(f"[fnl.{fn}] workspace must be None or a fnl.ConvWorkspace, got {type(workspace).__name__}")
    return workspace


def _path(fn: str, path: str) -> int:
    if path not in _PATHS:
        raise ValueError(f"[fnl.{fn}] _path must be 'auto', 'fused', 'compose' or 'fused-products', got {path!r}")
    return _PATHS[path]


# ---------------------------------------------------------------------------- dense


def conv2d(
    x: ArrayLike,
    K: ArrayLike,
    stride: IntOrPair = 1,
    padding: IntOrPair = 0,
    dilation: IntOrPair = 1,
    bias: Optional[ArrayLike] = None,
    *,
    groups: int = 1,
    workspace: Optional[ConvWorkspace] = None,
) -> np.ndarray:
    """Dense 2-D convolution y = conv(x, K) + bias.

    x: (N, C_in, H, W); K: (C_out, C_in, kh, kw); bias: None or (C_out,). Returns y
    (N, C_out, H_out, W_out). Computed by lowering chunks of the batch (im2col) into one
    matrix product each (OpenBLAS sgemm), the batch split over the engine's threads. For
    kh = 3 with height stride and dilation 1 (and C_in*kw >= 8) the input is lowered along
    the width only and the three height taps run as Winograd F(4, 3): six products per four
    output rows instead of twelve (F(2, 3), four per two rows instead of six, for 1, 2, 5 or 6
    output rows, where it needs fewer products).
    """
    fn = "conv2d"
    opts = _options(fn, stride, padding, dilation, groups)
    return _native.conv2d(x, K, bias, *opts, _workspace(fn, workspace))


def conv2d_backward(
    grad_y: ArrayLike,
    x: ArrayLike,
    K: ArrayLike,
    stride: IntOrPair = 1,
    padding: IntOrPair = 0,
    dilation: IntOrPair = 1,
    bias: Optional[ArrayLike] = None,
    workspace: Optional[ConvWorkspace] = None,
    *,
    groups: int = 1,
) -> Dict[str, Optional[np.ndarray]]:
    """Gradients of conv2d for the output gradient grad_y (N, C_out, H_out, W_out):

        dK[o, c, a, b] = sum_{n,i,j} grad_y[n, o, i, j] x[n, c, i*sh - ph + a*dh, j*sw - pw + b*dw]
        dx = the transposed convolution of grad_y with K,   dbias[o] = sum_{n,i,j} grad_y[n, o, i, j]

    Returns {"x": dx, "K": dK, "bias": dbias} ("bias" is None when ``bias`` is None; only
    its presence matters, the gradient does not depend on its value). Needs only x and K
    from the forward pass.
    """
    fn = "conv2d_backward"
    opts = _options(fn, stride, padding, dilation, groups)
    dx, dK, db = _native.conv2d_backward(grad_y, x, K, bias is not None, *opts, _workspace(fn, workspace))
    return {"x": dx, "K": dK, "bias": db}


# ---------------------------------------------------------------------------- low rank


def _lowrank_args(fn, kernel_size, stride, padding, dilation, groups, middle, workspace, path):
    kh, kw = _pair(fn, "kernel_size", kernel_size, 1)
    opts = _options(fn, stride, padding, dilation, groups)
    return (kh, kw) + opts, _middle(fn, middle), _workspace(fn, workspace), _path(fn, path)


def lowrank_conv2d(
    x: ArrayLike,
    U: ArrayLike,
    V: ArrayLike,
    kernel_size: IntOrPair,
    stride: IntOrPair = 1,
    padding: IntOrPair = 0,
    dilation: IntOrPair = 1,
    bias: Optional[ArrayLike] = None,
    middle: Middle = None,
    *,
    groups: int = 1,
    workspace: Optional[ConvWorkspace] = None,
    _path: str = "auto",
) -> np.ndarray:
    """Low-rank 2-D convolution: y = conv(x, K) + bias with K = matrix_to_conv(U M_1..M_d V^T).

    U: ((C_out*kh) x r_0), V: ((C_in*kw) x r_d), middle: None or [M_1, ..., M_d]
    (r_{j-1} x r_j), kernel_size: (kh, kw). Returns y (N, C_out, H_out, W_out), equal to
    ``conv2d(x, matrix_to_conv(compose(U, V, middle), C_out, C_in, kh, kw), ...)``.

    Executed without forming K (Tai et al.): with r the smallest rank of the chain,
    a 1 x kw convolution (C_in -> r channels; width stride/padding/dilation) followed by a
    kh x 1 convolution (r -> C_out; height options), in one engine call, at
    2 N r (H W_out C_in kw + H_out W_out kh C_out) flops instead of
    2 N H_out W_out C_out C_in kh kw (where the stages run as matrix products, the kh x 1
    stage by Winograd F(4, 3), 1/2 of its multiplications, when kh = 3 with height stride and
    dilation 1 and r >= 8; by F(2, 3), 2/3, for 1, 2, 5 or 6 output rows). When forming
    K first is cheaper by that count (large or overcomplete ranks), the engine composes and
    runs the dense convolution instead; both paths agree to float32 rounding.
    """
    fn = "lowrank_conv2d"
    geo, middle, ws, path = _lowrank_args(fn, kernel_size, stride, padding, dilation, groups, middle, workspace, _path)
    return _native.lowrank_conv2d(x, U, V, middle, bias, *geo, path, ws, False)


def lowrank_conv2d_forward(
    x: ArrayLike,
    U: ArrayLike,
    V: ArrayLike,
    kernel_size: IntOrPair,
    stride: IntOrPair = 1,
    padding: IntOrPair = 0,
    dilation: IntOrPair = 1,
    bias: Optional[ArrayLike] = None,
    middle: Middle = None,
    *,
    groups: int = 1,
    workspace: Optional[ConvWorkspace] = None,
    _path: str = "auto",
) -> Tuple[np.ndarray, Optional[np.ndarray]]:
    """:func:`lowrank_conv2d` that also keeps the intermediate for the backward pass.

    Returns (y, z): z is the output of the 1 x kw stage, (r, N, H, W_out) channel-major,
    or None when the compose path runs (nothing to keep). Passing it as
    ``lowrank_conv2d_backward(..., intermediate=z)`` saves the backward pass recomputing it
    (one product of r x C_in*kw per intermediate pixel) at the cost of holding
    r N H W_out floats between the passes. z is only valid for the same x and factors.
    """
    fn = "lowrank_conv2d_forward"
    geo, middle, ws, path = _lowrank_args(fn, kernel_size, stride, padding, dilation, groups, middle, workspace, _path)
    return _native.lowrank_conv2d(x, U, V, middle, bias, *geo, path, ws, True)


def lowrank_conv2d_backward(
    grad_y: ArrayLike,
    x: ArrayLike,
    U: ArrayLike,
    V: ArrayLike,
    kernel_size: IntOrPair,
    stride: IntOrPair = 1,
    padding: IntOrPair = 0,
    dilation: IntOrPair = 1,
    bias: Optional[ArrayLike] = None,
    middle: Middle = None,
    workspace: Optional[ConvWorkspace] = None,
    *,
    groups: int = 1,
    intermediate: Optional[np.ndarray] = None,
    _path: str = "auto",
) -> Dict[str, Union[Optional[np.ndarray], List[np.ndarray]]]:
    """Gradients of lowrank_conv2d for the output gradient grad_y, in one engine call.

    Returns {"x": dx, "U": dU, "V": dV, "bias": dbias or None, "middle": [dM_1, ...]}.
    With dK the dense kernel gradient (see :func:`conv2d_backward`), dW = conv_to_matrix(dK)
    and W = U M_1..M_d V^T, the factor gradients are

        dU = dW (M_1..M_d V^T)^T,  dV = dW^T (U M_1..M_d),
        dM_j = (U M_1..M_{j-1})^T dW (M_{j+1}..M_d V^T)^T,

    but dW is never formed on the fused path: the two stages are differentiated in turn at
    the cost of the forward pass times about two. What the backward needs from the forward:
    x and the factors; the intermediate z of the 1 x kw stage is recomputed unless passed
    as ``intermediate`` (from :func:`lowrank_conv2d_forward`). Only the presence of ``bias``
    matters.
    """
    fn = "lowrank_conv2d_backward"
    geo, middle, ws, path = _lowrank_args(fn, kernel_size, stride, padding, dilation, groups, middle, workspace, _path)
    dx, dU, dV, db, dm = _native.lowrank_conv2d_backward(
        grad_y, x, U, V, middle, bias is not None, *geo, path, ws, intermediate
    )
    return {"x": dx, "U": dU, "V": dV, "bias": db, "middle": dm}


def _lowrank_plan(
    x_shape: Sequence[int],
    c_out: int,
    kernel_size: IntOrPair,
    ranks: Sequence[int],
    stride: IntOrPair = 1,
    padding: IntOrPair = 0,
    dilation: IntOrPair = 1,
    path: str = "auto",
) -> dict:
    """The engine's plan of a low-rank convolution (tests and benchmarks): the path taken
    ("fused"/"compose"), the intermediate rank, the output size and the workspace floats."""
    fn = "lowrank_conv2d"
    kh, kw = _pair(fn, "kernel_size", kernel_size, 1)
    opts = _options(fn, stride, padding, dilation, 1)
    n, c, h, w = (int(v) for v in x_shape)
    return _native.lowrank_conv2d_plan(n, c, h, w, int(c_out), kh, kw, *opts, tuple(int(r) for r in ranks), _PATHS[path])
