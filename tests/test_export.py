"""Exported policies (TorchScript, ONNX) act like the eager ones, numpy in and numpy out."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch

from il_core.batch import to_torch
from il_core.checkpoint import CheckpointError, save_checkpoint
from il_core.cli import main
from il_core.execution import PolicyExecutor
from il_core.export import ExportedPolicy, ExportError, export_policy, load_exported
from il_core.policies import Policy, make_policy
from il_core.policies.base import config_to_dict
from il_core.runtime import ExportedConfig, is_torchscript_export, load_runtime_policy
from il_core.spec import SpecError
from tests.helpers import image_spec, random_batch, vector_spec

FORMATS = ["onnx", "pt"]
CASES = {
    "bc": {"hidden_dims": [32, 32]},
    "bc_discrete": {"hidden_dims": [32, 32]},
    "mog": {"hidden_dims": [32, 32], "num_modes": 3, "inference": "sample"},
    "act": {
        "dim_model": 16,
        "n_heads": 2,
        "dim_feedforward": 32,
        "n_encoder_layers": 1,
        "n_vae_encoder_layers": 1,
        "latent_dim": 4,
    },
    "act_mlp": {"hidden_dims": [32, 32], "latent_dim": 4, "history_encoder": {"kind": "gru"}},
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


# -- the robot's loader --------------------------------------------------------------------


@pytest.fixture(scope="module")
def mog_files(tmp_path_factory):
    """A stochastic (mog) training checkpoint and its three kinds of export."""
    root = tmp_path_factory.mktemp("files")
    policy = _trained("mog", vector_spec(), np.random.default_rng(0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return {
            "policy": policy,
            "ckpt": save_checkpoint(root / "policy.pt", policy),
            "onnx": export_policy(policy, root / "policy.onnx"),
            "ts": export_policy(policy, root / "policy.ts"),
            "ts_pt": export_policy(policy, root / "policy_ts.pt"),
        }


@pytest.mark.parametrize(
    ("kind", "fmt"), [("onnx", "onnx"), ("ts", "torchscript"), ("ts_pt", "torchscript")]
)
def test_load_runtime_policy_opens_exports(mog_files, rng, kind, fmt):
    path = mog_files[kind]
    assert is_torchscript_export(path) == (fmt == "torchscript")
    loaded = load_runtime_policy(path, num_threads=1, seed=3)
    assert isinstance(loaded, ExportedPolicy) and loaded.format == fmt
    assert loaded.name == "mog" and loaded.spec == mog_files["policy"].spec
    obs = {"state": rng.normal(size=(2, 4)).astype(np.float32)}
    noise = loaded.draw_noise()
    np.testing.assert_allclose(
        loaded.predict_action_chunk(obs, noise), _eager(mog_files["policy"], obs, noise), atol=1e-5
    )
    # Seeded: a second load draws the same noise, so a robot run can be replayed.
    again = load_runtime_policy(path, seed=3)
    again.draw_noise()
    np.testing.assert_array_equal(loaded.draw_noise(), again.draw_noise())


def test_load_runtime_policy_opens_training_checkpoints(mog_files):
    assert not is_torchscript_export(mog_files["ckpt"])
    before = torch.get_num_threads()
    try:
        loaded = load_runtime_policy(mog_files["ckpt"], num_threads=2)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
    assert isinstance(loaded, Policy) and not loaded.training
    assert loaded.name == "mog" and loaded.config == mog_files["policy"].config


def test_load_runtime_policy_errors_name_the_file(tmp_path, mog_files):
    with pytest.raises(ExportError, match=r"missing\.onnx: policy file not found; expected"):
        load_runtime_policy(tmp_path / "missing.onnx")
    (tmp_path / "policy.bin").write_bytes(b"x")
    with pytest.raises(ExportError, match=r"policy\.bin: unknown policy file suffix '\.bin'"):
        load_runtime_policy(tmp_path / "policy.bin")
    (tmp_path / "junk.pt").write_bytes(b"neither a checkpoint nor an export")
    with pytest.raises(CheckpointError, match=r"junk\.pt: not a readable checkpoint"):
        load_runtime_policy(tmp_path / "junk.pt")
    (tmp_path / "junk.ts").write_bytes(b"not TorchScript")
    with pytest.raises(ExportError, match=r"junk\.ts: not a loadable TorchScript file"):
        load_runtime_policy(tmp_path / "junk.ts")
    with pytest.raises(ExportError, match="run on the CPU"):
        load_runtime_policy(mog_files["onnx"], device="cuda")
    with pytest.raises(ExportError, match="num_threads"):
        load_runtime_policy(mog_files["onnx"], num_threads=0)


# -- a stand-in for the eager policy ---------------------------------------------------------


def test_act_temporal_ensembling_survives_export(tmp_path, rng):
    policy = _trained(
        "act_mlp", vector_spec(), rng, n_action_steps=1, temporal_ensemble_coeff=0.05
    )
    exported = load_runtime_policy(export_policy(policy, tmp_path / "act.onnx"))
    assert exported.name == "act_mlp"
    assert exported.config.temporal_ensemble_coeff == 0.05
    assert exported.config.history_encoder.kind == "gru"  # sections read like dataclasses
    assert exported.config.hidden_dims == policy.config.hidden_dims == (32, 32)
    assert isinstance(exported.config, ExportedConfig)
    assert exported.config.to_dict() == config_to_dict(policy.config)
    eager, runtime = PolicyExecutor(policy), PolicyExecutor(exported)
    assert eager.temporal_ensemble_coeff == runtime.temporal_ensemble_coeff == 0.05
    assert runtime.n_action_steps == 1
    for t in range(6):
        obs = {"state": np.full(4, 0.1 * t, np.float32)}
        np.testing.assert_allclose(runtime.step(obs), eager.step(obs), atol=1e-5)
    assert runtime.inference_count == 6


def test_exported_config_reads_like_the_dataclass(tmp_path, rng):
    policy = _trained("bc", vector_spec(), rng, steps=1)
    exported = load_runtime_policy(export_policy(policy, tmp_path / "bc.onnx"))
    assert PolicyExecutor(exported).temporal_ensemble_coeff is None  # bc has no such field
    assert exported.config["horizon"] == exported.config.horizon == exported.horizon == 4
    assert exported.policy_name == exported.name == "bc"
    with pytest.raises(AttributeError, match="no field 'nonsense'"):
        exported.config.nonsense  # noqa: B018


# -- il-core export --------------------------------------------------------------------------


def _cli(capsys, *args):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        status = main(["export", *map(str, args)])
    out, err = capsys.readouterr()
    return status, out, err


@pytest.mark.parametrize(("suffix", "fmt"), [("onnx", "onnx"), ("ts", "torchscript")])
def test_cli_export_round_trip(tmp_path, capsys, mog_files, suffix, fmt):
    out_path = tmp_path / f"exported.{suffix}"
    status, out, err = _cli(
        capsys, "--checkpoint", mog_files["ckpt"], "--out", out_path, "--format", fmt
    )
    assert status == 0, err
    (line,) = out.splitlines()
    result = json.loads(line)
    assert result["type"] == "export" and result["policy"] == "mog"
    assert result["format"] == fmt and result["out"] == str(out_path)
    assert result["bytes"] == out_path.stat().st_size > 0
    assert result["inputs"] == [
        {"name": "state", "shape": [1, 2, 4], "dtype": "float32"},
        {"name": "noise", "shape": [1, *mog_files["policy"].noise_shape], "dtype": "float32"},
    ]
    assert result["output"] == {"name": "action", "shape": [1, 4, 2], "dtype": "float32"}
    assert 0.0 <= result["max_abs_diff"] < 1e-5
    assert load_runtime_policy(out_path).format == fmt


def test_cli_export_pt_means_torchscript_and_check_can_be_skipped(tmp_path, capsys, mog_files):
    status, out, err = _cli(
        capsys, "--checkpoint", mog_files["ckpt"], "--out", tmp_path / "x.pt", "--no-check"
    )
    assert status == 0, err
    result = json.loads(out)
    assert result["format"] == "torchscript" and result["max_abs_diff"] is None
    assert is_torchscript_export(tmp_path / "x.pt")


def test_cli_export_errors_exit_2_naming_the_file(tmp_path, capsys, mog_files):
    ckpt = mog_files["ckpt"]
    cases = [
        (["--checkpoint", tmp_path / "nope.pt", "--out", tmp_path / "p.onnx"], "nope.pt"),
        (["--checkpoint", ckpt, "--out", tmp_path / "p.bin"], "p.bin: cannot tell the format"),
        (["--checkpoint", ckpt, "--out", ckpt], "is the input checkpoint"),
        (["--checkpoint", ckpt, "--out", tmp_path / "p.pt", "--format", "onnx"], "p.pt: suffix"),
        (["--checkpoint", mog_files["ts"], "--out", tmp_path / "p.onnx"], "already an exported"),
    ]
    size = ckpt.stat().st_size
    for args, message in cases:
        status, out, err = _cli(capsys, *args)
        assert status == 2 and out == ""
        (line,) = err.splitlines()
        assert line.startswith("il-core export: error: ") and message in line, line
    assert ckpt.stat().st_size == size and not (tmp_path / "p.onnx").exists()
