"""Optimizers for factorized networks, stepping in place on float32 parameters in the Swift engine.

    SGD       momentum / Nesterov (PyTorch semantics)
    AdamW     decoupled weight decay (PyTorch semantics), decoupled FD on factor groups
    LAMB      layer-wise trust ratios (You et al. 2020)
    FLAMBe    LAMB with Frobenius decay on factorized products (Shen et al. 2021)

Every optimizer takes a model (``named_parameters()``, ``factor_groups()``), a list of Parameters
or a list of parameter-group dicts, and a per-group decay policy: "weight", "frobenius", "crs",
"none" or "norm_matching" (see ``fnl.optim._groups``). State: ``state_dict()`` /
``load_state_dict()`` as flat dicts of arrays and scalars.

Schedules set ``group["lr"]``: MultiStepLR, CosineLR, LinearWarmup (composable via ``then=``).
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
