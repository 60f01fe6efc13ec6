"""The il-core command line as scripts use it: real subprocesses, JSON on stdout."""

import json

import pytest

from tests.helpers import il_core


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    out = json.loads(
        il_core(
            "collect",
            "--env",
            "MountainCar-v0",
            "--expert",
            "auto",
            "--episodes",
            "3",
            "--seed",
            "0",
            "--out",
            root / "data",
        ).stdout
    )
    assert out["episodes"] == 3 and out["success_rate"] == 1.0
    summary = json.loads(
        il_core(
            "train",
            "--data",
            root / "data",
            "--policy",
            "bc",
            "--config",
            "config/bc_mountaincar.yaml",
            "--set",
            "train.steps=50",
            "--set",
            "policy.hidden_dims=[16]",
            "--seed",
            "0",
            "--out",
            root / "bc",
        ).stdout
    )
    assert summary["steps"] == 50
    return root


def test_eval_prints_one_json_line_with_required_keys(trained, tmp_path):
    proc = il_core(
        "eval",
        "--checkpoint",
        trained / "bc" / "policy.pt",
        "--env",
        "MountainCar-v0",
        "--episodes",
        "2",
        "--seed",
        "5",
        "--plot",
        tmp_path / "p.png",
        "--video",
        tmp_path / "v.gif",
        "--max-steps",
        "30",
    )
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1
    result = json.loads(lines[0])
    for key in ("episodes", "mean_return", "std_return", "success_rate", "seed"):
        assert key in result
    assert result["episodes"] == 2 and result["seed"] == 5
    assert (tmp_path / "p.png").stat().st_size > 1000
    assert (tmp_path / "v.gif").read_bytes()[:3] == b"GIF"


def test_info_summarises_dataset_and_checkpoint(trained):
    ds = json.loads(il_core("info", trained / "data").stdout)
    assert ds["type"] == "dataset" and ds["episodes"] == 3 and ds["success_rate"] == 1.0
    assert ds["spec"]["action"]["num_classes"] == 3
    ck = json.loads(il_core("info", trained / "bc" / "policy.pt").stdout)
    assert ck["type"] == "checkpoint" and ck["policy"] == "bc" and ck["step"] == 50
    assert ck["config"]["hidden_dims"] == [16]


def test_user_errors_exit_2_with_a_message_naming_the_culprit(trained, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  stepz: 3\n")
    proc = il_core(
        "train", "--data", trained / "data", "--config", bad, "--out", tmp_path / "o", check=False
    )
    assert proc.returncode == 2 and "bad.yaml: train: unknown keys ['stepz']" in proc.stderr
    assert "Traceback" not in proc.stderr
    proc = il_core(
        "eval",
        "--checkpoint",
        trained / "bc" / "policy.pt",
        "--env",
        "CartPole-v1",
        "--episodes",
        "1",
        check=False,
    )
    assert proc.returncode == 2 and "does not match the environment" in proc.stderr
    proc = il_core("info", tmp_path / "nothing", check=False)
    assert proc.returncode == 2 and "nothing" in proc.stderr
    proc = il_core(
        "collect", "--env", "NoSuchEnv-v9", "--episodes", "1", "--out", tmp_path / "d", check=False
    )
    assert proc.returncode == 2 and "NoSuchEnv-v9" in proc.stderr


def test_help_config_lists_every_key_with_default_and_meaning():
    """``il-core train --help-config POLICY``: the keys --set and YAML accept, then exit 0."""
    from il_core.policies import make_config
    from il_core.train import TrainConfig

    out = il_core("train", "--help-config", "diffusion").stdout
    keys = [line.split(":")[0].strip() for line in out.splitlines() if line.startswith("  ")]
    assert {"policy.down_dims", "policy.image_encoder.channels", "train.steps"} <= set(keys)
    assert any(k.startswith("augment.image.") for k in keys)
    # Every field of the configs is listed, and each line says what the key means.
    assert sum(k.startswith("policy.") for k in keys) >= len(vars(make_config("diffusion", {})))
    assert sum(k.startswith("train.") for k in keys) == len(vars(TrainConfig()))
    assert all("  # " in line for line in out.splitlines() if line.startswith("  "))
    bad = il_core("train", "--help-config", "nope", check=False)
    assert bad.returncode == 2 and "unknown policy 'nope'" in bad.stderr
