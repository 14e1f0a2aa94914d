"""Reference models: CIFAR-style ResNets (He et al. 2016) and VGG-style networks.

Both work for any input size and channel count (e.g. 8x8 grey digits or 32x32 colour images):
the ResNets end with global average pooling, and the VGG pools with ceil_mode so a 1x1 map
stays 1x1. Weights are Kaiming-normal (the initialization of the CIFAR ResNet code the paper
used); batch norms start at weight 1, bias 0.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Sequence, Union

from . import nn
from .nn import init as _init


class ResNet(nn.Sequential):
    """conv3x3(16w) - BN - ReLU - 3 stages of n BasicBlocks (16w, 32w, 64w channels, strides
    1, 2, 2) - global average pool - Linear: depth 6n + 2."""

    def __init__(self, depth: int, num_classes: int = 10, in_channels: int = 3, width: float = 1,
                 shortcut: str = "projection", seed=None):
        for name, v in (("num_classes", num_classes), ("in_channels", in_channels)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"[fnl.models.resnet] {name} must be an int >= 1, got {v!r}")
        if isinstance(depth, bool) or not isinstance(depth, int) or depth < 8 or (depth - 2) % 6:
            raise ValueError(f"[fnl.models.resnet] depth must be 6n + 2 with n >= 1 (20, 32, 56, 110), got {depth!r}")
        if not isinstance(width, (int, float)) or isinstance(width, bool) or not width > 0:
            raise ValueError(f"[fnl.models.resnet] width must be a number > 0, got {width!r}")
        n = (depth - 2) // 6
        gen = _init.rng(seed)
        planes = [max(1, round(c * width)) for c in (16, 32, 64)]
        layers = OrderedDict()
        layers["conv1"] = nn.Conv2d(in_channels, planes[0], 3, 1, 1, bias=False, seed=gen)
        layers["bn1"] = nn.BatchNorm2d(planes[0])
        layers["relu"] = nn.ReLU()
        in_planes = planes[0]
        for stage, (p, stride) in enumerate(zip(planes, (1, 2, 2)), start=1):
            blocks = []
            for b in range(n):
                blocks.append(nn.BasicBlock(in_planes, p, stride if b == 0 else 1, shortcut, seed=gen))
                in_planes = p
            layers[f"layer{stage}"] = nn.Sequential(*blocks)
        layers["pool"] = nn.GlobalAvgPool2d()
        layers["fc"] = nn.Linear(in_planes, num_classes, seed=gen)
        super().__init__(layers)
        self.depth = depth
        self.width = width

    def extra_repr(self) -> str:
        return f"depth={self.depth}, width={self.width}"


def resnet(depth: int, num_classes: int = 10, in_channels: int = 3, width: float = 1, **kw) -> ResNet:
    """A CIFAR ResNet of depth 6n + 2 (shortcut="projection" or "pad", seed=...)."""
    return ResNet(depth, num_classes, in_channels, width, **kw)


def resnet20(num_classes: int = 10, in_channels: int = 3, width: float = 1, **kw) -> ResNet:
    return ResNet(20, num_classes, in_channels, width, **kw)


def resnet32(num_classes: int = 10, in_channels: int = 3, width: float = 1, **kw) -> ResNet:
    return ResNet(32, num_classes, in_channels, width, **kw)


def resnet56(num_classes: int = 10, in_channels: int = 3, width: float = 1, **kw) -> ResNet:
    return ResNet(56, num_classes, in_channels, width, **kw)


def resnet110(num_classes: int = 10, in_channels: int = 3, width: float = 1, **kw) -> ResNet:
    return ResNet(110, num_classes, in_channels, width, **kw)


VGG_CONFIGS = {
    "vgg11": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "vgg13": [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "vgg16": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    "vgg19": [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"],
}


def vgg(cfg: Union[str, Sequence], num_classes: int = 10, in_channels: int = 3, batch_norm: bool = True,
        width: float = 1, hidden: Sequence[int] = (), dropout: float = 0.0, seed=None) -> nn.Sequential:
    """A VGG-style network: cfg is a name ("vgg11/13/16/19") or a list of channel counts and
    "M" (2x2 max pool, ceil_mode); 3x3 convs (+ BN) + ReLU, then global average pooling and a
    classifier with optional hidden Linear layers (+ ReLU, Dropout)."""
    if isinstance(cfg, str):
        if cfg not in VGG_CONFIGS:
            raise ValueError(f"[fnl.models.vgg] cfg must be one of {sorted(VGG_CONFIGS)} or a list, got {cfg!r}")
        cfg = VGG_CONFIGS[cfg]
    cfg = list(cfg)
    if not any(v != "M" for v in cfg):
        raise ValueError("[fnl.models.vgg] cfg must contain at least one convolution")
    gen = _init.rng(seed)
    layers = OrderedDict()
    c = in_channels
    i = 0
    for v in cfg:
        if v == "M":
            layers[f"pool{i}"] = nn.MaxPool2d(2, 2, ceil_mode=True)
        else:
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"[fnl.models.vgg] cfg entries must be ints >= 1 or 'M', got {v!r}")
            out = max(1, round(v * width))
            layers[f"conv{i}"] = nn.Conv2d(c, out, 3, 1, 1, bias=not batch_norm, seed=gen)
            if batch_norm:
                layers[f"bn{i}"] = nn.BatchNorm2d(out)
            layers[f"relu{i}"] = nn.ReLU()
            c = out
        i += 1
    layers["avgpool"] = nn.GlobalAvgPool2d()
    for j, h in enumerate(hidden):
        layers[f"fc{j}"] = nn.Linear(c, h, seed=gen)
        layers[f"fc{j}_relu"] = nn.ReLU()
        if dropout:
            layers[f"fc{j}_dropout"] = nn.Dropout(dropout, seed=gen)
        c = h
    layers["classifier"] = nn.Linear(c, num_classes, seed=gen)
    return nn.Sequential(layers)
