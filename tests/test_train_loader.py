"""Training at scale: DataLoader workers (CPU), bf16 autocast and torch.compile (CUDA only)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import il_core.train as train_mod
from il_core.augment import Augmenter
from il_core.checkpoint import read_checkpoint
from il_core.config import ConfigError, from_dict, parse_overrides
from il_core.data import DatasetWriter, EpisodeDataset
from il_core.train import (
    TrainConfig,
    _batch_loader,
    _BatchSampler,
    _WindowBatches,
    resolve_augment,
    resolve_config,
    train,
)
from tests.helpers import FAST_TRAIN as FAST
from tests.helpers import image_spec

CUDA = torch.cuda.is_available()
needs_cuda = pytest.mark.skipif(not CUDA, reason="needs a CUDA device")

#: A tiny image policy: one 32x32 camera, a small conv encoder.
IMAGE_TRAIN = {
    "policy": {"name": "bc", "hidden_dims": [16]},
    "train": {"steps": 8, "batch_size": 8, "log_every": 4, "val_every": 0, "num_threads": 1},
}


@pytest.fixture(scope="module")
def image_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """4 episodes x 12 steps of a 3-d state, one 32x32 PNG camera, 2-d action."""
    root = tmp_path_factory.mktemp("img") / "ds"
    rng = np.random.default_rng(0)
    with DatasetWriter(root, image_spec(cams=1, size=32)) as w:
        for e in range(4):
            w.start_episode({"e": e})
            for t in range(12):
                obs = {
                    "state": rng.normal(size=3).astype(np.float32),
                    "cam0": rng.integers(0, 256, (32, 32, 3), dtype=np.uint8),
                }
                w.add_step(obs, rng.uniform(-1, 1, 2).astype(np.float32), 0.1 * t)
            w.end_episode()
    return root


def _weights(path):
    return read_checkpoint(path)["state_dict"]


def _equal(a: dict, b: dict) -> bool:
    return all(torch.equal(a[k], b[k]) for k in a)


def _assert_same(got, want) -> None:
    if isinstance(want, dict):
        assert set(got) == set(want)
        for k in want:
            _assert_same(got[k], want[k])
    else:
        np.testing.assert_array_equal(np.asarray(got), want)


def test_config_fields_and_checks():
    cfg = from_dict(TrainConfig, {"precision": "bf16", "compile": True, "num_workers": 2})
    assert (cfg.precision, cfg.compile, cfg.num_workers) == ("bf16", True, 2)
    assert TrainConfig().num_workers == 0 and TrainConfig().precision == "fp32"
    sets = ["train.precision=bf16", "train.compile=true", "train.num_workers=3"]
    _, _, cli = resolve_config(parse_overrides(sets))
    assert (cli.precision, cli.compile, cli.num_workers) == ("bf16", True, 3)
    with pytest.raises(ConfigError, match="num_workers"):
        TrainConfig(num_workers=-1)
    with pytest.raises(ConfigError, match="precision"):
        from_dict(TrainConfig, {"precision": "fp16"})


@pytest.mark.skipif(CUDA, reason="the refusal is for CPU devices")
def test_bf16_is_refused_on_cpu(tmp_path, cartpole_data):
    cfg = {**FAST, "train": {**FAST["train"], "precision": "bf16", "device": "cpu"}}
    with pytest.raises(ConfigError, match="precision=bf16 needs a CUDA device"):
        train([cartpole_data], tmp_path / "x", cfg, progress=False)


@pytest.mark.parametrize("workers", [1, 2])
def test_worker_batches_equal_the_in_process_ones(image_data, workers):
    """Same seed: worker-built batches (with augmentation) equal those built in-process."""
    ds = EpisodeDataset(image_data, cache_images=False)  # frames read with pread in workers
    aug_cfg = resolve_augment({"augment": {"image": {"shift": 2, "brightness": 0.2}}})
    aug = Augmenter(aug_cfg, ds.spec, seed=5, rank=0)
    sampler = _BatchSampler(ds.step_indices(), 6, seed=5, rank=0, world=1)
    start, steps = 3, 11  # a resumed run: steps 3..10, crossing an epoch boundary
    batches = _WindowBatches(ds, sampler, 2, 4, aug, start, steps)
    cfg = TrainConfig(num_workers=workers)
    got = list(_batch_loader(batches, cfg, torch.device("cpu")))
    assert len(got) == steps - start
    ref = _WindowBatches(
        EpisodeDataset(image_data, cache_images=True),
        _BatchSampler(ds.step_indices(), 6, seed=5, rank=0, world=1),
        2,
        4,
        Augmenter(aug_cfg, ds.spec, seed=5, rank=0),
        start,
        steps,
    )
    for step, batch in zip(range(start, steps), got, strict=True):
        _assert_same(batch, ref.batch(step))
    rng_before = torch.get_rng_state()
    list(_batch_loader(batches, cfg, torch.device("cpu")))
    assert torch.equal(rng_before, torch.get_rng_state())  # the policy's RNG is untouched


def test_image_training_with_two_workers_matches_in_process(tmp_path, image_data):
    """num_workers=2 writes a checkpoint with the same weights as the in-process loop."""
    w2 = {**IMAGE_TRAIN, "train": {**IMAGE_TRAIN["train"], "num_workers": 2}}
    a = train([image_data], tmp_path / "w2", w2, seed=3, progress=False)
    b = train([image_data], tmp_path / "w0", IMAGE_TRAIN, seed=3, progress=False)
    assert Path(a["checkpoint"]).exists() and np.isfinite(a["train_loss"])
    assert _equal(_weights(a["checkpoint"]), _weights(b["checkpoint"]))


def test_resume_with_workers_continues_exactly(tmp_path, image_data):
    base = {**IMAGE_TRAIN["train"], "num_workers": 2, "checkpoint_every": 4}
    full = train(
        [image_data], tmp_path / "full", {**IMAGE_TRAIN, "train": base}, seed=1, progress=False
    )
    half = {**IMAGE_TRAIN, "train": {**base, "steps": 4}}
    train([image_data], tmp_path / "half", half, seed=1, progress=False)
    resumed = train(
        [image_data],
        tmp_path / "half",
        {"train": {"steps": 8}},
        seed=1,
        resume=tmp_path / "half" / "last.pt",
        progress=False,
    )
    assert _equal(_weights(full["checkpoint"]), _weights(resumed["checkpoint"]))


# -- CUDA ------------------------------------------------------------------------------


def _record_autocast(monkeypatch) -> list[tuple[bool, torch.dtype]]:
    """Record (autocast enabled, output dtype) of the policy's first Linear per forward."""
    seen: list[tuple[bool, torch.dtype]] = []
    make = train_mod.make_policy

    def hooked(*args, **kwargs):
        policy = make(*args, **kwargs)
        linear = next(m for m in policy.modules() if isinstance(m, torch.nn.Linear))
        linear.register_forward_hook(
            lambda _m, _i, out: seen.append((torch.is_autocast_enabled("cuda"), out.dtype))
        )
        return policy

    monkeypatch.setattr(train_mod, "make_policy", hooked)
    return seen


