"""Training loop: determinism, resume, validation split, metrics, DDP under torchrun."""

import csv
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from il_core.checkpoint import load_policy, read_checkpoint
from il_core.config import ConfigError
from il_core.train import split_episodes, train
from tests.helpers import FAST_TRAIN as FAST


def _weights(path):
    return read_checkpoint(path)["state_dict"]


def test_split_is_by_episode_and_seeded():
    tr, va = split_episodes(10, 0.2, seed=3)
    assert len(va) == 2 and sorted(tr + va) == list(range(10))
    assert (tr, va) == split_episodes(10, 0.2, seed=3)
    assert split_episodes(1, 0.5, 0) == ([0], [])
    assert split_episodes(5, 0.0, 0) == ([0, 1, 2, 3, 4], [])


def test_training_is_deterministic_on_cpu(tmp_path, cartpole_data):
    a = train([cartpole_data], tmp_path / "a", FAST, seed=1, progress=False)
    b = train([cartpole_data], tmp_path / "b", FAST, seed=1, progress=False)
    c = train([cartpole_data], tmp_path / "c", FAST, seed=2, progress=False)
    wa, wb, wc = (_weights(s["checkpoint"]) for s in (a, b, c))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert not all(torch.equal(wa[k], wc[k]) for k in wa)
    assert a["val_episodes"] == 1 and a["train_episodes"] == 3
    assert a["val_loss"] is not None and np.isfinite(a["val_loss"])


def test_metrics_csv_and_resolved_config_are_written(tmp_path, cartpole_data):
    train([cartpole_data], tmp_path / "run", FAST, seed=0, progress=False)
    rows = list(csv.DictReader((tmp_path / "run" / "metrics.csv").open()))
    train_loss = [float(r["value"]) for r in rows if r["split"] == "train" and r["name"] == "loss"]
    assert [int(r["step"]) for r in rows if r["name"] == "loss" and r["split"] == "train"] == [
        20,
        40,
        60,
    ]
    assert train_loss[-1] < train_loss[0]
    assert any(r["split"] == "val" for r in rows)
    assert "hidden_dims" in (tmp_path / "run" / "config.yaml").read_text()


def test_resume_continues_exactly(tmp_path, cartpole_data):
    cfg = {**FAST, "train": {**FAST["train"], "checkpoint_every": 30}}
    full = train([cartpole_data], tmp_path / "full", cfg, seed=0, progress=False)
    half = {**FAST, "train": {**FAST["train"], "steps": 30, "checkpoint_every": 30}}
    train([cartpole_data], tmp_path / "half", half, seed=0, progress=False)
    resumed = train(
        [cartpole_data],
        tmp_path / "half",
        {"train": {"steps": 60}},
        seed=0,
        resume=tmp_path / "half" / "last.pt",
        progress=False,
    )
    wf, wr = _weights(full["checkpoint"]), _weights(resumed["checkpoint"])
    assert all(torch.allclose(wf[k], wr[k]) for k in wf)


def test_bad_train_config_is_refused_before_training(tmp_path, cartpole_data):
    with pytest.raises(ConfigError, match="train: unknown keys \\['epochs'\\]"):
        train([cartpole_data], tmp_path / "x", {"train": {"epochs": 3}}, progress=False)
    assert not (tmp_path / "x" / "policy.pt").exists()


def test_ddp_two_processes_gloo(tmp_path, cartpole_data):
    """A 2-process CPU run under torchrun (gloo) trains and writes one checkpoint."""
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    # --standalone: a local rendezvous on a free port, so parallel test runs never collide.
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        "-m",
        "il_core",
        "train",
        "--data",
        str(cartpole_data),
        "--seed",
        "0",
        "--out",
        str(out),
        "--set",
        "train.steps=40",
        "--set",
        "train.batch_size=64",
        "--set",
        "policy.hidden_dims=[16]",
        "--set",
        "train.device=cpu",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    policy = load_policy(out / "policy.pt")
    assert policy.predict_action_chunk({"state": np.zeros((1, 4), np.float32)}).shape == (1,)
    # Both ranks printed the summary line; rank 0 wrote the checkpoint once.
    assert proc.stdout.count('"checkpoint"') == 2


def _same(a, b) -> None:
    if isinstance(b, dict):
        assert set(a) == set(b)
        for k in b:
            _same(a[k], b[k])
    else:
        assert a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)


@pytest.mark.parametrize(
    "history, horizon, batch, rank, world, start, steps, chunk_bytes",
    [
        (1, 1, 32, 0, 1, 0, 300, None),
        (2, 4, 7, 1, 2, 5, 200, None),
        (3, 2, 64, 0, 1, 17, 90, 20000),
    ],
)
def test_chunked_batches_equal_the_per_step_batches(
    cartpole_data, monkeypatch, history, horizon, batch, rank, world, start, steps, chunk_bytes
):
    """The in-process loop gathers many steps' windows at once: value for value the same."""
    import il_core.train as T
    from il_core.batch import to_torch
    from il_core.data import EpisodeDataset

    if chunk_bytes:  # a chunk of a few steps: chunk boundaries inside epochs
        monkeypatch.setattr(T, "_CHUNK_BYTES", chunk_bytes)
    ds = EpisodeDataset(cartpole_data)
    idx = ds.step_indices()

    def batches() -> T._WindowBatches:
        sampler = T._BatchSampler(idx, batch, 3, rank, world)
        return T._WindowBatches(ds, sampler, history, horizon, None, start, steps)

    ref, chunked = batches(), T._ChunkedBatches(batches(), torch.device("cpu"), False)
    for step in range(start, steps):
        _same(chunked(step), to_torch(ref.batch(step), torch.device("cpu")))
    assert chunked._steps_per_chunk > 1  # it did chunk
