"""Configuration of the ACT-style conditional VAE policy."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from il_core.config import ConfigError
from il_core.policies.base import PolicyConfig
from il_core.policies.cvae import check_cvae_config


@dataclass
class ACTMLPConfig(PolicyConfig):
    """CVAE with action chunking (ACT, Zhao et al. 2023), CPU-sized with MLP encoder/decoder.

    Attributes:
        latent_dim: Size of the latent z.
        hidden_dims: Hidden sizes of the CVAE encoder and of the decoder MLPs.
        kl_weight: Weight of ``KL(q(z | obs, chunk) || N(0, I))`` (ACT uses 10 with L1).
        loss: Reconstruction loss on normalised actions: ``l1`` (ACT) or ``mse``.
        inference_latent: ``prior_mean`` decodes z = 0 (ACT: deterministic); ``sample``
            draws z from the prior N(0, I).
        temporal_ensemble_coeff: Not used by the model: the ACT temporal-ensembling weight
            ``m`` (``w_i = exp(-m i)``) that a :class:`il_core.execution.PolicyExecutor`
            built for this policy should use (``PolicyExecutor(policy,
            temporal_ensemble_coeff=policy.config.temporal_ensemble_coeff)``); ``None``
            leaves ensembling off. ACT's value is 0.01; ensembling queries every tick, so it
            needs ``n_action_steps`` 1.
    """

    latent_dim: int = field(default=32, metadata={"help": "latent size"})
    hidden_dims: tuple[int, ...] = field(
        default=(256, 256), metadata={"help": "encoder/decoder MLP hidden sizes"}
    )
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
        if not self.hidden_dims or min(self.hidden_dims) < 1:
            raise ConfigError(f"hidden_dims must be positive sizes, got {self.hidden_dims}")
