"""Behaviour-cloning policy: observation encoder + MLP head predicting an action chunk."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from il_core.constants import ACTION, ACTION_MASK, OBS
from il_core.normalize import Normalizer
from il_core.policies import register_policy
from il_core.policies.base import Policy
from il_core.policies.bc.configuration import BCConfig
from il_core.policies.encoders import ObservationEncoder, mlp
from il_core.spec import DatasetSpec


@register_policy("bc")
class BCPolicy(Policy):
    """Deterministic behaviour cloning.

    Continuous actions: the head outputs ``(B, h, D)`` normalised actions trained with MSE or
    L1 against the normalised expert chunk. Discrete actions: the head outputs logits
    ``(B, h, num_classes)`` trained with cross-entropy; acting takes the arg-max. Padded
    chunk steps (``ACTION_MASK`` False) do not contribute to the loss.
    """

    config_class = BCConfig
    config: BCConfig

    def __init__(
        self,
        config: BCConfig,
        spec: DatasetSpec,
        stats: dict[str, dict[str, np.ndarray]] | None = None,
    ) -> None:
        super().__init__(config, spec, stats)
        self.normalizer = Normalizer(spec, stats, obs_min_scale=config.obs_min_std)
        self.encoder = ObservationEncoder(
            spec,
            config.n_obs_steps,
            config.image_encoder,
            config.history_encoder,
            load_pretrained=stats is not None,
        )
        act = spec.action
        self.discrete = act.kind == "discrete"
        if self.discrete:
            # ActionSpec requires num_classes (>= 2) for discrete actions.
            assert act.num_classes is not None
            self.out_per_step = int(act.num_classes)
        else:
            self.out_per_step = act.dim
        self.head = mlp(
            self.encoder.out_dim,
            config.hidden_dims,
            config.horizon * self.out_per_step,
            config.dropout,
        )

    def _head(self, obs: dict[str, Tensor]) -> Tensor:
        """Raw observation history ``{key: (B, k, ...)}`` -> head output ``(B, h, out)``."""
        feats = self.encoder(self.normalizer.normalize_obs(obs))
        return self.head(feats).reshape(feats.shape[0], self.config.horizon, self.out_per_step)

    def forward(self, batch: dict[str, Any]) -> tuple[Tensor, dict[str, float]]:
        """Masked BC loss on a batch of windows; logs ``loss`` (and ``accuracy`` if discrete)."""
        out = self._head(batch[OBS])
        target = batch[ACTION]
        mask = batch[ACTION_MASK].to(out.dtype)
        denom = mask.sum().clamp_min(1.0)
        if self.discrete:
            ce = F.cross_entropy(
                out.reshape(-1, self.out_per_step), target.reshape(-1), reduction="none"
            ).reshape(mask.shape)
            loss = (ce * mask).sum() / denom
            with torch.no_grad():
                acc = ((out.argmax(-1) == target).to(out.dtype) * mask).sum() / denom
            return loss, {"loss": float(loss.detach()), "accuracy": float(acc)}
        tgt = self.normalizer.normalize_action(target.to(out.dtype))
        err = (out - tgt).abs() if self.config.loss == "l1" else (out - tgt).square()
        loss = (err.mean(-1) * mask).sum() / denom
        return loss, {"loss": float(loss.detach())}

    def predict_chunk_tensor(self, obs: dict[str, Tensor]) -> Tensor:
        """Raw observation history ``{key: (B, k, ...)}`` -> raw action chunk ``(B, h, ...)``."""
        out = self._head(obs)
        if self.discrete:
            return out.argmax(-1)
        return self.normalizer.unnormalize_action(out)
