"""Small builders shared by tests: specs and synthetic batches."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

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


#: A training config that takes about a second on CartPole (tests of the loop, not quality).
FAST_TRAIN = {
    "policy": {"hidden_dims": [16, 16]},
    "train": {"steps": 60, "batch_size": 64, "log_every": 20, "val_every": 30, "num_threads": 1},
}


def il_core(*args: Any, check: bool = True) -> subprocess.CompletedProcess:
    """Run ``python -m il_core ARGS`` as a script would; fail on a non-zero exit if ``check``."""
    proc = subprocess.run(
        [sys.executable, "-m", "il_core", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if check:
        assert proc.returncode == 0, proc.stderr[-2000:]
    return proc


def il_core_json(*args: Any) -> dict:
    """:func:`il_core` that succeeds, and the JSON line it printed last."""
    return json.loads(il_core(*args).stdout.strip().splitlines()[-1])
