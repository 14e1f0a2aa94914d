"""fnl: factorized neural layers on a Swift engine.

Spectral initialization (SI), Frobenius decay (FD), factor algebra and diagnostics for
weights parameterized as U M_1 ... M_d V^T, computed in float32 by a Swift engine that is
called through a C ABI. See the README for the conventions and benchmarks.
"""
from ._engine import blas_info, get_num_threads, output_cache_info, set_num_threads, set_output_cache
from . import data, models, nn, optim, train
from .conv import ConvWorkspace, conv2d, conv2d_backward, lowrank_conv2d, lowrank_conv2d_backward, lowrank_conv2d_forward
from .conv import __all__ as _conv_all
from .factorization import collapse, factorize
from .functional import (
    Truncation,
    compose,
    compress,
    conv_to_matrix,
    crs_coefficient,
    effective_step_size,
    factor_balance,
    frobenius_decay_grad,
    frobenius_norm,
    frobenius_penalty,
    matrix_to_conv,
    nuclear_norm,
    spectral_init,
    spectral_init_conv,
    weight_decay_penalty,
)
from .rank import (
    conv_rank,
    dense_params,
    factorized_params,
    linear_rank,
    parameter_ratio,
    rank_for,
    rank_scale_for_ratio,
)

__version__ = "0.1.0"

__all__ = [
    *_conv_all,
    "Truncation",
    "blas_info",
    "collapse",
    "compose",
    "compress",
    "conv_rank",
    "conv_to_matrix",
    "crs_coefficient",
    "data",
    "dense_params",
    "effective_step_size",
    "factor_balance",
    "factorize",
    "factorized_params",
    "frobenius_decay_grad",
    "frobenius_norm",
    "frobenius_penalty",
    "get_num_threads",
    "linear_rank",
    "matrix_to_conv",
    "models",
    "nn",
    "nuclear_norm",
    "optim",
    "output_cache_info",
    "parameter_ratio",
    "rank_for",
    "rank_scale_for_ratio",
    "set_num_threads",
    "set_output_cache",
    "spectral_init",
    "spectral_init_conv",
    "train",
    "weight_decay_penalty",
]
