"""Frame rate of the lane-following simulator (``sim.lane``), on one core.

Run from the repository root::

    PYTHONPATH=. python bench/bench_lane.py [--repeats 7] [--sizes 64 96]

Prints one JSON object per line; each figure is a median over ``--repeats`` repeats:

- ``render_camera``: one camera image (homography + ``cv2.warpPerspective`` of the track map
  + haze), the issue's target being >= 1000 frames/s on one core;
- ``step``: a full ``env.step`` with the three default cameras (dynamics, track
  localisation, three renders, info);
- ``reset``: drawing a new track and rendering its top-down map.

OpenCV is limited to one thread (``cv2.setNumThreads(1)``) so the figures are per core.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import cv2
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


def main() -> None:
    """Measure and print."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 96])
    args = parser.parse_args()
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
