"""Training and evaluation metrics in TensorBoard (read back with tensorboard's own reader)."""

import importlib.util

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from il_core.config import ConfigError
from il_core.metrics_log import TENSORBOARD_DIR
from il_core.train import train
from tests.helpers import FAST_TRAIN, il_core_json


def _scalars(log_dir):
    acc = EventAccumulator(str(log_dir))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def _with(**train_keys):
    return {**FAST_TRAIN, "train": {**FAST_TRAIN["train"], **train_keys}}


def test_train_writes_tensorboard_events_that_tensorboard_reads(tmp_path, cartpole_data):
    summary = train([cartpole_data], tmp_path / "run", FAST_TRAIN, seed=0, progress=False)
    scalars = _scalars(tmp_path / "run" / TENSORBOARD_DIR)
    assert [s for s, _ in scalars["train/loss"]] == [20, 40, 60]
    assert [s for s, _ in scalars["val/loss"]] == [30, 60]
    assert "train/lr" in scalars and "train/samples_per_s" in scalars
    # The same numbers as the CSV and the summary (float32 in the event file).
    assert scalars["train/loss"][-1][1] == pytest.approx(summary["train_loss"], rel=1e-5)
    assert scalars["val/loss"][-1][1] == pytest.approx(summary["val_loss"], rel=1e-5)


def test_eval_adds_its_results_at_the_checkpoint_step(tmp_path, cartpole_data):
    ckpt = train([cartpole_data], tmp_path / "run", FAST_TRAIN, seed=0, progress=False)[
        "checkpoint"
    ]
    result = il_core_json(
        "eval", "--checkpoint", ckpt, "--env", "CartPole-v1", "--episodes", 2, "--max-steps", 50
    )
    assert result["checkpoint_step"] == 60
    assert result["tensorboard"] == str(tmp_path / "run" / TENSORBOARD_DIR)
    scalars = _scalars(tmp_path / "run" / TENSORBOARD_DIR)
    assert scalars["eval/CartPole-v1/mean_return"] == [
        (60, pytest.approx(result["mean_return"], rel=1e-5))
    ]


def test_tensorboard_off_writes_only_the_csv(tmp_path, cartpole_data):
    train([cartpole_data], tmp_path / "off", _with(tensorboard=False), seed=0, progress=False)
    assert not (tmp_path / "off" / TENSORBOARD_DIR).exists()
    assert (tmp_path / "off" / "metrics.csv").is_file()


@pytest.mark.skipif(
    importlib.util.find_spec("wandb") is not None,
    reason="wandb is installed: the missing-package error cannot happen",
)
def test_wandb_asked_for_without_the_package_is_a_clear_error(tmp_path, cartpole_data):
    with pytest.raises(ConfigError, match="train.wandb is true but the 'wandb' package"):
        train([cartpole_data], tmp_path / "wb", _with(wandb=True), seed=0, progress=False)
