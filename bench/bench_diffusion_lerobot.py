r"""Our diffusion policy vs LeRobot 0.4.4's, per action chunk, same architecture, same process.

Both policies are built with random weights at LeRobot's default U-Net size (down dims
512/1024/2048, kernel 5, 8 GroupNorm groups, FiLM with scale, step embedding 128, h = 16,
k = 2) and sample with 10 DDIM steps. LeRobot's default image backbone (ResNet-18) is left
out on both sides (LeRobot: a 2-d state plus a 64-d environment state, its state-only
configuration; ours: one 66-d state), so both conditions are 132 wide, as LeRobot's PushT
one ((64 keypoint features + 2) x 2), and the timing is the U-Net and the sampling loop.
One "chunk" is one call of ``DiffusionPolicy.predict_chunk_tensor`` (ours) and of
``DiffusionModel.generate_actions`` (LeRobot; its normalisation runs in a separate processor
pipeline and is left out), batch 1, float32, under ``torch.inference_mode``.

Calls alternate A/B (ours, LeRobot, ours, ...) so both see the same machine load; the
figures are medians and the ratio is LeRobot's median over ours (> 1: ours faster).

Run it with the LeRobot environment's Python (it has torch and this repository's runtime
dependencies), the repository on the path::

    PYTHONPATH=. /work/main/.lerobot-venv/bin/python bench/bench_diffusion_lerobot.py \
        [--chunks 15] [--threads 1 2] [--profile]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import types

import numpy as np
import torch

from il_core.policies import make_policy
from il_core.spec import ActionSpec, DatasetSpec, FeatureSpec

STATE_DIM, ACTION_DIM, K, H = 66, 2, 2, 16


def _ours() -> tuple[torch.nn.Module, dict[str, torch.Tensor]]:
    cfg = {
        "n_obs_steps": K,
        "horizon": H,
        "n_action_steps": 8,
        "down_dims": [512, 1024, 2048],
        "kernel_size": 5,
        "n_groups": 8,
        "diffusion_step_embed_dim": 128,
        "use_film_scale_modulation": True,
        "num_inference_steps": 10,
        "obs_mlp_dims": [],  # as LeRobot: the stacked state conditions FiLM directly
        "use_ema": False,  # EMA is a copy of the weights; inference cost is the same
    }
    action = ActionSpec("continuous", dim=ACTION_DIM, low=(-1.0,) * 2, high=(1.0,) * 2)
    spec = DatasetSpec({"state": FeatureSpec("vector", (STATE_DIM,))}, action, 10.0)
    policy = make_policy("diffusion", cfg, spec, None).eval()
    return policy, {"state": torch.zeros(1, K, STATE_DIM)}


def _lerobot() -> tuple[torch.nn.Module, dict[str, torch.Tensor]]:
    # PyPI's torchvision is built against CUDA torch; these two modules only register
    # kernels for ops the CPU wheel lacks (../shared/lerobot-0.4.4/README.md).
    for m in ("torchvision._meta_registrations", "torchvision._autograd_registrations"):
        sys.modules.setdefault(m, types.ModuleType(m))
    from lerobot.configs.types import FeatureType, PolicyFeature
    from lerobot.policies.diffusion.configuration_diffusion import DiffusionConfig
    from lerobot.policies.diffusion.modeling_diffusion import DiffusionPolicy

    cfg = DiffusionConfig(
        input_features={
            "observation.state": PolicyFeature(FeatureType.STATE, (2,)),
            "observation.environment_state": PolicyFeature(FeatureType.ENV, (STATE_DIM - 2,)),
        },
        output_features={"action": PolicyFeature(FeatureType.ACTION, (ACTION_DIM,))},
        noise_scheduler_type="DDIM",
        num_inference_steps=10,
        device="cpu",
    )
    policy = DiffusionPolicy(cfg).eval()
    obs = {
        "observation.state": torch.zeros(1, K, 2),
        "observation.environment_state": torch.zeros(1, K, STATE_DIM - 2),
    }
    return policy.diffusion, obs


def _params(m: torch.nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def main() -> None:
    """Time both, alternating, and print one JSON line per thread count."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--chunks", type=int, default=15, help="timed chunks per side")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--profile", action="store_true", help="print per-op CPU time tables")
    args = ap.parse_args()
    torch.manual_seed(0)
    ours, ours_obs = _ours()
    theirs, their_obs = _lerobot()
    unet_ours = ours.net.unet
    unet_theirs = theirs.unet
    runs = {
        "ours": lambda: ours.predict_chunk_tensor(ours_obs),
        "lerobot": lambda: theirs.generate_actions(their_obs),
    }
    for threads in args.threads:
        torch.set_num_threads(threads)
        times: dict[str, list[float]] = {k: [] for k in runs}
        with torch.inference_mode():
            for _ in range(args.warmup):
                for fn in runs.values():
                    fn()
            for _ in range(args.chunks):
                for name, fn in runs.items():
                    t0 = time.perf_counter()
                    fn()
                    times[name].append(time.perf_counter() - t0)
            if args.profile:
                from torch.profiler import ProfilerActivity, profile

                for name, fn in runs.items():
                    with profile(activities=[ProfilerActivity.CPU]) as prof:
                        fn()
                    print(f"== {name}, {threads} thread(s)")
                    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12))
        med = {k: float(np.median(v)) for k, v in times.items()}
        row = {
            "threads": threads,
            "chunks": args.chunks,
            "ours_unet_params": _params(unet_ours),
            "lerobot_unet_params": _params(unet_theirs),
            "ours_median_s": round(med["ours"], 3),
            "lerobot_median_s": round(med["lerobot"], 3),
            "ours_p90_s": round(float(np.percentile(times["ours"], 90)), 3),
            "lerobot_p90_s": round(float(np.percentile(times["lerobot"], 90)), 3),
            "ratio_lerobot_over_ours": round(med["lerobot"] / med["ours"], 3),
        }
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
