"""What the two ACT policies (``act``, the transformer, and ``act_mlp``) share as CVAEs.

Both train a conditional VAE over action chunks with the same objective and the same
settings (``latent_dim``, ``kl_weight``, ``loss``, ``inference_latent``,
``temporal_ensemble_coeff``); they differ only in their encoders and decoders.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor

from il_core.config import ConfigError


def check_cvae_config(cfg: Any) -> None:
    """Validate the shared CVAE settings of an ACT config (raises :class:`ConfigError`)."""
    if cfg.latent_dim < 1:
        raise ConfigError(f"latent_dim must be >= 1, got {cfg.latent_dim}")
    if cfg.kl_weight < 0:
        raise ConfigError(f"kl_weight must be >= 0, got {cfg.kl_weight}")
    if cfg.temporal_ensemble_coeff is not None:
        if cfg.temporal_ensemble_coeff < 0:
            raise ConfigError("temporal_ensemble_coeff must be >= 0 (or null)")
        if cfg.n_action_steps != 1:
            raise ConfigError(
                f"temporal_ensemble_coeff needs n_action_steps 1 (a chunk every tick), "
                f"got {cfg.n_action_steps}"
            )


def kl_to_standard_normal(mu: Tensor, logvar: Tensor) -> Tensor:
    """``KL(N(mu, exp(logvar)) || N(0, I))`` summed over the latent, mean over the batch.

    Args:
        mu: ``(B, Z)`` posterior means.
        logvar: ``(B, Z)`` posterior log-variances.
    """
    return (-0.5 * (1 + logvar - mu.square() - logvar.exp())).sum(-1).mean()


def cvae_loss(
    pred: Tensor, target: Tensor, mask: Tensor, kl: Tensor, cfg: Any
) -> tuple[Tensor, dict[str, float]]:
    """Masked reconstruction (``cfg.loss``: l1 | mse) + ``cfg.kl_weight`` * KL, and its logs.

    Args:
        pred: ``(B, h, D)`` predicted normalised chunk.
        target: ``(B, h, D)`` normalised target chunk.
        mask: ``(B, h)`` 1 where the target action is real (not padding, labelled).
        kl: The KL term (a scalar; zero without a VAE encoder).
        cfg: The policy config.

    Returns:
        ``(loss, {"loss", "recon", "kl"})``.
    """
    err = (pred - target).abs() if cfg.loss == "l1" else (pred - target).square()
    recon = (err.mean(-1) * mask).sum() / mask.sum().clamp_min(1.0)
    loss = recon + cfg.kl_weight * kl
    return loss, {
        "loss": float(loss.detach()),
        "recon": float(recon.detach()),
        "kl": float(kl.detach()),
    }


def latent_noise_shape(cfg: Any) -> tuple[int, ...] | None:
    """Per-sample noise of a CVAE policy: its prior draw of z, or None at the prior mean."""
    return None if cfg.inference_latent == "prior_mean" else (cfg.latent_dim,)
