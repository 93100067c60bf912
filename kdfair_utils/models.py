"""The model zoo behind one :func:`build_model`.

* ``resnet{8,14,20,32,44,56,110}``: CIFAR-style ResNets (He et al. 2016, depth 6n+2,
  widths 16/32/64, option-B 1x1 projection shortcuts). ResNet-20 ≈ 0.27M, ResNet-56 ≈ 0.85M params.
* ``lenet5``: LeCun et al.'s LeNet-5 for RGB input (conv6-pool-conv16-pool-120-84), ReLU and
  max-pooling; the flattened size follows the image size (at least 14×14).
* ``resnet18``, ``resnet50``, ``densenet121``, ``densenet169``: torchvision architectures,
  randomly initialised; ``small_stem=True`` (default for images ≤ 64 px) swaps the 7×7/2 stem
  and max-pool for a 3×3/1 conv, the usual adaptation for 32×32 inputs.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from .validation import check_choice, check_int

CIFAR_RESNET_DEPTHS = (8, 14, 20, 32, 44, 56, 110)
TORCHVISION_MODELS = ("resnet18", "resnet50", "densenet121", "densenet169")
MODELS = tuple(f"resnet{d}" for d in CIFAR_RESNET_DEPTHS) + ("lenet5",) + TORCHVISION_MODELS
MIN_IMAGE_SIZE = {"lenet5": 14}


class BasicBlock(nn.Module):
    def __init__(self, in_planes: int, planes: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(nn.Conv2d(in_planes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """ResNet-(6n+2) for small images: 3 stages of n basic blocks, widths 16, 32, 64."""

    def __init__(self, depth: int, num_classes: int, in_channels: int = 3) -> None:
        super().__init__()
        if (depth - 2) % 6 != 0:
            raise ValueError(f"depth must be 6n+2, got {depth}")
        n = (depth - 2) // 6
        self.conv = nn.Conv2d(in_channels, 16, 3, 1, 1, bias=False)
        self.bn = nn.BatchNorm2d(16)
        layers, in_planes = [], 16
        for planes, stride in ((16, 1), (32, 2), (64, 2)):
            for i in range(n):
                layers.append(BasicBlock(in_planes, planes, stride if i == 0 else 1))
                in_planes = planes
        self.layers = nn.Sequential(*layers)
        self.fc = nn.Linear(64, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layers(F.relu(self.bn(self.conv(x))))
        return torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x))


class LeNet5(nn.Module):
    """LeNet-5 (conv 6@5×5 → pool → conv 16@5×5 → pool → 120 → 84 → classes), ReLU, max-pool."""

    def __init__(self, num_classes: int, in_channels: int = 3, image_size: int = 32) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 6, 5)
        self.conv2 = nn.Conv2d(6, 16, 5)
        side = ((image_size - 4) // 2 - 4) // 2
        self.fc1 = nn.Linear(16 * side * side, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        # relu(maxpool(x)) == maxpool(relu(x)) exactly, gradients included (ReLU is monotone and
        # passes no gradient at x <= 0); pooling first runs the ReLU on a quarter of the values
        x = F.relu(F.max_pool2d(self.conv1(x), 2))
        x = F.relu(F.max_pool2d(self.conv2(x), 2))
        x = F.relu(self.fc1(torch.flatten(x, 1)))
        return F.relu(self.fc2(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc3(self.features(x))


def _torchvision_model(name: str, num_classes: int, in_channels: int, small_stem: bool) -> nn.Module:
    import torchvision

    model = getattr(torchvision.models, name)(weights=None, num_classes=num_classes)
    if name.startswith("resnet"):
        if small_stem or in_channels != 3:
            model.conv1 = nn.Conv2d(in_channels, 64, 3 if small_stem else 7, 1 if small_stem else 2,
                                    1 if small_stem else 3, bias=False)
        if small_stem:
            model.maxpool = nn.Identity()
    else:  # densenet
        feats = model.features
        out_ch = feats.conv0.out_channels
        if small_stem or in_channels != 3:
            feats.conv0 = nn.Conv2d(in_channels, out_ch, 3 if small_stem else 7, 1 if small_stem else 2,
                                    1 if small_stem else 3, bias=False)
        if small_stem:
            feats.pool0 = nn.Identity()
    return model


def check_model_name(name: str) -> None:
    check_choice(name, "model", MODELS)


def check_image_size(name: str, image_size: int) -> None:
    """Raise ``ValueError`` if ``name`` cannot take square images of ``image_size`` pixels."""
    check_model_name(name)
    minimum = MIN_IMAGE_SIZE.get(name, 8)
    if image_size < minimum:
        raise ValueError(f"image_size {image_size} is too small for {name}; it needs at least {minimum}")


def build_model(name: str, num_classes: int, *, in_channels: int = 3, image_size: int = 32,
                small_stem: bool | None = None) -> nn.Module:
    """Build a randomly initialised model by name (see the module docstring for the zoo)."""
    check_int(image_size, "image_size", minimum=1)
    check_image_size(name, image_size)
    check_int(num_classes, "num_classes", minimum=2)
    check_int(in_channels, "in_channels", minimum=1)
    if name == "lenet5":
        return LeNet5(num_classes, in_channels, image_size)
    match = re.fullmatch(r"resnet(\d+)", name)
    if match and int(match.group(1)) in CIFAR_RESNET_DEPTHS:
        return CifarResNet(int(match.group(1)), num_classes, in_channels)
    return _torchvision_model(name, num_classes, in_channels, image_size <= 64 if small_stem is None else small_stem)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def load_state_dict(source: str | Path | bytes, name: str | Path | None = None) -> dict[str, torch.Tensor]:
    """A saved ``state_dict`` (a path, or a file's bytes named ``name``) read with
    ``weights_only=True``: tensors and plain containers only, so a poisoned checkpoint cannot run
    code (torch >= 2.6 also defaults to this)."""
    import io

    where = name if name is not None else source if not isinstance(source, bytes) else "checkpoint"
    stream = io.BytesIO(source) if isinstance(source, bytes) else source
    try:
        return torch.load(stream, weights_only=True, map_location="cpu")
    except Exception as exc:  # UnpicklingError, RuntimeError (bad zip), EOFError, ...
        raise ValueError(f"{where}: not a loadable weights file ({type(exc).__name__}: {str(exc)[:200]})") from None
