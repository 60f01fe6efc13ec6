"""Mixture-of-Gaussians policy: an MLP head outputs K weighted diagonal Gaussians per chunk.

A component covers the whole chunk ``(h, D)``, so one draw commits to one mode for all the
chunk's actions (per-step mixtures would let consecutive actions switch sides). Training
minimises the negative log-likelihood ``-log sum_k pi_k N(a | mu_k, sigma_k)`` computed with
``logsumexp`` over ``log pi_k + log N_k``, never by exponentiating densities; padded chunk
steps (``ACTION_MASK`` False) are left out of every component's log-density.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from il_core.config import ConfigError
from il_core.constants import ACTION, ACTION_MASK, OBS
from il_core.normalize import Normalizer
from il_core.policies import register_policy
from il_core.policies.base import Policy
from il_core.policies.encoders import ObservationEncoder, mlp
from il_core.policies.mog.configuration import MoGConfig
from il_core.spec import DatasetSpec

_LOG_2PI = math.log(2 * math.pi)


def normal_to_uniform(z: Tensor) -> Tensor:
    """Map standard-normal draws to uniform (0, 1) with the normal CDF (exportable)."""
    return 0.5 * (1.0 + torch.erf(z * (1.0 / math.sqrt(2.0))))


def categorical_from_uniform(probs: Tensor, u: Tensor) -> Tensor:
    """Inverse-CDF sampling: ``probs`` ``(B, K)``, ``u`` ``(B,)`` in (0, 1) -> ``(B,)`` int64.

    Written with cumsum and comparisons only, so TorchScript and ONNX export it unchanged.
    """
    below = (probs.cumsum(-1) < u.unsqueeze(-1)).sum(-1)
    return below.clamp(max=probs.shape[-1] - 1)


@register_policy("mog")
class MoGPolicy(Policy):
    """Mixture-of-Gaussians policy over normalised action chunks (continuous actions only)."""

    config_class = MoGConfig
    config: MoGConfig

    def __init__(
        self,
        config: MoGConfig,
        spec: DatasetSpec,
        stats: dict[str, dict[str, np.ndarray]] | None = None,
    ) -> None:
        super().__init__(config, spec, stats)
        if spec.action.kind != "continuous":
            raise ConfigError("policy 'mog' needs continuous actions")
        self.normalizer = Normalizer(spec, stats, obs_min_scale=config.obs_min_std)
        self.encoder = ObservationEncoder(
            spec,
            config.n_obs_steps,
            config.image_encoder,
            config.history_encoder,
            load_pretrained=stats is not None,
        )
        self.k = config.num_modes
        self.chunk_numel = config.horizon * spec.action.dim
        self.head = mlp(
            self.encoder.out_dim, config.hidden_dims, self.k * (1 + 2 * self.chunk_numel)
        )

    def _mixture(self, obs: dict[str, Tensor]) -> tuple[Tensor, Tensor, Tensor]:
        """Raw observations -> ``(logits (B, K), means (B, K, h, D), stds (B, K, h, D))``."""
        feats = self.encoder(self.normalizer.normalize_obs(obs))
        out = self.head(feats)
        b, k, n = out.shape[0], self.k, self.chunk_numel
        shape = (b, k, self.config.horizon, self.spec.action.dim)
        logits = out[:, :k]
        means = out[:, k : k + k * n].reshape(shape)
        stds = F.softplus(out[:, k + k * n :].reshape(shape)) + self.config.min_std
        return logits, means, stds

    def forward(self, batch: dict[str, Any]) -> tuple[Tensor, dict[str, float]]:
        """Mixture NLL per action element (masked); logs ``loss`` and ``mode_entropy``."""
        logits, means, stds = self._mixture(batch[OBS])
        target = self.normalizer.normalize_action(batch[ACTION].to(means.dtype)).unsqueeze(1)
        mask = batch[ACTION_MASK].to(means.dtype)  # (B, h)
        z = (target - means) / stds
        log_n = -0.5 * z.square() - stds.log() - 0.5 * _LOG_2PI  # (B, K, h, D)
        log_n = (log_n.sum(-1) * mask.unsqueeze(1)).sum(-1)  # (B, K)
        log_lik = torch.logsumexp(F.log_softmax(logits, -1) + log_n, dim=-1)  # (B,)
        n_valid = mask.sum(-1).clamp_min(1.0) * self.spec.action.dim
        loss = -(log_lik / n_valid).mean()
        with torch.no_grad():
            p = logits.softmax(-1)
            entropy = -(p * p.clamp_min(1e-12).log()).sum(-1).mean()
        return loss, {"loss": float(loss.detach()), "mode_entropy": float(entropy)}

    @property
    def noise_shape(self) -> tuple[int, ...] | None:
        """Per-sample standard-normal noise consumed at inference (None: deterministic).

        ``(1 + h * D,)``: the first value picks the component, the rest sample the Gaussian.
        """
        if self.config.inference == "mode":
            return None
        return (1 + self.chunk_numel,)

    def predict_chunk_tensor(self, obs: dict[str, Tensor], noise: Tensor | None = None) -> Tensor:
        """Raw observation histories ``{key: (B, k, ...)}`` -> raw chunks ``(B, h, D)``.

        Args:
            obs: Raw observations.
            noise: ``(B, *noise_shape)`` standard normal; drawn here when None.
        """
        logits, means, stds = self._mixture(obs)
        b = logits.shape[0]
        if self.config.inference == "mode":
            idx = logits.argmax(-1)
        else:
            if noise is None:
                noise = torch.randn((b, 1 + self.chunk_numel), device=logits.device)
            idx = categorical_from_uniform(logits.softmax(-1), normal_to_uniform(noise[:, 0]))
        onehot = (torch.arange(self.k, device=idx.device) == idx.unsqueeze(-1)).to(means.dtype)
        pick = onehot[:, :, None, None]
        action = (means * pick).sum(1)
        if self.config.inference == "sample" and noise is not None:
            eps = noise[:, 1:].reshape(action.shape)
            action = action + (stds * pick).sum(1) * eps
        return self.normalizer.unnormalize_action(action)
