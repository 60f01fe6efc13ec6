"""Frame rate of the lane-following simulator (``sim.lane``), and the side-view experiment.

Run from the repository root::

    PYTHONPATH=. python bench/bench_lane.py [--repeats 7] [--sizes 64 96]
    PYTHONPATH=. python bench/bench_lane.py --side-views [--seeds 0 1 2] [--biases 0 0.25]

Prints one JSON object per line. Frame rates are medians over ``--repeats`` repeats:

- ``render_camera``: one camera image (homography + ``cv2.warpPerspective`` of the track map
  + haze), the issue's target being >= 1000 frames/s on one core;
- ``step``: a full ``env.step`` with the three default cameras (dynamics, track
  localisation, three renders, info);
- ``reset``: drawing a new track and rendering its top-down map.

OpenCV is limited to one thread (``cv2.setNumThreads(1)``) so the figures are per core.

``--side-views`` runs the experiment of ``tests/test_lane_side_views.py`` for several
training seeds and steering biases: 20 expert laps (seeds 0..19), ``config/lane_bc.yaml``
(centre camera only) and ``config/lane_bc_side_views.yaml`` trained with each seed, each
evaluated on 20 tracks (seeds 1000..1019) with the bias (random sign per lap) and the
steering noise of ``sim.LANE_EVAL_NOISE``. It takes about 3 minutes per training seed.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import cv2
import gymnasium as gym
import numpy as np

from sim.lane import LaneFollowEnv


def emit(**fields: object) -> None:
    """Print one result as a JSON line."""
    print(json.dumps(fields), flush=True)


def rate(fn, n: int, repeats: int) -> float:
    """Median calls per second over ``repeats`` runs of ``n`` calls."""
    fn()
    rates = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        rates.append(n / (time.perf_counter() - t0))
    return statistics.median(rates)


class _FinalInfo(gym.Wrapper):
    """Keeps the last ``info`` (lap and lateral-error figures of the lane env)."""

    def step(self, action):
        """Step and remember ``info``."""
        out = super().step(action)
        self.info = out[-1]
        return out


def side_view_experiment(seeds: list[int], biases: list[float]) -> None:
    """Lap completion and lateral error of both lane configs, per training seed and bias."""
    import tempfile

    import torch

    import sim
    from il_core.checkpoint import load_policy
    from il_core.collect import collect
    from il_core.config import load_yaml
    from il_core.envs import GymAdapter, make_env
    from il_core.execution import PolicyExecutor
    from il_core.rollout import run_episode
    from il_core.train import train

    torch.set_num_threads(1)
    configs = {
        "centre only": "config/lane_bc.yaml",
        "side views": "config/lane_bc_side_views.yaml",
    }
    noise = sim.LANE_EVAL_NOISE["steering_noise"]
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        collect("il_ros/LaneFollow-v0", "auto", 20, 0, data)
        for seed in seeds:
            for name, path in configs.items():
                out = Path(tmp) / f"{Path(path).stem}_{seed}"
                ckpt = train([data], out, load_yaml(path), seed=seed, progress=False)
                policy = load_policy(ckpt["checkpoint"])
                keys = tuple(policy.spec.observations)
                for bias in biases:
                    env = make_env(
                        "il_ros/LaneFollow-v0",
                        steering_bias=bias,
                        random_bias_sign=True,
                        steering_noise=noise,
                    )
                    env = _FinalInfo(env)
                    adapter, executor = GymAdapter(env), PolicyExecutor(policy)

                    def act(obs, executor=executor, keys=keys):
                        return executor.step({k: obs[k] for k in keys})

                    laps, lateral = [], []
                    for i in range(20):
                        executor.reset()
                        res = run_episode(env, adapter, act, 1000 + i)
                        laps.append(bool(res.success))
                        lateral.append(env.info["mean_lateral_error"])
                    emit(
                        bench="side_views",
                        config=name,
                        seed=seed,
                        steering_bias=bias,
                        steering_noise=noise,
                        laps_completed=float(np.mean(laps)),
                        mean_lateral_error_m=round(float(np.mean(lateral)), 4),
                    )


def main() -> None:
    """Measure and print."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 96])
    parser.add_argument("--side-views", action="store_true", help="run the experiment")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument(
        "--biases", type=float, nargs="+", default=[0.0, 0.08, 0.12, 0.16, 0.2, 0.25]
    )
    args = parser.parse_args()
    if args.side_views:
        side_view_experiment(args.seeds, args.biases)
        return
    cv2.setNumThreads(1)
    emit(
        bench="env",
        python=platform.python_version(),
        opencv=cv2.__version__,
        numpy=np.__version__,
        cpu=platform.processor() or platform.machine(),
    )
    for size in args.sizes:
        env = LaneFollowEnv(image_size=size)
        env.reset(seed=0)
        centre = env.cameras[1]
        fps = rate(lambda env=env, centre=centre: env.render_camera(centre), 2000, args.repeats)
        emit(bench="render_camera", image_size=size, frames_per_s=round(fps), target=1000)

        # Steps along the expert's path, so the car stays on the road (and on the map).
        def step(env=env) -> None:
            _, _, terminated, truncated, _ = env.step(env.pure_pursuit_action())
            if terminated or truncated:
                env.reset(seed=1)

        sps = rate(step, 500, args.repeats)
        emit(bench="step_3_cameras", image_size=size, steps_per_s=round(sps))
    env = LaneFollowEnv()
    seeds = iter(range(10**6))
    resets = rate(lambda: env.reset(seed=next(seeds)), 10, args.repeats)
    emit(bench="reset", ms=round(1000 / resets, 1))


if __name__ == "__main__":
    main()
