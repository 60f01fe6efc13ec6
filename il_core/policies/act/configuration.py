"""Configuration of ACT, the Action Chunking Transformer (Zhao et al. 2023).

Defaults follow LeRobot 0.4.4's ``ACTConfig`` (``lerobot/policies/act/configuration_act.py``,
Apache-2.0): chunks of 100, ``dim_model`` 512, 8 heads, feedforward 3200, 4 encoder layers,
1 decoder layer (the paper's code set 7 but, by a bug, used only the first: LeRobot matches
that, tonyzhaozh/act issue 25), 4 VAE-encoder layers, a 32-d latent, dropout 0.1, post-norm,
``kl_weight`` 10, and a ResNet-18 with frozen batch norm whose ``layer4`` feature map cells
are the image tokens (``image_encoder.pooling`` is ignored: act always reads the map).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from il_core.config import ConfigError
from il_core.policies.base import PolicyConfig
from il_core.policies.cvae import check_cvae_config
from il_core.policies.encoders import ImageEncoderConfig


def _act_image_encoder() -> ImageEncoderConfig:
    # LeRobot: one ResNet-18 with FrozenBatchNorm2d shared by every camera, feature map tokens.
    return ImageEncoderConfig(
        backbone="resnet18", norm="frozen_batch", pooling="feature_map", shared=True
    )


@dataclass
class ACTConfig(PolicyConfig):
    """Transformer CVAE over action chunks.

    Tokens of the transformer encoder: ``[latent, state, image cells...]``, where ``state``
    is every vector observation of the k history steps concatenated (one token; none when the
    spec has no vector keys), and each camera of each history step adds one token per cell of
    its ``layer4`` feature map (1x1 conv to ``dim_model``, 2-D sine positions). The decoder
    cross-attends with ``horizon`` learned queries; a linear head gives the actions.

    Attributes:
        dim_model: Transformer width.
        n_heads: Attention heads (must divide ``dim_model``).
        dim_feedforward: Feedforward width of every transformer layer.
        feedforward_activation: ``relu`` (ACT) or ``gelu``.
        n_encoder_layers: Transformer encoder layers.
        n_decoder_layers: Transformer decoder layers (LeRobot: 1).
        pre_norm: Pre-norm layers (False: post-norm, as ACT and LeRobot).
        dropout: Dropout in the transformer layers (attention weights, feedforward, residuals).
        use_vae: Train with the VAE encoder and the KL term; False trains a plain
            deterministic transformer (z = 0 always).
        latent_dim: Size of the latent z.
        n_vae_encoder_layers: Layers of the VAE encoder over ``[CLS, state, chunk...]``.
        kl_weight: Weight of ``KL(q(z | state, chunk) || N(0, I))`` (ACT: 10 with L1).
        loss: Reconstruction loss on normalised actions: ``l1`` (ACT) or ``mse``.
        inference_latent: ``prior_mean`` decodes z = 0 (ACT: deterministic); ``sample``
            draws z from the prior N(0, I) (then the policy takes a ``noise`` input).
        temporal_ensemble_coeff: Not used by the model: the ACT temporal-ensembling weight
            ``m`` (``w_i = exp(-m i)``) that a :class:`il_core.execution.PolicyExecutor`
            built for this policy should use; ``None`` leaves ensembling off. ACT's value is
            0.01; ensembling queries every tick, so it needs ``n_action_steps`` 1.
    """

    horizon: int = field(default=100, metadata={"help": "predicted action chunk length h"})
    n_action_steps: int = field(
        default=100, metadata={"help": "actions executed per predicted chunk (<= horizon)"}
    )
    image_encoder: ImageEncoderConfig = field(
        default_factory=_act_image_encoder,
        metadata={"help": "camera backbone (resnet18, frozen_batch, feature_map tokens)"},
    )
    dim_model: int = field(default=512, metadata={"help": "transformer width"})
    n_heads: int = field(default=8, metadata={"help": "attention heads"})
    dim_feedforward: int = field(default=3200, metadata={"help": "feedforward width"})
    feedforward_activation: Literal["relu", "gelu"] = field(
        default="relu", metadata={"help": "relu | gelu"}
    )
    n_encoder_layers: int = field(default=4, metadata={"help": "transformer encoder layers"})
    n_decoder_layers: int = field(default=1, metadata={"help": "transformer decoder layers"})
    pre_norm: bool = field(default=False, metadata={"help": "pre-norm (true) or post-norm"})
    dropout: float = field(default=0.1, metadata={"help": "transformer dropout"})
    use_vae: bool = field(default=True, metadata={"help": "VAE encoder + KL term"})
    latent_dim: int = field(default=32, metadata={"help": "latent size"})
    n_vae_encoder_layers: int = field(default=4, metadata={"help": "VAE encoder layers"})
    kl_weight: float = field(default=10.0, metadata={"help": "KL weight"})
    loss: Literal["l1", "mse"] = field(default="l1", metadata={"help": "l1 | mse"})
    inference_latent: Literal["prior_mean", "sample"] = field(
        default="prior_mean", metadata={"help": "prior_mean (z = 0) | sample (z ~ N(0, I))"}
    )
    temporal_ensemble_coeff: float | None = field(
        default=None,
        metadata={"help": "executor temporal-ensembling weight m, null = off (ACT: 0.01)"},
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        check_cvae_config(self)
        if self.dim_model < 1 or self.n_heads < 1 or self.dim_model % self.n_heads:
            raise ConfigError(
                f"dim_model ({self.dim_model}) must be divisible by n_heads ({self.n_heads})"
            )
        if self.dim_model % 2:
            raise ConfigError("dim_model must be even (2-D sine position embeddings)")
        if self.dim_feedforward < 1 or self.latent_dim < 1:
            raise ConfigError("dim_feedforward and latent_dim must be >= 1")
        if min(self.n_encoder_layers, self.n_decoder_layers, self.n_vae_encoder_layers) < 1:
            raise ConfigError("n_encoder_layers, n_decoder_layers, n_vae_encoder_layers >= 1")
        if self.feedforward_activation not in ("relu", "gelu"):
            raise ConfigError("feedforward_activation must be relu or gelu")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.history_encoder.kind != "stack":
            raise ConfigError(
                "act reads the history as tokens (all steps' vectors in the state token, every "
                f"frame's cells as image tokens): history_encoder.kind must be stack, "
                f"got {self.history_encoder.kind!r}"
            )
