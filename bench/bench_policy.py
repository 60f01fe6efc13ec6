"""Training throughput and select_action latency of the behaviour-cloning policies.

Prints one JSON line per measurement. Each figure is a median over ``--repeats`` runs and is
paired with a baseline measured in the same process, so ratios stay meaningful on a shared,
noisy machine:

- training: our full loop (``EpisodeDataset.window`` batches + ``to_torch`` + policy forward,
  backward, AdamW step) vs a bare PyTorch loop over pre-built tensors with the same network,
  batch size and optimiser (the floor that any data pipeline can only approach);
- acting: ``policy.select_action(obs_dict)`` (history, normalisation, numpy in/out, bounds)
  vs a bare ``torch.inference_mode`` forward of the same MLP on a ready tensor.

Usage: ``python bench/bench_policy.py [--repeats 5] [--quick]``
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from il_core.batch import to_torch
from il_core.collect import collect
from il_core.data import DatasetWriter, EpisodeDataset
from il_core.policies import make_policy
from il_core.spec import ActionSpec, DatasetSpec, FeatureSpec


def _train_rate(
    ds: EpisodeDataset, policy_cfg: dict, batch: int, steps: int
) -> tuple[float, float]:
    """Samples/s of our training step (data loading included) and the data-loading share."""
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


def _bare_train_rate(obs_dim: int, classes: int, batch: int, steps: int) -> float:
    """Samples/s of a bare PyTorch loop on pre-built tensors (no data pipeline)."""
    net = torch.nn.Sequential(
        torch.nn.Linear(obs_dim, 64),
        torch.nn.ReLU(),
        torch.nn.Linear(64, 64),
        torch.nn.ReLU(),
        torch.nn.Linear(64, classes),
    )
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3)
    x = torch.randn(batch, obs_dim)
    y = torch.randint(0, classes, (batch,))
    for i in range(steps + 20):
        if i == 20:
            t0 = time.perf_counter()
        loss = torch.nn.functional.cross_entropy(net(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return steps * batch / (time.perf_counter() - t0)


def _latencies(fn, n: int) -> np.ndarray:
    for _ in range(200):
        fn()
    out = np.empty(n)
    for i in range(n):
        t0 = time.perf_counter_ns()
        fn()
        out[i] = (time.perf_counter_ns() - t0) / 1e3
    return out


def _image_dataset(root: Path, steps: int, size: int, cams: int) -> EpisodeDataset:
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
                o = {"state": rng.normal(size=6).astype(np.float32)}
                o.update({f"cam{c}": img for c in range(cams)})
                w.add_step(o, rng.uniform(-1, 1, 2).astype(np.float32), t / 10.0)
            w.end_episode()
    return EpisodeDataset(root)


def main() -> None:
    """Run the benchmarks and print JSON lines."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--quick", action="store_true", help="fewer steps (smoke run)")
    args = ap.parse_args()
    torch.set_num_threads(1)  # the configs train small MLPs single-threaded; see config/
    steps = 100 if args.quick else 400
    with tempfile.TemporaryDirectory() as tmp:
        collect("CartPole-v1", "auto", 10, 0, Path(tmp) / "cartpole")
        ds = EpisodeDataset(Path(tmp) / "cartpole")
        ours, bare = [], []
        for _ in range(args.repeats):
            ours.append(_train_rate(ds, {"hidden_dims": [64, 64]}, 256, steps)[0])
            bare.append(_bare_train_rate(4, 2, 256, steps))
        print(
            json.dumps(
                {
                    "bench": "train_mlp",
                    "policy": "bc hidden 64x64",
                    "data": "CartPole 10 episodes",
                    "batch": 256,
                    "samples_per_s_median": round(float(np.median(ours))),
                    "bare_torch_samples_per_s_median": round(float(np.median(bare))),
                    "ratio_to_bare": round(float(np.median(ours) / np.median(bare)), 3),
                }
            )
        )

        img_ds = _image_dataset(Path(tmp) / "img", 1000 if args.quick else 2000, 84, 2)
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
            )
        )

        policy = make_policy("bc", {"hidden_dims": [64, 64]}, ds.spec, ds.stats()).eval()
        obs = {"state": np.array([0.01, -0.02, 0.03, 0.0], np.float32)}
        x = torch.from_numpy(obs["state"])[None]
        head = policy.head
        p50, p99, b50, b99 = [], [], [], []
        for _ in range(args.repeats):
            lat = _latencies(lambda: policy.select_action(obs), 2000 if args.quick else 10000)

            def bare_forward() -> None:
                with torch.inference_mode():
                    head(x)

            base = _latencies(bare_forward, 2000 if args.quick else 10000)
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
            )
        )


if __name__ == "__main__":
    main()
