"""Per-chunk CPU latency of our ACT against LeRobot 0.4.4's ``ACTPolicy``, same run, same threads.

Both policies are built at LeRobot's default ACT config (random init, no download) for one
camera, a state and an action (default 3x96x96, 14-d, 14-d). Each runs in its own process:
LeRobot in its venv (``.lerobot-venv``, see ``../shared/lerobot-0.4.4/README.md``), ours in
this one. The driver asks them for one chunk each in turn, A/B/A/B, so both see the same
machine load, and reports medians, the ratio LeRobot / ours (> 1: ours is faster) and the
parameter counts.

Usage::

    PYTHONPATH=. python bench/bench_act_lerobot.py --threads 1 --reps 30
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

DEFAULT_LEROBOT = Path(__file__).resolve().parents[1] / ".lerobot-venv" / "bin" / "python"


def _worker(kind: str, threads: int, height: int, width: int, dim: int) -> None:
    """Build one policy, then answer each ``go`` line on stdin with one chunk's latency (ms)."""
    if kind == "lerobot":
        import types

        for m in ("torchvision._meta_registrations", "torchvision._autograd_registrations"):
            sys.modules[m] = types.ModuleType(m)
    import numpy as np
    import torch

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    if kind == "lerobot":
        from lerobot.configs.types import FeatureType, PolicyFeature
        from lerobot.policies.act.configuration_act import ACTConfig
        from lerobot.policies.act.modeling_act import ACTPolicy

        cfg = ACTConfig(
            input_features={
                "observation.state": PolicyFeature(type=FeatureType.STATE, shape=(dim,)),
                "observation.images.top": PolicyFeature(
                    type=FeatureType.VISUAL, shape=(3, height, width)
                ),
            },
            output_features={"action": PolicyFeature(type=FeatureType.ACTION, shape=(dim,))},
            pretrained_backbone_weights=None,
            device="cpu",
        )
        policy = ACTPolicy(cfg).eval()
        batch = {
            "observation.state": torch.zeros(1, dim),
            "observation.images.top": torch.rand(1, 3, height, width),
        }

        def call() -> None:
            policy.predict_action_chunk(batch)
    else:
        from il_core.policies import make_policy
        from il_core.spec import ActionSpec, DatasetSpec, FeatureSpec

        spec = DatasetSpec(
            {
                "state": FeatureSpec("vector", (dim,)),
                "top": FeatureSpec("image", (height, width, 3)),
            },
            ActionSpec("continuous", dim=dim),
            50.0,
        )
        policy = make_policy("act", {}, spec).eval()
        rng = np.random.default_rng(0)
        obs = {
            "state": np.zeros((1, dim), np.float32),
            "top": rng.integers(0, 256, (1, height, width, 3), dtype=np.uint8),
        }

        def call() -> None:
            policy.predict_action_chunk(obs)

    total = sum(p.numel() for p in policy.parameters())
    vae = sum(p.numel() for n, p in policy.named_parameters() if "vae_encoder" in n)
    for _ in range(3):  # warm-up
        call()
    print(json.dumps({"total": total, "inference": total - vae}), flush=True)
    for line in sys.stdin:
        if line.strip() != "go":
            break
        t = time.perf_counter()
        call()
        print(f"{(time.perf_counter() - t) * 1e3:.4f}", flush=True)


def main() -> None:
    """Start both workers, alternate one chunk each, print medians, ratio and counts."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="torch threads, both policies")
    parser.add_argument("--reps", type=int, default=30, help="chunks per policy")
    parser.add_argument("--height", type=int, default=96)
    parser.add_argument("--width", type=int, default=96)
    parser.add_argument("--dim", type=int, default=14, help="state and action size")
    parser.add_argument("--lerobot-python", default=str(DEFAULT_LEROBOT))
    parser.add_argument("--worker", choices=["ours", "lerobot"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    shape = (args.threads, args.height, args.width, args.dim)
    if args.worker:
        _worker(args.worker, *shape)
        return
    common = [
        __file__,
        "--threads",
        str(args.threads),
        "--height",
        str(args.height),
        "--width",
        str(args.width),
        "--dim",
        str(args.dim),
        "--worker",
    ]
    pythons = {"lerobot": args.lerobot_python, "ours": sys.executable}
    procs = {
        k: subprocess.Popen(
            [py, *common, k], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        for k, py in pythons.items()
    }
    counts = {k: json.loads(p.stdout.readline()) for k, p in procs.items()}
    times: dict[str, list[float]] = {k: [] for k in procs}
    for _ in range(args.reps):
        for k, p in procs.items():  # A/B/A/B
            p.stdin.write("go\n")
            p.stdin.flush()
            times[k].append(float(p.stdout.readline()))
    for p in procs.values():
        p.stdin.close()
        p.wait(timeout=60)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(
        json.dumps(
            {
                "threads": args.threads,
                "input": f"1 camera 3x{args.height}x{args.width}, state {args.dim}, "
                f"action {args.dim}, chunk 100",
                "median_ms": med,
                "ratio_lerobot_over_ours": med["lerobot"] / med["ours"],
                "params": counts,
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
