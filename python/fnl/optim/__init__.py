"""Optimizers for factorized networks, stepping in place on float32 parameters in the Swift engine.

    SGD       momentum / Nesterov (PyTorch semantics)
    AdamW     decoupled weight decay (PyTorch semantics), decoupled FD on factor groups
    LAMB      layer-wise trust ratios (You et al. 2020)
    FLAMBe    LAMB with Frobenius decay on factorized products (Khodak et al., ICLR 2021)

Every optimizer takes a model (``named_parameters()``, ``factor_groups()``), a list of Parameters
or a list of parameter-group dicts, and a per-group decay policy: "weight", "frobenius", "crs",
"none" or "norm_matching" (see ``fnl.optim._groups``). State: ``state_dict()`` /
``load_state_dict()`` as flat dicts of arrays and scalars.

Schedules set ``group["lr"]``: MultiStepLR, CosineLR, LinearWarmup (composable via ``then=``).

Engine: one call per parameter group per step (plus one for norm matching). The call validates
every buffer (float32, C-contiguous, writeable, the parameter's shape; a wrong buffer raises,
nothing is copied), scans the gradients for NaN/inf (``check_finite=True``), computes the
Frobenius-decay gradients of all factorized products from Gram matrices (BLAS, the engine's
``FrobeniusDecay.gradient``), then runs one fused SIMD pass over all tensors (two for LAMB),
threaded over chunks of 16K floats when the group holds >= 2^17 floats.

Judgment calls (each also stated where it applies):
  * The decay term D enters SGD *before* momentum (as weight decay does in torch.optim.SGD and
    as the paper prescribes for FD); AdamW/LAMB/FLAMBe use it *decoupled*, scaled by lr as in
    torch.optim.AdamW. FD gradients are evaluated at the parameters before the step.
  * "crs": rho = factorized / dense parameter count of each FactorGroup (Gray et al. 2019).
  * "none" means no decay on any tensor; "norm_matching" is "none" plus the rescaling (the
    paper's "no decay (normalized)"). A batched product is matched as a whole (the norm of the
    stack); a product of norm 0 is not rescaled; a step beyond the trajectory raises.
  * LAMB: phi = identity, bias correction on, the trust ratio on every tensor, no gradient
    clipping, eps = 1e-6 by default. FLAMBe applies FD to every FactorGroup it is given (the
    paper used it on attention's output-value products; choose the groups accordingly).
  * Momentum buffers are created (equal to the first d, undampened) on the first step with
    momentum != 0, as in PyTorch; step counts are per parameter group.
  * Gradients are checked for NaN/inf by default (about +20% time on memory-bound steps;
    ``check_finite=False`` skips it and lets NaN propagate as PyTorch does).
"""
from ._groups import DECAY_POLICIES
from .adamw import AdamW
from .lamb import FLAMBe, LAMB
from .optimizer import Optimizer
from .schedules import CosineLR, LinearWarmup, LRSchedule, MultiStepLR
from .sgd import SGD

__all__ = [
    "AdamW",
    "CosineLR",
    "DECAY_POLICIES",
    "FLAMBe",
    "LAMB",
    "LRSchedule",
    "LinearWarmup",
    "MultiStepLR",
    "Optimizer",
    "SGD",
]
