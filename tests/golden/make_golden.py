"""Regenerate the golden checkpoint and outputs (only when the format changes on purpose).

Usage: python tests/golden/make_golden.py
"""

import json
from pathlib import Path

import numpy as np
import torch

from il_core.checkpoint import save_checkpoint
from il_core.policies import make_policy
from il_core.spec import ActionSpec, DatasetSpec, FeatureSpec

HERE = Path(__file__).parent


def main() -> None:
    """Write bc_v1.pt and bc_v1.json beside this file."""
    torch.manual_seed(0)
    spec = DatasetSpec(
        {"state": FeatureSpec("vector", (3,), names=("a", "b", "c"))},
        ActionSpec("continuous", dim=2, low=(-2.0, -2.0), high=(2.0, 2.0)),
        20.0,
    )
    stats = {
        "obs.state": {"mean": np.array([0.5, -1.0, 2.0]), "std": np.array([2.0, 0.5, 1.0])},
        "action": {"mean": np.array([0.1, -0.1]), "std": np.array([0.5, 0.2])},
    }
    policy = make_policy(
        "bc",
        {"hidden_dims": [8], "n_obs_steps": 2, "horizon": 3, "n_action_steps": 2},
        spec,
        stats,
    )
    save_checkpoint(HERE / "bc_v1.pt", policy)
    obs = np.linspace(-1, 1, 6, dtype=np.float32).reshape(2, 3)
    chunk = policy.predict_action_chunk({"state": obs})
    (HERE / "bc_v1.json").write_text(json.dumps({"obs": obs.tolist(), "chunk": chunk.tolist()}))


if __name__ == "__main__":
    main()
