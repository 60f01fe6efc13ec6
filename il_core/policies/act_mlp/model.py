"""ACT-style conditional VAE: a latent z picks among the chunks an observation allows.

Training: the CVAE encoder ``q(z | obs, chunk)`` sees the observation features and the
(normalised, padding-zeroed) expert chunk and outputs a diagonal Gaussian; z is sampled with
the reparameterisation trick; the decoder ``p(chunk | obs, z)`` reconstructs the chunk.
Loss = masked L1 (or MSE) + ``kl_weight * KL(q || N(0, I))``. Acting: the encoder is not
used; the decoder runs on the prior mean z = 0 (ACT), or on a prior sample.

ACT proper uses transformers for both halves; here they are MLPs over the encoded history
(CPU-sized), which keeps the same training objective and inference rule.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from il_core.config import ConfigError
from il_core.constants import ACTION, ACTION_MASK, OBS
from il_core.normalize import Normalizer
from il_core.policies import register_policy
from il_core.policies.act_mlp.configuration import ACTMLPConfig
from il_core.policies.base import Policy
from il_core.policies.cvae import cvae_loss, kl_to_standard_normal, latent_noise_shape
from il_core.policies.encoders import ObservationEncoder, mlp
from il_core.spec import DatasetSpec


@register_policy("act_mlp")
class ACTMLPPolicy(Policy):
    """Conditional VAE over action chunks (continuous actions only)."""

    config_class = ACTMLPConfig
    config: ACTMLPConfig

    def __init__(
        self,
        config: ACTMLPConfig,
        spec: DatasetSpec,
        stats: dict[str, dict[str, np.ndarray]] | None = None,
    ) -> None:
        super().__init__(config, spec, stats)
        if spec.action.kind != "continuous":
            raise ConfigError("policy 'act_mlp' needs continuous actions")
        self.normalizer = Normalizer(spec, stats, obs_min_scale=config.obs_min_std)
        self.encoder = ObservationEncoder(
            spec,
            config.n_obs_steps,
            config.image_encoder,
            config.history_encoder,
            load_pretrained=stats is not None,
        )
        self.chunk_numel = config.horizon * spec.action.dim
        f = self.encoder.out_dim
        self.posterior = mlp(f + self.chunk_numel, config.hidden_dims, 2 * config.latent_dim)
        self.decoder = mlp(f + config.latent_dim, config.hidden_dims, self.chunk_numel)

    def _decode(self, feats: Tensor, z: Tensor) -> Tensor:
        """Features ``(B, F)`` and latent ``(B, Z)`` -> normalised chunk ``(B, h, D)``."""
        out = self.decoder(torch.cat([feats, z], dim=-1))
        return out.reshape(feats.shape[0], self.config.horizon, self.spec.action.dim)

    def forward(self, batch: dict[str, Any]) -> tuple[Tensor, dict[str, float]]:
        """CVAE loss; logs ``loss``, ``recon`` and ``kl``."""
        feats = self.encoder(self.normalizer.normalize_obs(batch[OBS]))
        target = self.normalizer.normalize_action(batch[ACTION].to(feats.dtype))
        mask = batch[ACTION_MASK].to(feats.dtype)
        chunk_in = (target * mask.unsqueeze(-1)).reshape(feats.shape[0], -1)
        mu, logvar = self.posterior(torch.cat([feats, chunk_in], -1)).chunk(2, dim=-1)
        z = mu + (0.5 * logvar).exp() * torch.randn_like(mu)
        pred = self._decode(feats, z)
        return cvae_loss(pred, target, mask, kl_to_standard_normal(mu, logvar), self.config)

    @property
    def noise_shape(self) -> tuple[int, ...] | None:
        """Per-sample standard-normal noise (the prior draw of z), None at the prior mean."""
        return latent_noise_shape(self.config)

    def predict_chunk_tensor(self, obs: dict[str, Tensor], noise: Tensor | None = None) -> Tensor:
        """Raw observation histories ``{key: (B, k, ...)}`` -> raw chunks ``(B, h, D)``.

        Args:
            obs: Raw observations.
            noise: ``(B, latent_dim)`` prior draw for ``inference_latent: sample`` (drawn
                here when None); ignored at the prior mean.
        """
        feats = self.encoder(self.normalizer.normalize_obs(obs))
        shape = (feats.shape[0], self.config.latent_dim)
        if self.config.inference_latent == "prior_mean":
            z = feats.new_zeros(shape)
        else:
            z = torch.randn(shape, device=feats.device) if noise is None else noise
        return self.normalizer.unnormalize_action(self._decode(feats, z))
