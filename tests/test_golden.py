"""Backward compatibility: an il_core 0.1 (format 1) checkpoint loads and acts the same.

Regenerate the golden files only on a deliberate format change (golden/make_golden.py).
"""

import json
from pathlib import Path

import numpy as np

from il_core.checkpoint import load_policy

GOLDEN = Path(__file__).parent / "golden"


def test_golden_bc_checkpoint_outputs_are_pinned():
    policy = load_policy(GOLDEN / "bc_v1.pt")
    expected = json.loads((GOLDEN / "bc_v1.json").read_text())
    obs = np.asarray(expected["obs"], np.float32)
    chunk = policy.predict_action_chunk({"state": obs})
    assert chunk.shape == (3, 2)
    np.testing.assert_allclose(chunk, np.asarray(expected["chunk"]), rtol=1e-5, atol=1e-6)
    assert policy.spec.observations["state"].names == ("a", "b", "c")
