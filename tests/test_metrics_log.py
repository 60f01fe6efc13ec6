"""Training and evaluation metrics in TensorBoard (read back with tensorboard's own reader)."""

import json
import subprocess
import sys

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from il_core.collect import collect
from il_core.config import ConfigError
from il_core.metrics_log import TENSORBOARD_DIR
from il_core.train import train

FAST = {
    "policy": {"name": "bc", "hidden_dims": [16, 16]},
    "train": {"steps": 60, "batch_size": 64, "log_every": 20, "val_every": 30, "num_threads": 1},
}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    out = tmp_path_factory.mktemp("cartpole") / "data"
    collect("CartPole-v1", "auto", 4, 0, out)
    return out


def _scalars(log_dir):
    acc = EventAccumulator(str(log_dir))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def test_train_writes_tensorboard_events_that_tensorboard_reads(tmp_path, data):
    summary = train([data], tmp_path / "run", FAST, seed=0, progress=False)
    scalars = _scalars(tmp_path / "run" / TENSORBOARD_DIR)
    assert [s for s, _ in scalars["train/loss"]] == [20, 40, 60]
    assert [s for s, _ in scalars["val/loss"]] == [30, 60]
    assert "train/lr" in scalars and "train/samples_per_s" in scalars
    # The same numbers as the CSV and the summary (float32 in the event file).
    assert scalars["train/loss"][-1][1] == pytest.approx(summary["train_loss"], rel=1e-5)
    assert scalars["val/loss"][-1][1] == pytest.approx(summary["val_loss"], rel=1e-5)


def test_eval_adds_its_results_at_the_checkpoint_step(tmp_path, data):
    ckpt = train([data], tmp_path / "run", FAST, seed=0, progress=False)["checkpoint"]
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "il_core.cli",
            "eval",
            "--checkpoint",
            ckpt,
            "--env",
            "CartPole-v1",
            "--episodes",
            "2",
            "--max-steps",
            "50",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    ).stdout
    result = json.loads(out.strip().splitlines()[-1])
    assert result["tensorboard"] == str(tmp_path / "run" / TENSORBOARD_DIR)
    scalars = _scalars(tmp_path / "run" / TENSORBOARD_DIR)
    assert scalars["eval/CartPole-v1/mean_return"] == [
        (60, pytest.approx(result["mean_return"], rel=1e-5))
    ]


def test_tensorboard_off_and_wandb_missing(tmp_path, data):
    cfg = {**FAST, "train": {**FAST["train"], "tensorboard": False}}
    train([data], tmp_path / "off", cfg, seed=0, progress=False)
    assert not (tmp_path / "off" / TENSORBOARD_DIR).exists()
    assert (tmp_path / "off" / "metrics.csv").is_file()
    cfg = {**FAST, "train": {**FAST["train"], "wandb": True}}
    try:
        import wandb  # noqa: F401
    except ImportError:
        with pytest.raises(ConfigError, match="train.wandb is true but the 'wandb' package"):
            train([data], tmp_path / "wb", cfg, seed=0, progress=False)
    else:
        pytest.skip("wandb is installed here: the missing-package error cannot be shown")
