r"""MetaWorld MT10 imitation benchmark: demonstrations -> training -> success rate, per task.

Run from the repository root (needs ``pip install metaworld`` and, headless, OSMesa)::

    MUJOCO_GL=osmesa PYTHONPATH=. python bench/bench_mt10.py --policy diffusion --obs state \
        --config config/metaworld_state.yaml --seeds 0 1 2 --episodes 50 --workers 2 \
        --work /tmp/mt10 --json /tmp/mt10/diffusion-state.jsonl

Everything goes through the command line a user runs (``il-core collect``, ``train``,
``eval``), one subprocess each:

1. ``il-core collect --env il_ros/MetaWorld[Pixels]-<task> --expert auto --episodes DEMOS
   --seed 0 --successful-only``: the demonstrations, once per observation kind and task
   (reused from ``WORK/data`` when already there);
2. per training seed, ``il-core train --policy POLICY --config CONFIG --seed S`` with one
   torch thread (``--workers`` jobs run side by side, one per core); the wall time of the
   training process is reported;
3. ``il-core eval --episodes EPISODES --seed 1000``: evaluation seeds 1000.. are disjoint
   from the demonstration seeds (each seed draws one of MetaWorld's 50 MT1 configurations,
   so about 80% of the evaluation episodes start from a layout no demonstration saw).

Prints (and with ``--json`` appends) one JSON object per (task, seed), then a Markdown table:
success per task (mean over seeds, and each seed), and the median training time.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

os.environ.setdefault("MUJOCO_GL", "osmesa")

from sim.metaworld_envs import MT10_TASKS, pixels_id, state_id

EVAL_SEED = 1000


def il_core(*args: object, log: Path) -> dict[str, Any]:
    """Run ``python -m il_core ARGS`` and return its JSON summary (stdout); stderr to ``log``."""
    cmd = [sys.executable, "-m", "il_core", *map(str, args)]
    with open(log, "ab") as err:
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=err, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed (exit {proc.returncode}); see {log}")
    return json.loads(proc.stdout)


def demos(task: str, obs: str, n: int, work: Path) -> Path:
    """The dataset of ``n`` successful expert demonstrations of ``task`` (collected once)."""
    env_id = state_id(task) if obs == "state" else pixels_id(task)
    out = work / "data" / f"{obs}-{task}-{n}"
    if not (out / "spec.json").exists():
        il_core(
            "collect", "--env", env_id, "--episodes", n, "--seed", 0, "--successful-only",
            "--out", out, log=work / "logs" / f"collect-{obs}-{task}.log",
        )  # fmt: skip
    return out


def job(task: str, seed: int, args: argparse.Namespace, data: Path) -> dict[str, Any]:
    """Train one seed on one task and evaluate it."""
    env_id = state_id(task) if args.obs == "state" else pixels_id(task)
    name = f"{args.policy}-{args.obs}{args.tag}-{task}-s{seed}"
    run = args.work / "runs" / name
    log = args.work / "logs" / f"{name}.log"
    sets = ["--set", "train.num_threads=1", "--set", "train.tensorboard=false"]
    for kv in args.set:
        sets += ["--set", kv]
    config = ["--config", args.config] if args.config else []
    t0 = time.perf_counter()
    trained = il_core(
        "train", "--data", data, "--policy", args.policy, *config, *sets,
        "--seed", seed, "--out", run, log=log,
    )  # fmt: skip
    train_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    ev = il_core(
        "eval", "--checkpoint", run / "policy.pt", "--env", env_id, "--episodes",
        args.episodes, "--seed", EVAL_SEED, "--threads", 1, "--no-tensorboard", log=log,
    )  # fmt: skip
    row = {
        "policy": args.policy,
        "obs": args.obs,
        "task": task,
        "seed": seed,
        "demos": args.demos,
        "success_rate": ev["success_rate"],
        "episodes": ev["episodes"],
        "mean_length": ev["mean_length"],
        "train_s": round(train_s, 1),
        "train_steps": trained["steps"],
        "eval_s": round(time.perf_counter() - t0, 1),
        "config": args.config,
        "set": args.set,
    }
    print(json.dumps(row), flush=True)
    if args.json:
        with open(args.json, "a") as f:
            f.write(json.dumps(row) + "\n")
    return row


def table(rows: list[dict[str, Any]], tasks: list[str], seeds: list[int]) -> str:
    """Markdown table: per task, mean success over seeds, each seed, median training time."""
    by = {(r["task"], r["seed"]): r for r in rows}
    lines = [
        "| task | success (mean) | " + " | ".join(f"seed {s}" for s in seeds) + " | train s |",
        "|---|---:|" + "---:|" * len(seeds) + "---:|",
    ]
    means = []
    for task in tasks:
        got = [by[(task, s)] for s in seeds if (task, s) in by]
        if not got:
            continue
        mean = statistics.mean(r["success_rate"] for r in got)
        means.append(mean)
        cells = [f"{by[(task, s)]['success_rate']:.0%}" if (task, s) in by else "-" for s in seeds]
        train = statistics.median(r["train_s"] for r in got)
        lines.append(f"| {task} | {mean:.0%} | " + " | ".join(cells) + f" | {train:.0f} |")
    if means:
        lines.append(f"| **mean** | **{statistics.mean(means):.1%}** |" + " |" * len(seeds) + " |")
    return "\n".join(lines)


def main() -> int:
    """Entry point."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--policy", required=True, help="bc | diffusion | act | ...")
    p.add_argument("--obs", choices=["state", "pixels"], default="state")
    p.add_argument("--config", help="YAML with policy:/train: sections (shared by every task)")
    p.add_argument("--set", action="append", default=[], help="config override KEY=VALUE")
    p.add_argument("--tasks", nargs="+", default=list(MT10_TASKS))
    p.add_argument("--seeds", nargs="+", type=int, default=[0])
    p.add_argument("--demos", type=int, default=10, help="successful demonstrations per task")
    p.add_argument("--episodes", type=int, default=50, help="evaluation episodes per seed")
    p.add_argument("--workers", type=int, default=2, help="jobs side by side (one per core)")
    p.add_argument("--work", type=Path, default=Path("/tmp/il_ros-mt10"))
    p.add_argument("--json", type=Path, help="append one JSON line per (task, seed) here")
    p.add_argument("--tag", default="", help="suffix of the run directories (variants)")
    args = p.parse_args()
    (args.work / "logs").mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    data = {t: demos(t, args.obs, args.demos, args.work) for t in args.tasks}
    with ThreadPoolExecutor(args.workers) as pool:
        futures = [pool.submit(job, t, s, args, data[t]) for s in args.seeds for t in args.tasks]
        rows = [f.result() for f in futures]
    print(table(rows, args.tasks, args.seeds))
    print(f"total {time.perf_counter() - start:.0f} s with {args.workers} workers")
    return 0


if __name__ == "__main__":
    sys.exit(main())
