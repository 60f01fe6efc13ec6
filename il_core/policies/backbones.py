"""Image backbones: torchvision's ResNet-18, written out so torchvision need not be installed.

The module layout and parameter names are torchvision's (``conv1``, ``bn1``, ``layer1.0.conv1``,
``layer2.0.downsample.0`` ...), so a torchvision ResNet-18 state dict loads as is; the
classifier (``avgpool``, ``fc``) is left out because every policy reads the ``layer4`` feature
map (stride 32, 512 channels). Three normalisations:

- ``batch``: ``nn.BatchNorm2d`` (torchvision's own).
- ``frozen_batch``: batch norm with fixed statistics and affine terms held as buffers, not
  parameters (torchvision's ``FrozenBatchNorm2d``, what ACT and LeRobot's ACT use: ImageNet
  statistics stay put while fine-tuning on small robot batches).
- ``group``: ``nn.GroupNorm`` with ``channels // 16`` groups in place of every batch norm
  (diffusion policy's ``replace_bn_with_gn``: no batch statistics, which EMA weights and
  small batches handle badly).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import torch
from torch import Tensor, nn

from il_core.config import ConfigError

Norm = Literal["batch", "frozen_batch", "group"]
RESNET18_CHANNELS = 512
RESNET18_STRIDE = 32


class FrozenBatchNorm2d(nn.Module):
    """Batch norm with fixed statistics and affine terms, all buffers (torchvision's layout)."""

    # The buffers registered in __init__, declared for the type checker.
    weight: Tensor
    bias: Tensor
    running_mean: Tensor
    running_var: Tensor

    def __init__(self, num_features: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.register_buffer("weight", torch.ones(num_features))
        self.register_buffer("bias", torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))

    def forward(self, x: Tensor) -> Tensor:
        """``(N, C, H, W)`` -> ``(N, C, H, W)``."""
        scale = self.weight * (self.running_var + self.eps).rsqrt()
        shift = self.bias - self.running_mean * scale
        return x * scale.reshape(1, -1, 1, 1) + shift.reshape(1, -1, 1, 1)


def norm_layer(norm: Norm, channels: int) -> nn.Module:
    """The normalisation module ``norm`` for ``channels`` feature maps."""
    if norm == "batch":
        return nn.BatchNorm2d(channels)
    if norm == "frozen_batch":
        return FrozenBatchNorm2d(channels)
    return nn.GroupNorm(channels // 16, channels)


class BasicBlock(nn.Module):
    """torchvision's ResNet basic block: two 3x3 convs and a residual (1x1 conv when resized)."""

    def __init__(self, inplanes: int, planes: int, stride: int, norm: Norm) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = norm_layer(norm, planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = norm_layer(norm, planes)
        self.downsample: nn.Module | None = None
        if stride != 1 or inplanes != planes:
            self.downsample = nn.Sequential(
                nn.Conv2d(inplanes, planes, 1, stride=stride, bias=False), norm_layer(norm, planes)
            )

    def forward(self, x: Tensor) -> Tensor:
        """``(N, inplanes, H, W)`` -> ``(N, planes, H / stride, W / stride)``."""
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + identity)


class ResNet18(nn.Module):
    """ResNet-18 up to ``layer4``: ``(N, C, H, W)`` -> ``(N, 512, ceil(H/32), ceil(W/32))``.

    Args:
        in_channels: Image channels (3 for pretrained weights).
        norm: ``batch`` | ``frozen_batch`` | ``group`` (see the module docstring).
    """

    # The four stages, set with setattr in __init__ (torchvision's names).
    layer1: nn.Sequential
    layer2: nn.Sequential
    layer3: nn.Sequential
    layer4: nn.Sequential

    def __init__(self, in_channels: int = 3, norm: Norm = "batch") -> None:
        super().__init__()
        self.norm = norm
        self.conv1 = nn.Conv2d(in_channels, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = norm_layer(norm, 64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        inplanes = 64
        for i, planes in enumerate((64, 128, 256, 512)):
            stride = 1 if i == 0 else 2
            blocks = [
                BasicBlock(inplanes, planes, stride, norm),
                BasicBlock(planes, planes, 1, norm),
            ]
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
            inplanes = planes
        # torchvision's initialisation.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> Tensor:
        """Feature map of images ``(N, C, H, W)`` float -> ``(N, 512, H', W')``."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    def load_torchvision_state_dict(self, state: dict[str, Tensor], source: str) -> None:
        """Load a torchvision ResNet-18 state dict, strictly (the classifier is dropped).

        With ``group`` norm, each batch norm's affine terms become the group norm's and its
        running statistics are dropped (diffusion policy swaps the layers the same way).

        Raises:
            ConfigError: naming ``source`` and the missing, unexpected or misshapen keys.
        """
        state = {k: v for k, v in state.items() if not k.startswith("fc.")}
        if self.norm == "group":
            drop = ("running_mean", "running_var", "num_batches_tracked")
            state = {k: v for k, v in state.items() if not k.endswith(drop)}
        elif self.norm == "frozen_batch":
            state = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
        own = self.state_dict()
        missing = sorted(set(own) - set(state))
        unexpected = sorted(set(state) - set(own))
        misshapen = [
            f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
            for k in own
            if k in state and tuple(state[k].shape) != tuple(own[k].shape)
        ]
        if missing or unexpected or misshapen:
            raise ConfigError(
                f"image_encoder.pretrained_backbone {source!r} is not a ResNet-18 state dict for "
                f"this encoder: missing keys {missing[:8]}, unexpected keys {unexpected[:8]}, "
                f"shape mismatches {misshapen[:8]}"
            )
        self.load_state_dict(state)


def load_pretrained(backbone: ResNet18, source: str) -> None:
    """Fill ``backbone`` from ``source``: a local state-dict file, or ``torchvision``.

    ``torchvision`` downloads ImageNet weights through torchvision (only where the machine can
    reach download.pytorch.org; never in tests).

    Raises:
        ConfigError: the file is missing, unreadable or not a matching ResNet-18 state dict.
    """
    if source == "torchvision":
        try:
            import torchvision
        except ImportError as exc:
            raise ConfigError(
                "image_encoder.pretrained_backbone: torchvision needs torchvision installed; "
                "or save its resnet18 state dict to a file and give that path"
            ) from exc
        weights = torchvision.models.ResNet18_Weights.IMAGENET1K_V1
        state = torchvision.models.resnet18(weights=weights).state_dict()
    else:
        path = Path(source).expanduser()
        if not path.is_file():
            raise ConfigError(f"image_encoder.pretrained_backbone: no file {str(path)!r}")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise ConfigError(
                f"image_encoder.pretrained_backbone: cannot read {str(path)!r} as a torch "
                f"state dict: {exc}"
            ) from exc
        if isinstance(state, dict) and "state_dict" in state:
            state = state["state_dict"]
        if not isinstance(state, dict):
            raise ConfigError(
                f"image_encoder.pretrained_backbone {str(path)!r} holds a "
                f"{type(state).__name__}, not a state dict"
            )
    backbone.load_torchvision_state_dict(state, source)
