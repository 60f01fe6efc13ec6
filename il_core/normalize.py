"""Normalisation that lives inside the policy and travels with its weights in the checkpoint.

Statistics come from :meth:`il_core.data.EpisodeDataset.stats` at training time and are stored
as buffers, so a loaded policy needs nothing but its checkpoint to map raw observations to
network inputs and network outputs back to raw actions.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from torch import Tensor, nn

from il_core.spec import DatasetSpec

NormMode = Literal["mean_std", "min_max", "identity"]

# Below this spread a feature is treated as constant: centred but not scaled, so that an
# unseen value at run time does not explode by 1/std.
_MIN_SCALE = 1e-6


def _affine_from_stats(
    stats: dict[str, np.ndarray] | None, dim: int, mode: NormMode
) -> tuple[np.ndarray, np.ndarray]:
    """Return (offset, scale) such that normalised = (x - offset) / scale."""
    offset: np.ndarray = np.zeros(dim, dtype=np.float32)
    scale: np.ndarray = np.ones(dim, dtype=np.float32)
    if stats is None or mode == "identity":
        return offset, scale
    if mode == "mean_std":
        offset = np.asarray(stats["mean"], dtype=np.float32).reshape(dim)
        scale = np.asarray(stats["std"], dtype=np.float32).reshape(dim)
    elif mode == "min_max":
        lo = np.asarray(stats["min"], dtype=np.float32).reshape(dim)
        hi = np.asarray(stats["max"], dtype=np.float32).reshape(dim)
        offset, scale = (hi + lo) / 2, (hi - lo) / 2
    else:
        raise ValueError(f"unknown normalisation mode {mode!r}")
    scale = np.where(np.abs(scale) < _MIN_SCALE, 1.0, scale).astype(np.float32)
    return offset.astype(np.float32), scale


class Normalizer(nn.Module):
    """Per-key affine normalisation of vector observations, images and continuous actions.

    Buffers (saved in ``state_dict``): ``obs_<i>_offset``/``obs_<i>_scale`` for the i-th
    observation key of the spec (images: per channel, applied after scaling to [0, 1]) and
    ``action_offset``/``action_scale`` for continuous actions.

    Args:
        spec: The dataset spec.
        stats: Output of ``EpisodeDataset.stats()``; ``None`` leaves identity transforms to
            be filled by ``load_state_dict``.
        obs_mode: Mode for vector observations.
        action_mode: Mode for continuous actions (``min_max`` maps the data range to
            [-1, 1], which diffusion-style policies need).
        image_mode: ``mean_std`` uses per-channel statistics; ``identity`` keeps [0, 1].
        obs_min_scale: Floor of the vector-observation scale, in the data's own units (0:
            none beyond treating a constant feature as constant). A feature that barely
            moves in the demonstrations (a gripper the expert never uses: std 0.001) would
            otherwise turn a deviation of a few millimetres at run time into a z-score of
            5-20, far outside anything the network was trained on; the policy's own small
            error then feeds back through it (MetaWorld reach: 55% -> 80% success with
            ``0.01``).
    """

    # Registered buffers (continuous actions only), declared for the type checker.
    action_offset: Tensor
    action_scale: Tensor

    def __init__(
        self,
        spec: DatasetSpec,
        stats: dict[str, dict[str, np.ndarray]] | None = None,
        obs_mode: NormMode = "mean_std",
        action_mode: NormMode = "mean_std",
        image_mode: NormMode = "mean_std",
        obs_min_scale: float = 0.0,
    ) -> None:
        super().__init__()
        if not obs_min_scale >= 0:
            raise ValueError(f"obs_min_scale must be >= 0, got {obs_min_scale}")
        self.obs_keys = list(spec.observations)
        self.image_keys = set(spec.image_keys)
        for i, (key, feat) in enumerate(spec.observations.items()):
            if feat.kind == "image":
                dim, mode = feat.shape[2], image_mode
                if mode == "min_max":
                    mode = "identity"
            else:
                dim, mode = feat.shape[0], obs_mode
            key_stats = None if stats is None else stats.get(f"obs.{key}")
            off, sc = _affine_from_stats(key_stats, dim, mode)
            if feat.kind != "image" and mode != "identity" and obs_min_scale > 0:
                sc = np.maximum(sc, np.float32(obs_min_scale))
            self.register_buffer(f"obs_{i}_offset", torch.from_numpy(off))
            self.register_buffer(f"obs_{i}_scale", torch.from_numpy(sc))
        self.continuous = spec.action.kind == "continuous"
        if self.continuous:
            a_stats = None if stats is None else stats.get("action")
            off, sc = _affine_from_stats(a_stats, spec.action.dim, action_mode)
            self.register_buffer("action_offset", torch.from_numpy(off))
            self.register_buffer("action_scale", torch.from_numpy(sc))

    def normalize_obs(self, obs: dict[str, Tensor]) -> dict[str, Tensor]:
        """Normalise an observation dict.

        Args:
            obs: Vectors ``(..., D)`` float; images ``(..., H, W, C)`` uint8.

        Returns:
            Vectors ``(..., D)`` float32; images ``(..., C, H, W)`` float32 (channels first,
            scaled to [0, 1] then normalised per channel).
        """
        out: dict[str, Tensor] = {}
        for i, key in enumerate(self.obs_keys):
            x = obs[key]
            off = getattr(self, f"obs_{i}_offset")
            sc = getattr(self, f"obs_{i}_scale")
            if key in self.image_keys:
                x = x.to(torch.float32).div_(255.0)
                x = (x - off) / sc
                out[key] = x.movedim(-1, -3)
            else:
                out[key] = (x.to(torch.float32) - off) / sc
        return out

    def normalize_action(self, action: Tensor) -> Tensor:
        """Raw continuous action ``(..., D)`` to network space."""
        return (action - self.action_offset) / self.action_scale

    def unnormalize_action(self, action: Tensor) -> Tensor:
        """Network-space action ``(..., D)`` back to raw units."""
        return action * self.action_scale + self.action_offset
