"""Small builders shared by tests: specs and synthetic batches."""

from __future__ import annotations

import numpy as np

from il_core.constants import ACTION, ACTION_MASK, OBS, OBS_MASK
from il_core.spec import ActionSpec, DatasetSpec, FeatureSpec


def vector_spec(obs_dim: int = 4, discrete: int | None = None, act_dim: int = 2) -> DatasetSpec:
    """A one-key vector spec with a discrete (``discrete`` classes) or continuous action."""
    if discrete:
        action = ActionSpec("discrete", num_classes=discrete)
    else:
        action = ActionSpec(
            "continuous", dim=act_dim, low=(-1.0,) * act_dim, high=(1.0,) * act_dim
        )
    return DatasetSpec({"state": FeatureSpec("vector", (obs_dim,))}, action, 50.0)


def image_spec(cams: int = 2, size: int = 32) -> DatasetSpec:
    """A spec with a 3-d state and ``cams`` RGB cameras, continuous 2-d action."""
    obs = {"state": FeatureSpec("vector", (3,))}
    for i in range(cams):
        obs[f"cam{i}"] = FeatureSpec("image", (size, size, 3))
    return DatasetSpec(obs, ActionSpec("continuous", dim=2), 10.0)


def random_batch(
    spec: DatasetSpec, rng: np.random.Generator, b: int = 8, k: int = 1, h: int = 1
) -> dict:
    """A numpy window batch with random contents matching ``spec``."""
    obs = {}
    for key, f in spec.observations.items():
        if f.kind == "image":
            obs[key] = rng.integers(0, 256, (b, k, *f.shape), dtype=np.uint8)
        else:
            obs[key] = rng.normal(size=(b, k, *f.shape)).astype(np.float32)
    if spec.action.kind == "discrete":
        act = rng.integers(0, spec.action.num_classes, (b, h)).astype(np.int64)
    else:
        act = rng.uniform(-1, 1, (b, h, spec.action.dim)).astype(np.float32)
    return {
        OBS: obs,
        OBS_MASK: np.ones((b, k), bool),
        ACTION: act,
        ACTION_MASK: np.ones((b, h), bool),
    }
