"""The CIFAR residual block (He et al. 2016): relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x)).

Shortcuts: the identity when shapes match; otherwise "projection" (a 1x1 strided conv + batch
norm, option B) or "pad" (option A of the CIFAR ResNets: subsample by the stride and pad the
new channels with zeros, parameter-free, as in the code the paper used).

Execution: relu(bn1(.)) runs as one fused engine pass, and relu(bn2(.) + shortcut) as another
(BatchNorm2d.forward_act), with the backward differentiating both in one pass each; the
modules relu1/relu2 stay in the tree (state dicts and reprs are unchanged). A block whose
bn/relu submodules were replaced by other classes runs them one by one instead.
"""
from __future__ import annotations

import numpy as np

from . import init as _init
from .activation import ReLU
from .batchnorm import BatchNorm2d
from .conv import Conv2d
from .module import Module, as_float32


class PadShortcut(Module):
    """Option A: x[:, :, ::s, ::s] with (planes - in_planes) zero channels split around it."""

    def __init__(self, in_planes: int, planes: int, stride: int):
        super().__init__()
        self.in_planes, self.planes, self.stride = int(in_planes), int(planes), int(stride)
        self._before = (self.planes - self.in_planes) // 2

    def forward(self, x):
        x = as_float32(x, "fnl.nn.PadShortcut", (4,))
        s = self.stride
        sub = x[:, :, ::s, ::s]
        y = np.zeros((x.shape[0], self.planes) + sub.shape[2:], np.float32)
        y[:, self._before:self._before + self.in_planes] = sub
        self._save(x.shape)
        return y

    def backward(self, grad):
        (shape,) = self._take("PadShortcut")
        dx = np.zeros(shape, np.float32)
        s = self.stride
        dx[:, :, ::s, ::s] = np.asarray(grad)[:, self._before:self._before + self.in_planes]
        return dx

    def extra_repr(self) -> str:
        return f"{self.in_planes} -> {self.planes}, stride={self.stride}"


class BasicBlock(Module):
    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int = 1, shortcut: str = "projection", seed=None):
        super().__init__()
        if shortcut not in ("projection", "pad"):
            raise ValueError(f"[fnl.nn.BasicBlock] shortcut must be 'projection' or 'pad', got {shortcut!r}")
        gen = _init.rng(seed)
        self.conv1 = Conv2d(in_planes, planes, 3, stride, 1, bias=False, seed=gen)
        self.bn1 = BatchNorm2d(planes)
        self.relu1 = ReLU()
        self.conv2 = Conv2d(planes, planes, 3, 1, 1, bias=False, seed=gen)
        self.bn2 = BatchNorm2d(planes)
        if stride != 1 or in_planes != planes:
            if shortcut == "projection":
                from .container import Sequential

                self.shortcut = Sequential(Conv2d(in_planes, planes, 1, stride, 0, bias=False, seed=gen),
                                           BatchNorm2d(planes))
            else:
                self.shortcut = PadShortcut(in_planes, planes, stride)
        else:
            self.shortcut = None
        self.relu2 = ReLU()

    def _fusable(self) -> bool:
        return (type(self.bn1) is BatchNorm2d and type(self.bn2) is BatchNorm2d and type(self.relu1) is ReLU
                and type(self.relu2) is ReLU)

    def forward(self, x):
        if not self._fusable():  # submodules replaced by the user: run them one by one
            self._fused = False
            out = self.bn2(self.conv2(self.relu1(self.bn1(self.conv1(x)))))
            out += x if self.shortcut is None else self.shortcut(x)
            return self.relu2(out)
        # Fused: relu(bn1(.)) in one engine pass, and relu(bn2(.) + shortcut) in another.
        self._fused = True
        x = as_float32(x, "fnl.nn.BasicBlock", (4,))
        h = self.bn1.forward_act(self.conv1(x), relu=True)
        sc = x if self.shortcut is None else self.shortcut(x)
        return self.bn2.forward_act(self.conv2(h), residual=sc, relu=True)

    def backward(self, grad):
        if not getattr(self, "_fused", False):
            g = self.relu2.backward(grad)
            gx = self.conv1.backward(self.bn1.backward(self.relu1.backward(self.conv2.backward(self.bn2.backward(g)))))
            gx += g if self.shortcut is None else self.shortcut.backward(g)
            return gx
        dh, g = self.bn2.backward_act(grad)
        gx = self.conv1.backward(self.bn1.backward_act(self.conv2.backward(dh))[0])
        gx += g if self.shortcut is None else self.shortcut.backward(g)
        return gx