@needs_cuda
def test_cuda_bf16_autocast_in_forward_and_finite_loss(tmp_path, cartpole_data, monkeypatch):
    seen = _record_autocast(monkeypatch)
    # No validation: its forward passes run without autocast and would interleave here.
    cuda = {"device": "cuda", "precision": "bf16", "val_every": 0}
    cfg = {**FAST, "train": {**FAST["train"], **cuda}}
    out = train([cartpole_data], tmp_path / "run", cfg, progress=False)
    assert np.isfinite(out["train_loss"])
    steps = cfg["train"]["steps"]
    assert len(seen) >= steps and all(on and dt == torch.bfloat16 for on, dt in seen[:steps])


@needs_cuda
def test_cuda_bf16_image_diffusion_with_workers(tmp_path, image_data, monkeypatch):
    seen = _record_autocast(monkeypatch)
    cfg = {
        "policy": {"name": "diffusion", "down_dims": [16, 32], "horizon": 4, "n_action_steps": 2},
        "train": {
            **IMAGE_TRAIN["train"],
            "device": "cuda",
            "precision": "bf16",
            "num_workers": 2,
        },
    }
    out = train([image_data], tmp_path / "run", cfg, progress=False)
    assert np.isfinite(out["train_loss"])
    assert seen and all(on and dt == torch.bfloat16 for on, dt in seen[:8])
    sd = _weights(out["checkpoint"])
    assert all(v.dtype != torch.bfloat16 for v in sd.values())  # weights stay float32


@needs_cuda
def test_cuda_compile_trains_and_saves_plain_weights(tmp_path, cartpole_data):
    cfg = {**FAST, "train": {**FAST["train"], "device": "cuda", "compile": True, "steps": 10}}
    out = train([cartpole_data], tmp_path / "run", cfg, progress=False)
    assert np.isfinite(out["train_loss"])
    assert not any(k.startswith("_orig_mod") for k in _weights(out["checkpoint"]))
