"""Exported policies (TorchScript, ONNX) act like the eager ones, numpy in and numpy out."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from il_core.batch import to_torch
from il_core.execution import PolicyExecutor
from il_core.export import ExportedPolicy, ExportError, export_policy, load_exported
from il_core.policies import make_policy
from il_core.spec import SpecError
from tests.helpers import image_spec, random_batch, vector_spec

pytest.importorskip("onnxruntime")

FORMATS = ["onnx", "pt"]
CASES = {
    "bc": {"hidden_dims": [32, 32]},
    "bc_discrete": {"hidden_dims": [32, 32]},
    "mog": {"hidden_dims": [32, 32], "num_modes": 3, "inference": "sample"},
    "act": {"hidden_dims": [32, 32], "latent_dim": 4, "history_encoder": {"kind": "gru"}},
    "ar": {"hidden_dims": [32, 32], "num_bins": 16, "history_encoder": {"kind": "transformer"}},
    "diffusion": {
        "down_dims": [16, 32],
        "diffusion_step_embed_dim": 16,
        "n_groups": 4,
        "num_inference_steps": 3,
        "ddim_eta": 0.5,  # per-step noise too: every noise input must line up
    },
}


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # Tiny models on a shared 2-core machine: a second thread only adds contention.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def _quiet_exporter():
    # The legacy (TorchScript-based) ONNX exporter warns that it is legacy; that is the point.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def _trained(case: str, spec, rng, steps: int = 5, **extra):
    """A policy after a few optimiser steps (weights away from their initial values)."""
    name = "bc" if case.startswith("bc") else case
    cfg = {"n_obs_steps": 2, "horizon": 4, "n_action_steps": 2, **CASES[case], **extra}
    torch.manual_seed(0)
    policy = make_policy(name, cfg, spec)
    opt = torch.optim.AdamW(policy.parameters(), lr=1e-2)
    for step in range(steps):
        loss, _ = policy(to_torch(random_batch(spec, rng, b=16, k=2, h=4), torch.device("cpu")))
        opt.zero_grad()
        loss.backward()
        opt.step()
        policy.after_optimizer_step(step + 1)
    return policy.eval()


def _eager(policy, obs, noise):
    batch = {k: torch.from_numpy(v)[None] for k, v in obs.items()}
    with torch.inference_mode():
        if noise is None:
            out = policy.predict_chunk_tensor(batch)
        else:
            out = policy.predict_chunk_tensor(batch, noise=torch.from_numpy(noise))
    return policy.spec.action.clip(out[0].numpy())


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("case", list(CASES))
def test_exported_actions_match_eager(tmp_path, rng, case, fmt):
    spec = vector_spec(discrete=3) if case == "bc_discrete" else vector_spec()
    policy = _trained(case, spec, rng)
    exported = ExportedPolicy(export_policy(policy, tmp_path / f"policy.{fmt}"), seed=0)
    assert exported.noise_shape == getattr(policy, "noise_shape", None)
    assert (exported.n_obs_steps, exported.horizon, exported.n_action_steps) == (2, 4, 2)
    assert exported.spec == policy.spec
    for _ in range(3):
        obs = {"state": rng.normal(size=(2, 4)).astype(np.float32)}
        noise = exported.draw_noise()  # fixed noise: the same draw goes to both
        got = exported.predict_action_chunk(obs, noise)
        want = _eager(policy, obs, noise)
        assert got.shape == want.shape and got.dtype == want.dtype
        if want.dtype == np.int64:
            np.testing.assert_array_equal(got, want)
        else:
            np.testing.assert_allclose(got, want, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("fmt", FORMATS)
def test_camera_diffusion_with_gru_history_exports(tmp_path, rng, fmt):
    spec = image_spec(cams=1, size=24)
    image = {"channels": [4, 8], "strides": [2, 1], "feature_dim": 8}
    policy = _trained("diffusion", spec, rng, image_encoder=image, history_encoder={"kind": "gru"})
    exported = load_exported(export_policy(policy, tmp_path / f"cam.{fmt}"), seed=1)
    obs = {
        "state": rng.normal(size=(2, 3)).astype(np.float32),
        "cam0": rng.integers(0, 256, (2, 24, 24, 3), dtype=np.uint8),
    }
    noise = exported.draw_noise()
    np.testing.assert_allclose(
        exported.predict_action_chunk(obs, noise), _eager(policy, obs, noise), atol=1e-4
    )


def test_exported_policy_runs_in_the_executor_and_is_seeded(tmp_path, rng):
    policy = _trained("mog", vector_spec(), rng)
    path = export_policy(policy, tmp_path / "mog.onnx")
    runs = []
    for _ in range(2):
        exported = ExportedPolicy(path, seed=7)
        ex = PolicyExecutor(exported)
        runs.append([ex.step({"state": np.full(4, t, np.float32)}) for t in range(5)])
        assert ex.inference_count == 3
    np.testing.assert_array_equal(np.stack(runs[0]), np.stack(runs[1]))
    exported.reset()
    assert exported.select_action({"state": np.zeros(4, np.float32)}).shape == (2,)


def test_bad_inputs_and_files_are_named(tmp_path, rng):
    policy = _trained("bc", vector_spec(), rng, steps=1)
    exported = ExportedPolicy(export_policy(policy, tmp_path / "bc.pt"))
    with pytest.raises(SpecError, match="'state' missing"):
        exported.predict_action_chunk({"pos": np.zeros((2, 4), np.float32)})
    with pytest.raises(SpecError, match="history shape"):
        exported.predict_action_chunk({"state": np.zeros((1, 4), np.float32)})
    with pytest.raises(ExportError, match="suffix"):
        export_policy(policy, tmp_path / "bc.bin")
    with pytest.raises(ExportError, match="not found"):
        ExportedPolicy(tmp_path / "missing.onnx")
    (tmp_path / "junk.onnx").write_bytes(b"not a model")
    with pytest.raises(ExportError, match="junk.onnx"):
        ExportedPolicy(tmp_path / "junk.onnx")
