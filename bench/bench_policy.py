"""Training throughput and select_action latency of the behaviour-cloning policies.

Prints one JSON line per measurement. Each figure is a median over ``--repeats`` runs and is
paired with a baseline measured in the same process, alternating A/B/A/B, so ratios stay
meaningful on a shared, noisy machine:

- ``train_step``: the real trainer (:func:`il_core.train.train`, as ``il-core train`` runs
  it: epoch sampling, ``EpisodeDataset.window``, ``to_torch``, the policy's masked loss,
  AdamW, grad-norm clipping, the learning-rate schedule, metric logging and TensorBoard)
  on CartPole data, MLP 32x32 and 64x64, batch 32 and 256, vs a bare PyTorch loop on
  pre-built tensors with the same network, loss, optimiser settings and batch size (the
  floor that any trainer can only approach). The trainer's steady state comes from the
  difference of two runs of ``--short`` and ``--short + --steps`` steps, so start-up
  (loading the data, building the policy, the final checkpoint) cancels out. Two
  baselines: PyTorch's default AdamW (``bare``) and the multi-tensor AdamW the trainer
  uses (``bare_foreach``). Besides wall-clock figures, ``cpu_*`` ratios compare this
  process's CPU time, which other jobs on a shared machine disturb far less;
- ``train_cnn``: a hand-written step of the image BC policy (2 cameras 84x84), 1 and 2
  threads, and the share of its time spent building the batch;
- ``select_action_mlp``: ``policy.select_action(obs_dict)`` (history, normalisation,
  numpy in/out, bounds) vs a bare ``torch.inference_mode`` forward of the same MLP.

Usage: ``python bench/bench_policy.py [--repeats 5] [--quick] [--only train_step]``
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from il_core.batch import to_torch
from il_core.collect import collect
from il_core.data import DatasetWriter, EpisodeDataset
from il_core.policies import make_policy
from il_core.spec import ActionSpec, DatasetSpec, FeatureSpec
from il_core.train import TrainConfig, train

BENCHES = ("train_step", "train_cnn", "select_action")


def _trainer_config(hidden: int, batch: int, steps: int) -> dict:
    """``il-core train`` defaults (AdamW, grad clip, logging, TensorBoard) but the sizes.

    Validation is off: it is periodic work the trainer already keeps out of its own
    throughput figure, not part of the per-step cost measured here.
    """
    return {
        "policy": {"name": "bc", "hidden_dims": [hidden, hidden]},
        "train": {"steps": steps, "batch_size": batch, "val_every": 0, "num_threads": 1},
    }


def _clocks() -> np.ndarray:
    """``[wall, cpu]`` seconds now: ``perf_counter`` and this process's CPU time.

    The CPU time is the steadier figure on a shared machine: other jobs that take the
    cores away stretch the wall clock, not the work this process does.
    """
    return np.array([time.perf_counter(), time.process_time()])


def _train_seconds(data: Path, out: Path, hidden: int, batch: int, steps: int) -> np.ndarray:
    """``[wall, cpu]`` seconds of one whole ``train()`` call of ``steps`` steps."""
    t0 = _clocks()
    train([data], out, _trainer_config(hidden, batch, steps), seed=0, progress=False)
    return _clocks() - t0


def _trainer_rate(
    data: Path, out: Path, hidden: int, batch: int, short: int, steps: int
) -> np.ndarray:
    """Steady-state ``[wall, cpu]`` samples/s of the real trainer, start-up cancelled.

    Two runs, of ``short`` and ``short + steps`` steps, do the same start-up and shut-down
    work (and their first ``short`` steps warm the allocator and autograd caches); their
    difference is the time of ``steps`` steady-state steps.
    """
    t_short = _train_seconds(data, out / "short", hidden, batch, short)
    t_long = _train_seconds(data, out / "long", hidden, batch, short + steps)
    return steps * batch / np.maximum(t_long - t_short, 1e-9)


def _bare_train_rate(
    obs_dim: int, classes: int, hidden: int, batch: int, steps: int, foreach: bool | None
) -> np.ndarray:
    """``[wall, cpu]`` samples/s of a bare PyTorch loop on pre-built tensors.

    The same network as the BC policy's head (``obs_dim -> hidden -> hidden -> classes``,
    ReLU), cross-entropy, and the trainer's optimiser settings: ``AdamW`` with ``lr`` and
    ``weight_decay`` from :class:`TrainConfig` and grad-norm clipping at
    ``TrainConfig.grad_clip``; no data pipeline, no metrics. ``foreach=None`` is PyTorch's
    default AdamW (one tensor at a time on CPU), ``True`` the multi-tensor one the trainer
    uses.
    """
    cfg = TrainConfig()
    net = torch.nn.Sequential(
        torch.nn.Linear(obs_dim, hidden),
        torch.nn.ReLU(),
        torch.nn.Linear(hidden, hidden),
        torch.nn.ReLU(),
        torch.nn.Linear(hidden, classes),
    )
    opt = torch.optim.AdamW(
        net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, foreach=foreach
    )
    x = torch.randn(batch, obs_dim)  # (B, obs_dim)
    y = torch.randint(0, classes, (batch,))  # (B,)
    warmup = 50
    t0 = _clocks()
    for i in range(steps + warmup):
        if i == warmup:
            t0 = _clocks()
        loss = torch.nn.functional.cross_entropy(net(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), cfg.grad_clip)
        opt.step()
    return steps * batch / (_clocks() - t0)


def _train_rate(
    ds: EpisodeDataset, policy_cfg: dict, batch: int, steps: int
) -> tuple[float, float]:
    """Samples/s of a hand-written step of the policy (data loading included), data share."""
    policy = make_policy("bc", policy_cfg, ds.spec, ds.stats())
    opt = torch.optim.AdamW(policy.parameters(), lr=1e-3)
    idx = ds.step_indices()
    rng = np.random.default_rng(0)
    cpu = torch.device("cpu")

    data_time = [0.0]

    def step() -> None:
        t = time.perf_counter()
        b = to_torch(ds.window(rng.choice(idx, batch), 1, 1), cpu)
        data_time[0] += time.perf_counter() - t
        loss, _ = policy(b)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(20):  # warm-up (allocator, autograd graph caches)
        step()
    data_time[0] = 0.0
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    total = time.perf_counter() - t0
    return steps * batch / total, data_time[0] / total


def _bench_train_step(tmp: Path, data: Path, args: argparse.Namespace) -> None:
    """The ``train_step`` lines: the real trainer vs a bare loop, per size and batch."""
    ds = EpisodeDataset(data)
    obs_dim = ds.spec.observations["state"].shape[0]
    classes = int(ds.spec.action.num_classes or 0)
    ds.close()
    steps = 300 if args.quick else args.steps
    # Warm-up: the first train() of a process imports TensorBoard and fills caches.
    train([data], tmp / "warmup", _trainer_config(32, 32, 20), seed=0, progress=False)
    for hidden in (32, 64):
        for batch in (32, 256):
            # Rotate the order each repeat: no side always runs right after another.
            sides = ("ours", "bare", "bare_foreach")
            rates: dict[str, list[np.ndarray]] = {side: [] for side in sides}
            for r in range(args.repeats):
                for j in range(len(sides)):
                    side = sides[(j + r) % len(sides)]
                    if side == "ours":
                        out = tmp / f"run_{hidden}_{batch}_{r}"
                        rate = _trainer_rate(data, out, hidden, batch, args.short, steps)
                    else:
                        fe = True if side == "bare_foreach" else None
                        rate = _bare_train_rate(obs_dim, classes, hidden, batch, steps, fe)
                    rates[side].append(rate)
            # Medians per clock: column 0 wall, column 1 this process's CPU time.
            ours, bare, bare_fe = (np.median(np.array(rates[x]), axis=0) for x in sides)
            print(
                json.dumps(
                    {
                        "bench": "train_step",
                        "policy": f"bc hidden {hidden}x{hidden}",
                        "data": "CartPole 10 episodes",
                        "batch": batch,
                        "steps_timed": steps,
                        "samples_per_s_median": round(float(ours[0])),
                        "bare_torch_samples_per_s_median": round(float(bare[0])),
                        "step_ms_median": round(1e3 * batch / float(ours[0]), 4),
                        "bare_step_ms_median": round(1e3 * batch / float(bare[0]), 4),
                        "ratio_to_bare": round(float(ours[0] / bare[0]), 3),
                        "step_time_vs_bare": round(float(bare[0] / ours[0]), 3),
                        "cpu_step_time_vs_bare": round(float(bare[1] / ours[1]), 3),
                        "bare_foreach_samples_per_s_median": round(float(bare_fe[0])),
                        "step_time_vs_bare_foreach": round(float(bare_fe[0] / ours[0]), 3),
                        "cpu_step_time_vs_bare_foreach": round(float(bare_fe[1] / ours[1]), 3),
                    }
                ),
                flush=True,
            )


def _bench_train_cnn(tmp: Path, args: argparse.Namespace) -> None:
    """The ``train_cnn`` line: the image BC step, 1 and 2 threads, data-loading share."""
    img_ds = _image_dataset(tmp / "img", 1000 if args.quick else 2000, 84, 2)
    cnn_cfg = {"hidden_dims": [256, 256]}
    n = 20 if args.quick else 60
    runs = [_train_rate(img_ds, cnn_cfg, 64, n) for _ in range(args.repeats)]
    rates, shares = [r for r, _ in runs], [s for _, s in runs]
    torch.set_num_threads(2)
    rates2 = [_train_rate(img_ds, cnn_cfg, 64, n)[0] for _ in range(args.repeats)]
    torch.set_num_threads(1)
    print(
        json.dumps(
            {
                "bench": "train_cnn",
                "policy": "bc, 2 cameras 84x84 (CNN 32-32-64 strides 2-2-1, spatial softmax)",
                "batch": 64,
                "samples_per_s_median_1thread": round(float(np.median(rates))),
                "samples_per_s_median_2threads": round(float(np.median(rates2))),
                "data_loading_share_1thread": round(float(np.median(shares)), 3),
            }
        ),
        flush=True,
    )


def _bench_select_action(data: Path, args: argparse.Namespace) -> None:
    """The ``select_action_mlp`` line: ``select_action`` vs a bare forward."""
    ds = EpisodeDataset(data)
    policy = make_policy("bc", {"hidden_dims": [64, 64]}, ds.spec, ds.stats()).eval()
    obs = {"state": np.array([0.01, -0.02, 0.03, 0.0], np.float32)}
    x = torch.from_numpy(obs["state"])[None]
    head = policy.head
    assert isinstance(head, torch.nn.Module)  # the BC policy's MLP
    n = 2000 if args.quick else 10000
    p50, p99, b50, b99 = [], [], [], []

    def bare_forward() -> None:
        with torch.inference_mode():
            head(x)

    for _ in range(args.repeats):
        lat = _latencies(lambda: policy.select_action(obs), n)
        base = _latencies(bare_forward, n)
        p50.append(np.percentile(lat, 50))
        p99.append(np.percentile(lat, 99))
        b50.append(np.percentile(base, 50))
        b99.append(np.percentile(base, 99))
    print(
        json.dumps(
            {
                "bench": "select_action_mlp",
                "policy": "bc hidden 64x64, CartPole spec",
                "p50_us": round(float(np.median(p50)), 1),
                "p99_us": round(float(np.median(p99)), 1),
                "bare_forward_p50_us": round(float(np.median(b50)), 1),
                "bare_forward_p99_us": round(float(np.median(b99)), 1),
                "ratio_p50_to_bare": round(float(np.median(p50) / np.median(b50)), 2),
            }
        ),
        flush=True,
    )


def _latencies(fn: Callable[[], object], n: int) -> np.ndarray:
    """Latencies in microseconds of ``n`` calls of ``fn`` (after 200 warm-up calls)."""
    for _ in range(200):
        fn()
    out = np.empty(n)
    for i in range(n):
        t0 = time.perf_counter_ns()
        fn()
        out[i] = (time.perf_counter_ns() - t0) / 1e3
    return out


def _image_dataset(root: Path, steps: int, size: int, cams: int) -> EpisodeDataset:
    """A JPEG dataset of ``steps`` steps, ``cams`` cameras ``size``x``size`` (a moving blob)."""
    obs = {"state": FeatureSpec("vector", (6,))}
    for c in range(cams):
        obs[f"cam{c}"] = FeatureSpec("image", (size, size, 3), codec="jpeg", quality=90)
    spec = DatasetSpec(obs, ActionSpec("continuous", dim=2), 10.0)
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:size, 0:size]
    with DatasetWriter(root, spec) as w:
        for ep in range(steps // 100):
            w.start_episode()
            for t in range(100):
                img = np.zeros((size, size, 3), np.uint8)
                cx = (ep * 7 + t) % size  # a moving blob: compressible like a real scene
                img[..., 0] = (255 * np.exp(-((xx - cx) ** 2 + (yy - size / 2) ** 2) / 50)).astype(
                    np.uint8
                )
                o: dict[str, np.ndarray] = {"state": rng.normal(size=6).astype(np.float32)}
                o.update({f"cam{c}": img for c in range(cams)})
                w.add_step(o, rng.uniform(-1, 1, 2).astype(np.float32), t / 10.0)
            w.end_episode()
    return EpisodeDataset(root)


def main() -> None:
    """Run the benchmarks and print JSON lines."""
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--quick", action="store_true", help="fewer steps (smoke run)")
    ap.add_argument(
        "--steps", type=int, default=1500, help="train_step: steady-state steps timed per run"
    )
    ap.add_argument("--short", type=int, default=100, help="train_step: steps of the start-up run")
    ap.add_argument(
        "--only",
        default=",".join(BENCHES),
        help=f"comma-separated subset of {','.join(BENCHES)}",
    )
    args = ap.parse_args()
    only = set(args.only.split(","))
    if only - set(BENCHES):
        ap.error(f"--only: unknown {sorted(only - set(BENCHES))}; choose from {BENCHES}")
    torch.set_num_threads(1)  # the configs train small MLPs single-threaded; see config/
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        data = tmp / "cartpole"
        collect("CartPole-v1", "auto", 10, 0, data)
        benches: dict[str, Callable[[], None]] = {
            "train_step": lambda: _bench_train_step(tmp, data, args),
            "train_cnn": lambda: _bench_train_cnn(tmp, args),
            "select_action": lambda: _bench_select_action(data, args),
        }
        for name in BENCHES:
            if name in only:
                benches[name]()


if __name__ == "__main__":
    main()
