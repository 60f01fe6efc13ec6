"""Observation encoders shared by all policy types.

An :class:`ObservationEncoder` turns a normalised observation history into one feature
vector: every vector key is passed through as is, every camera goes through a small CNN with a
spatial-softmax keypoint head (robomimic's choice for manipulation: it keeps *where* things
are, which average pooling throws away), and the per-step features of the k history steps are
stacked, or, with a :class:`HistoryEncoderConfig` of kind ``gru`` or ``transformer``, read by
a sequence model (a GRU, or a small causal transformer) whose last output summarises the
history. Stacking stays the default, so existing configs and checkpoints are unchanged.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from il_core.config import ConfigError
from il_core.spec import DatasetSpec


@dataclass
class ImageEncoderConfig:
    """Image backbone used for each camera.

    Attributes:
        backbone: ``conv`` (the small CNN below, the default) or ``resnet18`` (torchvision's
            ResNet-18 layout up to ``layer4``, see :mod:`il_core.policies.backbones`).
        channels: Output channels of the conv layers (5x5 kernel first, 3x3 after); ``conv``
            only.
        strides: Stride of each conv layer. Early stride 2 keeps CPU training affordable: on
            84x84 input (2, 2, 1) costs about a fifth of the compute of (2, 1, 1). ``conv``
            only.
        norm: ResNet normalisation: ``group`` (GroupNorm in place of BatchNorm, as diffusion
            policy does), ``frozen_batch`` (fixed statistics, as ACT does) or ``batch``.
        pooling: ``spatial_softmax`` (a keypoint per channel, then a linear layer to
            ``feature_dim``: what diffusion policy and robomimic use) or ``feature_map``
            (the policy reads the feature map itself: ACT uses each cell as a token; only
            policies that say so accept it).
        pretrained_backbone: ``null`` (random init), a path to a torchvision ResNet-18 state
            dict file (shapes checked strictly), or ``torchvision`` (downloads ImageNet weights
            through torchvision where the machine can). Loaded when a policy is built for
            training, not when it is rebuilt from a checkpoint.
        feature_dim: Size of each camera's feature vector (``spatial_softmax`` pooling).
        shared: One backbone for all cameras (True) or one per camera (False).
    """

    backbone: Literal["conv", "resnet18"] = field(
        default="conv", metadata={"help": "conv | resnet18"}
    )
    channels: tuple[int, ...] = field(
        default=(32, 32, 64), metadata={"help": "conv channels per layer"}
    )
    strides: tuple[int, ...] = field(default=(2, 2, 1), metadata={"help": "conv strides"})
    norm: Literal["group", "frozen_batch", "batch"] = field(
        default="group", metadata={"help": "resnet18 norm: group | frozen_batch | batch"}
    )
    pooling: Literal["spatial_softmax", "feature_map"] = field(
        default="spatial_softmax", metadata={"help": "spatial_softmax | feature_map"}
    )
    pretrained_backbone: str | None = field(
        default=None,
        metadata={"help": "null (random) | PATH to a resnet18 state dict | torchvision"},
    )
    feature_dim: int = field(default=64, metadata={"help": "per-camera feature size"})
    shared: bool = field(default=False, metadata={"help": "share one backbone across cameras"})

    def __post_init__(self) -> None:
        if self.backbone not in ("conv", "resnet18"):
            raise ConfigError(
                f"image_encoder.backbone must be conv or resnet18, got {self.backbone!r}"
            )
        if self.norm not in ("group", "frozen_batch", "batch"):
            raise ConfigError(
                f"image_encoder.norm must be group, frozen_batch or batch, got {self.norm!r}"
            )
        if self.pooling not in ("spatial_softmax", "feature_map"):
            raise ConfigError(
                f"image_encoder.pooling must be spatial_softmax or feature_map, "
                f"got {self.pooling!r}"
            )
        if self.pretrained_backbone is not None and self.backbone != "resnet18":
            raise ConfigError("image_encoder.pretrained_backbone needs backbone resnet18")
        if not self.channels or min(self.channels) < 1:
            raise ConfigError(f"image_encoder.channels must be positive, got {self.channels}")
        if len(self.strides) != len(self.channels) or min(self.strides) < 1:
            raise ConfigError(
                f"image_encoder.strides {self.strides} must give one stride >= 1 per layer "
                f"of channels {self.channels}"
            )
        if self.feature_dim < 1:
            raise ConfigError("image_encoder.feature_dim must be >= 1")


class SpatialSoftmax(nn.Module):
    """Expected 2-D keypoint location per channel.

    Input ``(N, C, H, W)``; output ``(N, 2C)`` with (x, y) in [-1, 1] per channel.
    """

    pos: Tensor  # (H * W, 2) grid coordinates, a buffer registered in __init__

    def __init__(self, height: int, width: int) -> None:
        super().__init__()
        ys, xs = torch.meshgrid(
            torch.linspace(-1.0, 1.0, height), torch.linspace(-1.0, 1.0, width), indexing="ij"
        )
        self.register_buffer("pos", torch.stack([xs.reshape(-1), ys.reshape(-1)], dim=1))

    def forward(self, x: Tensor) -> Tensor:
        """Keypoints of feature map ``x`` ``(N, C, H, W)`` -> ``(N, 2C)``."""
        n, c = x.shape[:2]
        attn = F.softmax(x.reshape(n, c, -1), dim=-1)
        return (attn @ self.pos).reshape(n, 2 * c)


class ConvStack(nn.Module):
    """The small CNN of ``backbone: conv``: ``(N, C, H, W)`` -> ``(N, channels[-1], H', W')``."""

    def __init__(self, in_channels: int, cfg: ImageEncoderConfig) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        prev = in_channels
        for i, (ch, stride) in enumerate(zip(cfg.channels, cfg.strides, strict=True)):
            layers += [nn.Conv2d(prev, ch, 5 if i == 0 else 3, stride=stride), nn.ReLU()]
            prev = ch
        self.conv = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        """Feature map of images ``(N, C, H, W)``."""
        return self.conv(x)


def make_backbone(
    in_shape: tuple[int, ...], cfg: ImageEncoderConfig, load_pretrained: bool = True
) -> tuple[nn.Module, int, int, int]:
    """The feature-map backbone ``cfg`` describes, for images of ``in_shape`` (H, W, C).

    Args:
        in_shape: Camera shape ``(H, W, C)`` as in the dataset spec.
        cfg: Backbone settings.
        load_pretrained: Load ``cfg.pretrained_backbone`` (False when the weights will come
            from a checkpoint, so a robot need not hold the original file).

    Returns:
        The module ``(N, C, H, W) -> (N, C', H', W')`` and ``(C', H', W')``.
    """
    from il_core.policies.backbones import ResNet18
    from il_core.policies.backbones import load_pretrained as load

    h, w, c = in_shape
    net: nn.Module
    if cfg.backbone == "resnet18":
        resnet = ResNet18(c, cfg.norm)
        if load_pretrained and cfg.pretrained_backbone is not None:
            load(resnet, cfg.pretrained_backbone)
        net = resnet
    else:
        net = ConvStack(c, cfg)
    with torch.no_grad():
        was = net.training
        out = net.eval()(torch.zeros(1, c, h, w))
        net.train(was)
    return net, int(out.shape[1]), int(out.shape[2]), int(out.shape[3])


class ConvEncoder(nn.Module):
    """Backbone + spatial softmax + linear: ``(N, C, H, W)`` -> ``(N, feature_dim)``.

    The ``conv`` backbone keeps the attribute name ``conv`` of the original encoder, so its
    checkpoints and golden outputs are unchanged.
    """

    def __init__(
        self, in_shape: tuple[int, ...], cfg: ImageEncoderConfig, load_pretrained: bool = True
    ) -> None:
        super().__init__()
        net, prev, fh, fw = make_backbone(in_shape, cfg, load_pretrained)
        if isinstance(net, ConvStack):
            self.conv = net.conv
        else:
            self.backbone = net
        self.keypoints = SpatialSoftmax(fh, fw)
        self.proj = nn.Linear(2 * prev, cfg.feature_dim)

    def forward(self, x: Tensor) -> Tensor:
        """Encode images ``(N, C, H, W)`` float -> ``(N, feature_dim)``."""
        # (The conv path keeps its input strides, so its golden outputs are unchanged;
        # ResNet-18 runs about 1.4x faster on contiguous NCHW than on channels-last input.)
        fmap = self.conv(x) if hasattr(self, "conv") else self.backbone(x.contiguous())
        return self.proj(self.keypoints(fmap))


@dataclass
class HistoryEncoderConfig:
    """How the k per-step features of an observation history become one vector.

    Attributes:
        kind: ``stack`` concatenates the k steps (output ``k * step_dim``); ``gru`` runs a
            GRU over them and keeps its last output; ``transformer`` runs a small causal
            transformer (learned positions, pre-norm blocks) and keeps the last token. Both
            sequence models output ``hidden_dim`` features whatever k is.
        hidden_dim: GRU hidden size / transformer model width.
        num_layers: GRU layers / transformer blocks.
        num_heads: Transformer attention heads (must divide ``hidden_dim``).
    """

    kind: Literal["stack", "gru", "transformer"] = field(
        default="stack", metadata={"help": "stack | gru | transformer"}
    )
    hidden_dim: int = field(default=64, metadata={"help": "sequence model width"})
    num_layers: int = field(default=1, metadata={"help": "GRU layers / transformer blocks"})
    num_heads: int = field(default=2, metadata={"help": "transformer attention heads"})

    def __post_init__(self) -> None:
        if self.kind not in ("stack", "gru", "transformer"):
            raise ConfigError(
                f"history_encoder.kind must be stack, gru or transformer, got {self.kind!r}"
            )
        if self.hidden_dim < 1 or self.num_layers < 1 or self.num_heads < 1:
            raise ConfigError(
                "history_encoder.hidden_dim, num_layers and num_heads must all be >= 1"
            )
        if self.kind == "transformer" and self.hidden_dim % self.num_heads:
            raise ConfigError(
                f"history_encoder.hidden_dim ({self.hidden_dim}) must be divisible by "
                f"num_heads ({self.num_heads})"
            )


class _CausalBlock(nn.Module):
    """Pre-norm transformer block with causal self-attention, written with plain ops.

    ``nn.TransformerEncoderLayer`` switches to a fused kernel in inference mode that neither
    TorchScript tracing nor ONNX export can follow; these few matmuls export everywhere.
    """

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        self.ff = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        """``x`` ``(B, k, dim)``, additive ``mask`` ``(k, k)`` -> ``(B, k, dim)``."""
        b, k, d = x.shape
        q, kk, v = self.qkv(self.norm1(x)).chunk(3, dim=-1)

        def heads(t: Tensor) -> Tensor:
            return t.reshape(b, k, self.heads, d // self.heads).transpose(1, 2)

        q, kk, v = heads(q), heads(kk), heads(v)
        att = (q @ kk.transpose(-1, -2)) / math.sqrt(d // self.heads) + mask
        y = (att.softmax(-1) @ v).transpose(1, 2).reshape(b, k, d)
        x = x + self.proj(y)
        return x + self.ff(self.norm2(x))


class HistoryEncoder(nn.Module):
    """Per-step features ``(B, k, step_dim)`` -> one vector ``(B, out_dim)``.

    Args:
        step_dim: Feature size of one history step.
        n_obs_steps: History length k.
        cfg: Which sequence model (see :class:`HistoryEncoderConfig`).
    """

    def __init__(self, step_dim: int, n_obs_steps: int, cfg: HistoryEncoderConfig) -> None:
        super().__init__()
        self.kind = cfg.kind
        if cfg.kind == "stack":
            self.out_dim = step_dim * n_obs_steps
            return
        self.out_dim = cfg.hidden_dim
        if cfg.kind == "gru":
            self.gru = nn.GRU(step_dim, cfg.hidden_dim, cfg.num_layers, batch_first=True)
            return
        self.inp = nn.Linear(step_dim, cfg.hidden_dim)
        self.pos = nn.Parameter(torch.zeros(n_obs_steps, cfg.hidden_dim))
        nn.init.normal_(self.pos, std=0.02)
        self.blocks = nn.ModuleList(
            _CausalBlock(cfg.hidden_dim, cfg.num_heads) for _ in range(cfg.num_layers)
        )
        self.norm = nn.LayerNorm(cfg.hidden_dim)
        causal = torch.full((n_obs_steps, n_obs_steps), float("-inf")).triu(1)
        self.register_buffer("mask", causal, persistent=False)

    def forward(self, f: Tensor) -> Tensor:
        """Summarise per-step features ``(B, k, step_dim)`` as ``(B, out_dim)``."""
        if self.kind == "stack":
            return f.reshape(f.shape[0], -1)
        if self.kind == "gru":
            out, _ = self.gru(f)
            return out[:, -1]
        x = self.inp(f) + self.pos
        for block in self.blocks:
            x = block(x, self.mask)
        return self.norm(x[:, -1])


class ObservationEncoder(nn.Module):
    """Normalised observation history -> feature vector.

    Args:
        spec: Dataset spec (which keys are vectors, which are cameras).
        n_obs_steps: History length k.
        image_cfg: CNN settings for cameras.
        history_cfg: How the k steps are combined; ``None`` stacks them (the original
            behaviour, with no extra weights).
        load_pretrained: Load ``image_cfg.pretrained_backbone`` (pass False when the weights
            come from a checkpoint).

    Input: ``{key: (B, k, D)}`` vectors and ``{key: (B, k, C, H, W)}`` images, already
    normalised (see :class:`il_core.normalize.Normalizer`). Output: ``(B, out_dim)``.
    """

    def __init__(
        self,
        spec: DatasetSpec,
        n_obs_steps: int,
        image_cfg: ImageEncoderConfig,
        history_cfg: HistoryEncoderConfig | None = None,
        load_pretrained: bool = True,
    ) -> None:
        super().__init__()
        if spec.image_keys and image_cfg.pooling != "spatial_softmax":
            raise ConfigError(
                f"image_encoder.pooling {image_cfg.pooling!r} is read by the policy itself "
                "(act); this policy needs spatial_softmax"
            )
        self.vector_keys = spec.vector_keys
        self.image_keys = spec.image_keys
        self.n_obs_steps = n_obs_steps
        self.cnns = nn.ModuleDict()
        if self.image_keys:
            shapes = {spec.observations[k].shape for k in self.image_keys}
            if image_cfg.shared and len(shapes) != 1:
                raise ConfigError(
                    f"image_encoder.shared needs cameras of one shape, got {sorted(shapes)}"
                )
            for i, key in enumerate(self.image_keys):
                name = f"cam{i}"
                if image_cfg.shared and i > 0:
                    self.cnns[name] = self.cnns["cam0"]
                else:
                    self.cnns[name] = ConvEncoder(
                        spec.observations[key].shape, image_cfg, load_pretrained
                    )
        per_step = sum(spec.observations[k].shape[0] for k in self.vector_keys)
        per_step += image_cfg.feature_dim * len(self.image_keys)
        self.step_dim = per_step
        self.out_dim = per_step * n_obs_steps
        if history_cfg is not None and history_cfg.kind != "stack":
            self.history = HistoryEncoder(per_step, n_obs_steps, history_cfg)
            self.out_dim = self.history.out_dim

    def step_features(self, obs: dict[str, Tensor]) -> Tensor:
        """Per-step features ``(B, k, step_dim)`` of a normalised history."""
        feats = [obs[k] for k in self.vector_keys]
        for i, key in enumerate(self.image_keys):
            x = obs[key]
            b, k = x.shape[:2]
            f = self.cnns[f"cam{i}"](x.reshape(b * k, *x.shape[2:]))
            feats.append(f.reshape(b, k, -1))
        return torch.cat(feats, dim=-1)

    def forward(self, obs: dict[str, Tensor]) -> Tensor:
        """History features ``(B, out_dim)``: stacked ``(B, k * step_dim)`` by default."""
        f = self.step_features(obs)
        if hasattr(self, "history"):
            return self.history(f)
        return f.reshape(f.shape[0], -1)


def mlp(in_dim: int, hidden: tuple[int, ...], out_dim: int, dropout: float = 0.0) -> nn.Sequential:
    """Plain ReLU MLP ``in_dim -> hidden... -> out_dim`` (no activation on the output)."""
    layers: list[nn.Module] = []
    prev = in_dim
    for h in hidden:
        layers += [nn.Linear(prev, h), nn.ReLU()]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        prev = h
    layers.append(nn.Linear(prev, out_dim))
    return nn.Sequential(*layers)
