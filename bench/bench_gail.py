"""GAIL on CartPole-v1: return, interaction budget and wall time over several seeds.

Run from the repository root (one torch thread; 10-25 s per run at the default budget,
about 1 minute at 100k steps, on a shared 2-core machine)::

    PYTHONPATH=. python bench/bench_gail.py [--seeds 0 1 2] [--rewards gail logit] \
        [--budget 30720] [--controls]

Collects 10 scripted-expert episodes (``cartpole_linear``, seeds 0..9) into a temporary
dataset, then for every reward form and training seed runs :func:`il_core.algos.gail.
train_gail` with ``config/gail_cartpole.yaml`` and the given budget. Each run reports the
final evaluation (50 episodes from seed 1000, the deterministic policy), the env steps of
the first periodic evaluation (10 episodes from seed 10000, every 10240 steps) whose mean
return was >= 450, the training wall time, and the share of expert states on which the
policy picks the expert's action. ``--controls`` adds runs with an untrained discriminator
(``discriminator.epochs: 0``): what the reward alone teaches without imitation, which shows
the survival bias of the ``gail`` form. A uniformly random policy's mean return over the
same 50 evaluation episodes is printed for scale.

Prints one JSON object per run, then a Markdown table of the medians.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from il_core.algos.gail import train_gail
from il_core.collect import collect
from il_core.config import load_yaml, merge
from il_core.envs import make_env

CONFIG = Path(__file__).resolve().parent.parent / "config" / "gail_cartpole.yaml"
BAR = 450.0


def random_policy_return(episodes: int, seed: int) -> float:
    """Mean return of uniformly random actions over seeded CartPole-v1 episodes."""
    env = make_env("CartPole-v1")
    env.action_space.seed(seed)
    returns = []
    for i in range(episodes):
        env.reset(seed=seed + i)
        ret, done = 0.0, False
        while not done:
            _, r, term, trunc, _ = env.step(env.action_space.sample())
            ret += float(r)
            done = term or trunc
        returns.append(ret)
    env.close()
    return float(np.mean(returns))


def run(data: Path, out: Path, reward: str, seed: int, budget: int, control: bool) -> dict:
    """One GAIL run; returns the figures of one table row."""
    raw = merge(
        load_yaml(CONFIG),
        {"total_env_steps": budget, "discriminator": {"reward": reward}},
    )
    if control:
        raw = merge(raw, {"discriminator": {"epochs": 0}})
    t0 = time.perf_counter()
    s = train_gail(data, out, raw, seed=seed)
    reached = next((h["env_steps"] for h in s["history"] if h["eval_return"] >= BAR), None)
    return {
        "reward": reward,
        "control": control,
        "seed": seed,
        "env_steps": s["env_steps"],
        "final_return": s["mean_return"],
        "final_std": s["std_return"],
        "steps_to_450": reached,
        "train_wall_s": s["wall_s"],
        "total_wall_s": round(time.perf_counter() - t0, 1),
        "expert_agreement": round(s["expert_agreement"], 3),
        "evals": [round(h["eval_return"], 1) for h in s["history"]],
    }


def median_or_none(values: list[Any]) -> Any:
    """Median, counting a never-reached 450 (None) as infinitely late."""
    if any(v is None for v in values):
        vals = sorted(values, key=lambda v: float("inf") if v is None else v)
        return vals[len(vals) // 2]
    return statistics.median(values)


def main() -> None:
    """Parse arguments, run every configuration, print JSON lines and a Markdown table."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--rewards", nargs="+", default=["gail", "logit"])
    p.add_argument("--budget", type=int, default=30_720, help="env steps per run")
    p.add_argument("--controls", action="store_true", help="add untrained-discriminator runs")
    args = p.parse_args()
    torch.set_num_threads(1)

    with tempfile.TemporaryDirectory(prefix="bench_gail_") as tmp:
        data = Path(tmp) / "data"
        print(json.dumps(collect("CartPole-v1", "auto", 10, 0, data)), flush=True)
        print(json.dumps({"random_policy_return": random_policy_return(50, 1000)}), flush=True)
        rows = []
        for control in [False, True] if args.controls else [False]:
            for reward in args.rewards:
                for seed in args.seeds:
                    name = f"{reward}_{'control' if control else 'gail'}_{seed}"
                    row = run(data, Path(tmp) / name, reward, seed, args.budget, control)
                    rows.append(row)
                    print(json.dumps(row), flush=True)

    print()
    print(
        "| reward | discriminator | seeds | final return (median; per seed) | env steps to "
        "eval >= 450 (median; per seed) | train wall (median) | expert agreement (median) |"
    )
    print("|---|---|---|---|---|---|---|")
    for control in [False, True] if args.controls else [False]:
        for reward in args.rewards:
            group = [r for r in rows if r["reward"] == reward and r["control"] == control]
            finals = [r["final_return"] for r in group]
            reach = [r["steps_to_450"] for r in group]
            print(
                f"| `{reward}` | {'untrained (control)' if control else 'trained'} | "
                f"{len(group)} | **{statistics.median(finals):.1f}**; "
                f"{' / '.join(f'{f:.1f}' for f in finals)} | "
                f"{median_or_none(reach)}; {' / '.join(str(x) for x in reach)} | "
                f"{statistics.median(r['train_wall_s'] for r in group):.0f} s | "
                f"{statistics.median(r['expert_agreement'] for r in group):.3f} |"
            )


if __name__ == "__main__":
    main()
