"""Behaviour-cloning policy: observation encoder + MLP head predicting an action chunk."""

from __future__ import annotations

from typing import Any

import numpy as np
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
        """Masked BC loss on a batch of windows; logs ``loss`` (and ``accuracy`` if discrete).

        Args:
            batch: ``OBS`` ``{key: (B, k, ...)}``, ``ACTION`` ``(B, h, D)`` float or
                ``(B, h)`` int64, ``ACTION_MASK`` ``(B, h)`` bool.

        Returns:
            The masked mean loss (a 0-dim tensor) and its logs as floats.
        """
        feats = self.encoder(self.normalizer.normalize_obs(batch[OBS]))  # (B, F)
        flat = self.head(feats)  # (B, h * out)
        target = batch[ACTION]
        if self.discrete:
            # Per chunk step, flattened: (B * h, C) logits, (B * h,) classes and mask. The
            # masked sums over a contiguous (B * h,) are the same as over (B, h), with fewer
            # reshapes to record and to differentiate (none at all for h = 1).
            logits = flat if self.config.horizon == 1 else flat.reshape(-1, self.out_per_step)
            classes = target.reshape(-1)
            valid = batch[ACTION_MASK].reshape(-1)
            mask = valid.to(logits.dtype)
            denom = mask.sum().clamp_min(1.0)
            ce = F.cross_entropy(logits, classes, reduction="none")  # (B * h,)
            loss = (ce * mask).sum() / denom
            # Correct and valid, counted as an integer: the same value as the float32 sum
            # of 0/1 products (exact below 2**24) with one op fewer. No autograd to disable:
            # argmax and comparisons record none.
            correct = (logits.argmax(-1) == classes).logical_and_(valid)
            acc = correct.sum() / denom
            return loss, {"loss": loss.item(), "accuracy": acc.item()}
        out = flat.reshape(feats.shape[0], self.config.horizon, self.out_per_step)  # (B, h, D)
        mask = batch[ACTION_MASK].to(out.dtype)  # (B, h)
        denom = mask.sum().clamp_min(1.0)
        tgt = self.normalizer.normalize_action(target.to(out.dtype))
        err = (out - tgt).abs() if self.config.loss == "l1" else (out - tgt).square()
        loss = (err.mean(-1) * mask).sum() / denom
        return loss, {"loss": loss.item()}

    def predict_chunk_tensor(self, obs: dict[str, Tensor]) -> Tensor:
        """Raw observation history ``{key: (B, k, ...)}`` -> raw action chunk ``(B, h, ...)``."""
        out = self._head(obs)
        if self.discrete:
            return out.argmax(-1)
        return self.normalizer.unnormalize_action(out)
