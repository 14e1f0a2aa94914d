"""fnl.nn: layers with forward and backward on NumPy float32 arrays (engine kernels).

Parameters and their gradients are float32 arrays updated in place (see parameter.py); a
model is called on a batch, ``model.backward(grad)`` accumulates parameter gradients, and an
optimizer (fnl.optim) steps them. See module.py for the protocol.
"""
from .activation import Dropout, Flatten, Identity, ReLU
from .batchnorm import BatchNorm1d, BatchNorm2d
from .container import Sequential
from .conv import Conv2d, FactorizedConv2d
from .linear import FactorizedLinear, Linear
from .loss import CrossEntropyLoss
from .module import Module, enable_grad, memory_pool, no_grad
from .parameter import FactorGroup, Parameter
from .pooling import AvgPool2d, GlobalAvgPool2d, MaxPool2d
from .residual import BasicBlock, PadShortcut

__all__ = [
    "AvgPool2d",
    "BasicBlock",
    "BatchNorm1d",
    "BatchNorm2d",
    "Conv2d",
    "CrossEntropyLoss",
    "Dropout",
    "FactorGroup",
    "FactorizedConv2d",
    "FactorizedLinear",
    "Flatten",
    "GlobalAvgPool2d",
    "Identity",
    "Linear",
    "MaxPool2d",
    "Module",
    "PadShortcut",
    "Parameter",
    "ReLU",
    "Sequential",
    "enable_grad",
    "memory_pool",
    "no_grad",
]
