"""Benchmarks of the MetaWorld v3 envs: rendering, stepping, and the scripted experts.

Run from the repository root (needs ``pip install metaworld`` and, headless, OSMesa)::

    MUJOCO_GL=osmesa PYTHONPATH=. python bench/bench_metaworld.py [--repeats 5] [--episodes 20]

Prints one JSON object per line:

- ``render``: frames/s of the observation camera (corner4) at 84x84 and 96x96, for the
  ``fast`` quality (no shadows, reflections or multisampling; the default) and ``full``
  (MetaWorld's look), and for gymnasium's ``MujocoRenderer`` (what ``render_mode=
  "rgb_array"`` of MetaWorld's own env uses), median over ``--repeats`` repeats of 20 frames;
- ``step``: env steps/s of the state env without rendering, and of the pixel env;
- ``expert``: MetaWorld's scripted policy on each MT10 task, ``--episodes`` seeded episodes
  (seeds 0..N-1) of ``il_ros/MetaWorld-<task>``: success rate and mean episode length.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time

os.environ.setdefault("MUJOCO_GL", "osmesa")  # Before mujoco is first imported.

import gymnasium as gym
import numpy as np

import sim  # noqa: F401
from sim.experts import load_expert
from sim.metaworld_envs import (
    MT10_TASKS,
    MetaWorldEnv,
    OffscreenCamera,
    pixels_id,
    state_id,
)


def emit(**fields: object) -> None:
    """Print one result as a JSON line."""
    print(json.dumps(fields), flush=True)


def rate(fn, n: int, repeats: int) -> float:
    """Median over repeats of ``n`` calls per second."""
    fn()  # warm-up (first frame uploads nothing new, but caches shaders)
    out = []
    for _ in range(repeats):
        t = time.perf_counter()
        for _ in range(n):
            fn()
        out.append(n / (time.perf_counter() - t))
    return statistics.median(out)


def bench_render(repeats: int) -> None:
    """Frames/s of one camera: ours (fast, full) and gymnasium's renderer, 84 and 96 px."""
    env = MetaWorldEnv("push-v3")
    env.reset(seed=0)
    model, data = env._env.model, env._env.data
    for size in (84, 96):
        for quality in ("fast", "full"):
            cam = OffscreenCamera(model, "corner4", size, size, quality)
            fps = rate(lambda cam=cam: cam.render(data), 20, repeats)
            cam.close()
            emit(bench="render", renderer="OffscreenCamera", quality=quality, size=size, fps=fps)
        from gymnasium.envs.mujoco.mujoco_rendering import MujocoRenderer

        model.vis.global_.offwidth = model.vis.global_.offheight = 480
        model.vis.quality.offsamples = 4
        ref = MujocoRenderer(model, data, width=size, height=size, camera_name="corner4")
        fps = rate(lambda ref=ref: ref.render("rgb_array"), 20, repeats)
        ref.close()
        emit(
            bench="render",
            renderer="gymnasium MujocoRenderer (480x480 buffer)",
            size=size,
            fps=fps,
        )
    env.close()


def bench_step(repeats: int) -> None:
    """Env steps/s with random actions: the state env, and the pixel env (84x84)."""
    for env_id in (state_id("push-v3"), pixels_id("push-v3")):
        env = gym.make(env_id)
        env.reset(seed=0)
        rng = np.random.default_rng(0)
        n = 200 if "Pixels" not in env_id else 20

        def step(env=env, rng=rng) -> None:
            _, _, term, trunc, _ = env.step(rng.uniform(-1, 1, 4).astype(np.float32))
            if term or trunc:
                env.reset()

        emit(bench="step", env=env_id, steps_per_s=rate(step, n, repeats))
        env.close()


def bench_experts(episodes: int) -> None:
    """Success rate and episode length of MetaWorld's scripted policy per MT10 task."""
    for task in MT10_TASKS:
        env = gym.make(state_id(task))
        expert = load_expert("auto", env)
        wins, lengths = 0, []
        t0 = time.perf_counter()
        for seed in range(episodes):
            obs, _ = env.reset(seed=seed)
            t = 0
            while t < 500:
                t += 1
                obs, _, term, trunc, info = env.step(expert(obs))
                if term or trunc:
                    break
            wins += bool(info["is_success"])
            lengths.append(t)
        emit(
            bench="expert",
            task=task,
            episodes=episodes,
            success_rate=wins / episodes,
            mean_length=float(np.mean(lengths)),
            max_length=int(np.max(lengths)),
            seconds=time.perf_counter() - t0,
        )
        env.close()


def main() -> None:
    """Run the selected benchmarks, printing JSON lines."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--episodes", type=int, default=20)
    parser.add_argument("--only", choices=("render", "step", "expert"), default=None)
    args = parser.parse_args()
    emit(
        bench="machine",
        python=platform.python_version(),
        cpus=os.cpu_count(),
        mujoco_gl=os.environ.get("MUJOCO_GL"),
        load_avg_1min=os.getloadavg()[0],
    )
    if args.only in (None, "render"):
        bench_render(args.repeats)
    if args.only in (None, "step"):
        bench_step(args.repeats)
    if args.only in (None, "expert"):
        bench_experts(args.episodes)


if __name__ == "__main__":
    main()
