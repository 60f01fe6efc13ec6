"""Per-chunk inference latency of every policy type, eager vs exported (TorchScript, ONNX).

Prints one JSON line per measurement. Each measurement times one full
``predict_action_chunk`` call, numpy observation history in, clipped numpy chunk out
(normalisation, network, for diffusion all DDIM steps), and reports p50/p99 over ``--calls``
calls; each figure is the median over ``--repeats`` runs, eager and exported interleaved in
the same process so their ratio stays meaningful on a shared, noisy machine.

Sizes (documented in docs/benchmarks.md): the multimodal-reach configs
(``config/<policy>_multimodal.yaml``): state 4-d, history k = 2, chunk h = 16, action 2-d;
diffusion with 10 DDIM steps. Plus the small BC MLP (64x64, CartPole spec) that the field's
eager/TorchScript/ONNX figures refer to, and our diffusion U-Net at LeRobot's default size
(down dims 512/1024/2048, step embedding 128, h = 16, k = 2, 10 DDIM steps, a 66-d state so
that the condition is as wide as LeRobot's PushT one: (64 keypoint features + 2) x 2 steps),
in float32 and with ``inference_dtype: bfloat16``, with 1 and 2 threads.

Usage: ``python bench/bench_policies.py [--repeats 3] [--calls 300] [--quick]
[--skip-lerobot] [--threads 1]``
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from il_core.config import load_yaml
from il_core.export import ExportedPolicy, export_policy
from il_core.policies import make_policy
from il_core.spec import ActionSpec, DatasetSpec, FeatureSpec

REPO = Path(__file__).resolve().parent.parent


def _spec(state_dim: int, discrete: int | None = None) -> DatasetSpec:
    if discrete:
        action = ActionSpec("discrete", num_classes=discrete)
    else:
        action = ActionSpec("continuous", dim=2, low=(-1.0, -1.0), high=(1.0, 1.0))
    return DatasetSpec({"state": FeatureSpec("vector", (state_dim,))}, action, 10.0)


def _percentiles(fn: Callable[[], object], calls: int, warmup: int) -> tuple[float, float]:
    """(p50, p99) in milliseconds of ``calls`` timed calls after ``warmup`` untimed ones."""
    for _ in range(warmup):
        fn()
    out = np.empty(calls)
    for i in range(calls):
        t0 = time.perf_counter_ns()
        fn()
        out[i] = (time.perf_counter_ns() - t0) / 1e6
    return float(np.percentile(out, 50)), float(np.percentile(out, 99))


def _bench(
    label: str,
    policy,
    tmp: Path,
    repeats: int,
    calls: int,
    warmup: int,
    formats: tuple[str, ...] = ("ts", "onnx"),
    extra: dict | None = None,
    export_name: str | None = None,
) -> dict:
    policy = policy.eval()
    k = policy.n_obs_steps
    dim = policy.spec.observations["state"].shape[0]
    obs = {"state": np.random.default_rng(0).normal(size=(k, dim)).astype(np.float32)}
    runners: dict[str, Callable[[], object]] = {"eager": lambda: policy.predict_action_chunk(obs)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy ONNX exporter announces itself
        for fmt in formats:
            suffix = "pt" if fmt == "ts" else "onnx"
            path = tmp / f"{export_name or label}.{suffix}"
            t0 = time.perf_counter()
            if not path.exists():  # the same model at another thread count: export once
                export_policy(policy, path)
            export_s = time.perf_counter() - t0
            exported = ExportedPolicy(path, num_threads=torch.get_num_threads(), seed=0)
            runners[fmt] = lambda e=exported: e.predict_action_chunk(obs)
            runners[f"{fmt}_export_s"] = export_s  # type: ignore[assignment]
    stats: dict[str, list[tuple[float, float]]] = {n: [] for n in runners if "export" not in n}
    for _ in range(repeats):
        for name in stats:
            stats[name].append(_percentiles(runners[name], calls, warmup))
    row: dict = {"bench": "chunk_latency", "policy": label, **(extra or {})}
    row["params"] = sum(p.numel() for p in policy.parameters() if p.requires_grad)
    for name, vals in stats.items():
        row[f"{name}_p50_ms"] = round(float(np.median([v[0] for v in vals])), 3)
        row[f"{name}_p99_ms"] = round(float(np.median([v[1] for v in vals])), 3)
    for fmt in formats:
        row[f"{fmt}_speedup_p50"] = round(row["eager_p50_ms"] / row[f"{fmt}_p50_ms"], 2)
        row[f"{fmt}_export_s"] = round(runners[f"{fmt}_export_s"], 2)  # type: ignore[arg-type]
    return row


def main() -> None:
    """Run the benchmarks and print JSON lines."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--calls", type=int, default=300, help="timed calls per repeat")
    ap.add_argument("--threads", type=int, default=1, help="torch / ONNX Runtime threads")
    ap.add_argument("--quick", action="store_true", help="few calls (smoke run)")
    ap.add_argument("--skip-lerobot", action="store_true", help="skip the 250M-param U-Net")
    ap.add_argument("--only-lerobot", action="store_true", help="only the 250M-param U-Net")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    calls = 30 if args.quick else args.calls
    warmup = 5 if args.quick else 20
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        if args.only_lerobot:
            _lerobot(args, tmp_path)
            return
        small = make_policy(
            "bc", {"hidden_dims": [64, 64]}, _spec(4, discrete=2), None
        )  # the field's "small MLP" (CartPole-sized)
        print(
            json.dumps(
                _bench("bc_mlp_64x64_cartpole", small, tmp_path, args.repeats, calls, warmup)
            )
        )
        for name in ("bc", "mog", "act", "ar", "diffusion"):
            raw = load_yaml(REPO / "config" / f"{name}_multimodal.yaml")["policy"]
            raw.pop("name", None)
            policy = make_policy(name, raw, _spec(4), None)
            row = _bench(f"{name}_multimodal", policy, tmp_path, args.repeats, calls, warmup)
            print(json.dumps(row))
        if not args.skip_lerobot:
            _lerobot(args, tmp_path)


def _lerobot(args: argparse.Namespace, tmp_path: Path) -> None:
    """Our U-Net at LeRobot's default diffusion size: float32 and bfloat16, 1 and 2 threads.

    bfloat16 is ``inference_dtype: bfloat16`` (matrix-product convolutions on a bfloat16
    copy of the weights); its ONNX export runs float32, so only TorchScript is timed for it.
    """
    cfg = {
        "n_obs_steps": 2,
        "horizon": 16,
        "n_action_steps": 8,
        "down_dims": [512, 1024, 2048],
        "diffusion_step_embed_dim": 128,
        "num_inference_steps": 10,
        "obs_mlp_dims": [],  # as LeRobot: the features condition FiLM directly
        "use_ema": False,  # EMA is a copy of the weights; inference cost is the same
    }
    fp32 = make_policy("diffusion", cfg, _spec(66), None)
    bf16 = make_policy("diffusion", {**cfg, "inference_dtype": "bfloat16"}, _spec(66), None)
    bf16.load_state_dict(fp32.state_dict())
    calls = 3 if args.quick else 10
    for threads in (1, 2):
        torch.set_num_threads(threads)
        for dtype, policy, formats in (("fp32", fp32, ("ts", "onnx")), ("bf16", bf16, ("ts",))):
            row = _bench(
                f"diffusion_lerobot_size_{dtype}_{threads}thread",
                policy,
                tmp_path,
                1,
                calls,
                2,
                formats=formats,
                extra={"threads": threads, "dtype": dtype},
                export_name=f"diffusion_lerobot_size_{dtype}",
            )
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
