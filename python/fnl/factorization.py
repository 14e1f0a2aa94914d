"""Turn dense models into factorized ones and back.

``factorize(model, rank_scale=... | target_ratio=..., init="spectral" | "independent")``
replaces every Conv2d / Linear except the first and the last (in definition order) by its
factorized form W = U V^T (or U M V^T):

* init="spectral" (SI): the rank-r truncated SVD of the layer's *current* weight,
  U = P sqrt(S), V = Q sqrt(S) (conv kernels through the (c_out*kh) x (c_in*kw) layout). On a
  freshly built model this is spectral initialization of the dense init; on a trained model it
  is compression by truncated SVD (the report gives each layer's relative error). At full rank
  the factorized model computes the same function. Ranks above min(m, n) rotate the factors by
  a random R with orthonormal rows (U R, V R) so that no column is zero.
* init="independent": fresh Kaiming-normal factors, as if U and V were separate layers (the
  paper's "Low-Rank" baseline).

Ranks follow the rank-scale rule (fnl.rank_for: linear r = round(s min(m, n)), conv
r = round(s c_out kh)); target_ratio picks the largest s whose factorized/dense parameter ratio
over the replaced layers does not exceed it (fnl.rank_scale_for_ratio). Overcomplete forms
(no rank_scale): "full" r = rank_for(shape, 1), "deep" the same r with ``depth`` inner r x r
identity matrices, "wide" r = 3 rank_for(shape, 1).

``collapse(model)`` multiplies the factors back into plain Conv2d / Linear layers with the same
outputs (to float tolerance): the overcomplete route to a compact model.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import List, Optional, Tuple

import numpy as np

from . import functional as F
from . import rank as _rank
from .nn import init as _init
from .nn.conv import Conv2d, FactorizedConv2d
from .nn.linear import FactorizedLinear, Linear
from .nn.module import Module

_OVERCOMPLETE = (None, "full", "deep", "wide")


@dataclass
class LayerReport:
    name: str
    kind: str
    dense_shape: Tuple[int, ...]
    ranks: List[int]
    dense_params: int
    factorized_params: int
    relative_error: Optional[float] = None


@dataclass
class FactorizationReport:
    """What factorize/collapse did: per-layer ranks and parameter counts, model totals."""

    layers: List[LayerReport] = field(default_factory=list)
    params_before: int = 0
    params_after: int = 0
    rank_scale: Optional[float] = None
    kept_dense: List[str] = field(default_factory=list)

    @property
    def compression(self) -> float:
        """params_after / params_before for the whole model."""
        return self.params_after / self.params_before if self.params_before else float("nan")

    @property
    def layer_ratio(self) -> float:
        """Factorized over dense parameters of the replaced layers."""
        d = sum(l.dense_params for l in self.layers)
        return sum(l.factorized_params for l in self.layers) / d if d else float("nan")

    def __str__(self) -> str:
        lines = [f"{'layer':<28} {'shape':<18} {'ranks':<10} {'dense':>9} {'factorized':>10} {'rel.err':>8}"]
        for l in self.layers:
            err = "" if l.relative_error is None else f"{l.relative_error:.3g}"
            lines.append(f"{l.name:<28} {str(l.dense_shape):<18} {str(l.ranks):<10} {l.dense_params:>9} "
                         f"{l.factorized_params:>10} {err:>8}")
        scale = "" if self.rank_scale is None else f", rank_scale={self.rank_scale:.4g}"
        lines.append(f"parameters: {self.params_before:,} -> {self.params_after:,} ({self.compression:.1%} of the "
                     f"model; replaced layers at {self.layer_ratio:.1%}{scale}); kept dense: {', '.join(self.kept_dense)}")
        return "\n".join(lines)


def _walk(module: Module, prefix: str = ""):
    """(parent, attribute, child, dotted name) in definition (pre-)order."""
    for name, child in module.named_children():
        full = f"{prefix}.{name}" if prefix else name
        yield module, name, child, full
        yield from _walk(child, full)


def _shape(layer) -> Tuple[int, ...]:
    if isinstance(layer, Conv2d):
        return tuple(layer.weight.shape)
    return (layer.out_features, layer.in_features)


def _check_model(fn: str, model) -> None:
    if not isinstance(model, Module):
        raise TypeError(f"[fnl.{fn}] model must be an fnl.nn.Module, got {type(model).__name__}")


def factorize(model: Module, rank_scale: Optional[float] = None, target_ratio: Optional[float] = None,
              init: str = "spectral", overcomplete: Optional[str] = None, depth: int = 1, seed=None,
              keep_first_last: bool = True, inplace: bool = False, return_report: bool = False):
    """Replaces the dense Conv2d/Linear layers (all but the first and last) by factorized ones.

    Give exactly one of rank_scale, target_ratio, overcomplete ("full", "deep", "wide").
    ``depth`` is the number of inner identity matrices of the "deep" form. Returns the model
    (a deep copy unless ``inplace``) with ``model.factorization_report`` set, or
    (model, report) when ``return_report``.
    """
    _check_model("factorize", model)
    if init not in ("spectral", "independent"):
        raise ValueError(f"[fnl.factorize] init must be 'spectral' or 'independent', got {init!r}")
    if overcomplete not in _OVERCOMPLETE:
        raise ValueError(f"[fnl.factorize] overcomplete must be None, 'full', 'deep' or 'wide', got {overcomplete!r}")
    given = sum(v is not None for v in (rank_scale, target_ratio, overcomplete))
    if given != 1:
        raise ValueError("[fnl.factorize] give exactly one of rank_scale, target_ratio or overcomplete, "
                         f"got rank_scale={rank_scale!r}, target_ratio={target_ratio!r}, overcomplete={overcomplete!r}")
    if isinstance(depth, bool) or not isinstance(depth, int) or not 1 <= depth <= 64:
        raise ValueError(f"[fnl.factorize] depth must be an int in 1..64, got {depth!r}")
    gen = _init.rng(seed)
    if not inplace:
        model = copy.deepcopy(model)
    before = model.num_parameters()
    dense = [(p, n, c, full) for p, n, c, full in _walk(model) if type(c) in (Conv2d, Linear)]
    report = FactorizationReport(params_before=before)
    if keep_first_last and dense:
        report.kept_dense = sorted({dense[0][3], dense[-1][3]}, key=[d[3] for d in dense].index)
        dense = dense[1:-1]
    if not dense:
        raise ValueError("[fnl.factorize] the model has no Conv2d/Linear layer to factorize "
                         f"(besides the first and last: {report.kept_dense})")
    shapes = [_shape(c) for _, _, c, _ in dense]
    if target_ratio is not None:
        rank_scale = _rank.rank_scale_for_ratio(shapes, target_ratio)
    if rank_scale is not None:
        ranks = [_rank.rank_for(s, rank_scale) for s in shapes]
        report.rank_scale = float(rank_scale)
    else:
        ranks = [_rank.rank_for(s, 1.0) * (3 if overcomplete == "wide" else 1) for s in shapes]
    d = depth if overcomplete == "deep" else 0
    for (parent, name, layer, full), shape, r in zip(dense, shapes, ranks):
        cls = FactorizedConv2d if isinstance(layer, Conv2d) else FactorizedLinear
        new = cls.from_dense(layer, r, d, init="independent", seed=gen)
        rel = None
        if init == "spectral":
            W = F.conv_to_matrix(layer.weight.data) if isinstance(layer, Conv2d) else layer.weight.data
            t = F.compress(W, r)
            U, V = _init.spread_factors(t.U, t.V, min(W.shape), gen)
            new.U.assign(U)
            new.V.assign(V)
            rel = t.relative_error
        new.train(layer.training)
        setattr(parent, name, new)
        report.layers.append(LayerReport(full, "conv" if cls is FactorizedConv2d else "linear", shape, new.ranks,
                                         new.dense_params, new.factorized_params, rel))
    report.params_after = model.num_parameters()
    model.factorization_report = report
    return (model, report) if return_report else model


def collapse(model: Module, inplace: bool = False, return_report: bool = False):
    """Replaces every FactorizedConv2d / FactorizedLinear by the dense layer of its composed
    weight U M_1 ... M_d V^T (same outputs to float tolerance). Returns the model (a deep copy
    unless ``inplace``) with ``model.factorization_report`` describing the collapse."""
    _check_model("collapse", model)
    if not inplace:
        model = copy.deepcopy(model)
    report = FactorizationReport(params_before=model.num_parameters())
    for parent, name, layer, full in list(_walk(model)):
        if isinstance(layer, (FactorizedConv2d, FactorizedLinear)):
            report.layers.append(LayerReport(full, layer._kind, tuple(layer._dense_shape), layer.ranks,
                                             layer.dense_params, layer.factorized_params))
            setattr(parent, name, layer.to_dense())
    report.params_after = model.num_parameters()
    model.factorization_report = report
    return (model, report) if return_report else model
