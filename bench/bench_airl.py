"""AIRL reward recovery and transfer (issue 12): does the saved reward alone teach a task?

For CartPole-v1 and Pendulum-v1, from 10 expert episodes (seed 0):

1. ``il-core airl`` learns a reward (``reward.pt``) and an adversarial policy;
2. a fresh PPO learner trained only on that reward (``il-core ppo --reward``; the env's
   reward hidden) is evaluated on the env's own return, normalised as
   ``(R - R_random) / (R_expert - R_random)`` with the expert and uniformly random actions
   run on the same evaluation seeds;
3. a control: the same PPO on an *untrained* reward network of the same size, calibrated
   the same way (expert states +1, a random policy's states -1): what the calibration alone
   gives, without anything learned;
4. changed dynamics (``il_ros/PendulumHeavy-v1``, a 30% heavier bob): the policies learned
   on the original pendulum (BC, GAIL, the AIRL learner) run unchanged, against a fresh PPO
   that re-optimises the learned reward in the heavy pendulum, and PPO on the heavy
   pendulum's true reward as the reference.

Prints one JSON line per row and a markdown table at the end (docs/benchmarks.md).

Usage: ``python bench/bench_airl.py [--seeds 0] [--episodes 50] [--quick]``
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import sim  # noqa: E402,F401  (registers il_ros/PendulumHeavy-v1)
from il_core.algos.airl import expert_transitions, train_airl  # noqa: E402
from il_core.algos.gail import train_gail  # noqa: E402
from il_core.algos.ppo_train import train_ppo  # noqa: E402
from il_core.collect import collect  # noqa: E402
from il_core.config import load_yaml  # noqa: E402
from il_core.evaluate import evaluate  # noqa: E402
from il_core.experts import load_expert  # noqa: E402
from il_core.reward import LearnedReward, save_learned_reward  # noqa: E402

EVAL_SEED = 1000
HEAVY = "il_ros/PendulumHeavy-v1"


def reference_returns(env_id: str, episodes: int) -> dict[str, float]:
    """Mean return of the scripted expert and of uniformly random actions, same seeds."""
    env = gym.make(env_id)
    expert = load_expert("auto", env)
    env.action_space.seed(0)
    out: dict[str, list[float]] = {"expert": [], "random": []}
    for i in range(episodes):
        for name, act in (("expert", expert), ("random", lambda o: env.action_space.sample())):
            obs, _ = env.reset(seed=EVAL_SEED + i)
            ret, done = 0.0, False
            while not done:
                obs, r, term, trunc, _ = env.step(act(obs))
                ret, done = ret + float(r), term or trunc
            out[name].append(ret)
    env.close()
    return {k: float(np.mean(v)) for k, v in out.items()}


def control_reward(demos: Path, airl_reward: Path, out: Path, seed: int) -> Path:
    """An untrained reward net of the AIRL reward's size, calibrated like AIRL's."""
    from il_core.algos.ppo import PPOEnvPool
    from il_core.reward import load_learned_reward

    learned = load_learned_reward(airl_reward)
    _, e_obs, *_ = expert_transitions(demos, None)
    torch.manual_seed(seed + 12345)
    ctrl = LearnedReward(learned.spec, learned.stats, learned.hidden_dims)
    pool = PPOEnvPool(learned.meta["env_id"], 8, seed + 777)
    pool.reset()
    space = pool.envs[0].action_space
    space.seed(seed)
    novice = []
    for _ in range(32):  # 256 states of uniformly random actions: the "untrained learner"
        novice.append(pool.obs)
        pool.step(np.stack([space.sample() for _ in range(pool.num_envs)]))
    pool.close()
    n_obs = {k: torch.as_tensor(np.concatenate([o[k] for o in novice])) for k in novice[0]}
    with torch.no_grad():
        if not ctrl.raw(e_obs).mean() > ctrl.raw(n_obs).mean():
            last = ctrl.g[-1]  # pick the sign that prefers the expert, as calibration needs
            last.weight.neg_()
            last.bias.neg_()
    ctrl.calibrate(e_obs, n_obs)
    return save_learned_reward(out, ctrl, meta={"algo": "control", **learned.meta})


def bc_policy(demos: Path, out: Path, seed: int) -> str:
    """BC on the demos with config/bc_cartpole.yaml's MLP and steps (a continuous head)."""
    cmd = [
        sys.executable, "-m", "il_core", "train", "--data", str(demos), "--out", str(out),
        "--config", str(ROOT / "config/bc_cartpole.yaml"), "--seed", str(seed),
    ]  # fmt: skip
    res = subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=ROOT)
    return json.loads(res.stdout.strip().splitlines()[-1])["checkpoint"]


def run(seed: int, episodes: int, quick: bool, work: Path) -> list[dict[str, Any]]:
    """Every row of the module docstring for one training seed; prints each as JSON."""
    rows: list[dict[str, Any]] = []

    def row(**kw: Any) -> None:
        print(json.dumps(kw), flush=True)
        rows.append(kw)

    def cfg(name: str, **over: Any) -> dict[str, Any]:
        c = load_yaml(ROOT / f"config/{name}.yaml")
        c.update(eval_every_steps=0, final_eval_episodes=0, **over)
        if quick:
            c["total_env_steps"] = min(c["total_env_steps"], 4096)
        return c

    for env_id, tag in (("CartPole-v1", "cartpole"), ("Pendulum-v1", "pendulum")):
        ref = reference_returns(env_id, episodes)

        def norm(r: float, ref: dict[str, float] = ref) -> float:
            return (r - ref["random"]) / (ref["expert"] - ref["random"])

        demos = work / f"{tag}_demos"
        collect(env_id, "auto", 10, 0, demos)
        t = time.perf_counter()
        airl = train_airl(demos, work / f"{tag}_airl_{seed}", cfg(f"airl_{tag}"), seed=seed)
        airl_wall = time.perf_counter() - t
        ev = evaluate(airl["checkpoint"], env_id, episodes, EVAL_SEED)["mean_return"]
        row(env=env_id, seed=seed, what="AIRL learner (adversarial policy)", ret=ev,
            norm=norm(ev), env_steps=airl["env_steps"], wall_s=round(airl_wall, 1),
            calibrated=airl["reward_calibrated"])  # fmt: skip
        for what, reward in (
            ("fresh PPO on the learned reward", airl["reward_file"]),
            (
                "control: fresh PPO on an untrained reward net",
                control_reward(demos, airl["reward_file"], work / f"{tag}_ctrl.pt", seed),
            ),
        ):
            t = time.perf_counter()
            ppo = train_ppo(env_id, work / f"{tag}_{len(rows)}", cfg(f"ppo_{tag}"), seed=seed,
                            reward=reward)  # fmt: skip
            ev = evaluate(ppo["checkpoint"], env_id, episodes, EVAL_SEED)["mean_return"]
            row(env=env_id, seed=seed, what=what, ret=ev, norm=norm(ev),
                env_steps=ppo["env_steps"], wall_s=round(time.perf_counter() - t, 1))  # fmt: skip
        row(env=env_id, seed=seed, what="reference", **ref)
        if tag != "pendulum":
            continue

        # Changed dynamics: the heavy pendulum.
        href = reference_returns(HEAVY, episodes)

        def hnorm(r: float, ref: dict[str, float] = href) -> float:
            return (r - ref["random"]) / (ref["expert"] - ref["random"])

        bc = bc_policy(demos, work / f"bc_{seed}", seed)
        gail = train_gail(demos, work / f"gail_{seed}", cfg("gail_pendulum"), seed=seed)
        for what, ckpt in (
            ("BC policy (trained on the light pendulum)", bc),
            ("GAIL policy (trained on the light pendulum)", gail["checkpoint"]),
            ("AIRL learner (trained on the light pendulum)", airl["checkpoint"]),
        ):
            ev = evaluate(ckpt, HEAVY, episodes, EVAL_SEED)["mean_return"]
            row(env=HEAVY, seed=seed, what=what, ret=ev, norm=hnorm(ev))
        for what, reward in (
            ("fresh PPO re-optimising the learned reward in the heavy pendulum",
             airl["reward_file"]),
            ("PPO on the heavy pendulum's true reward (reference)", None),
        ):  # fmt: skip
            t = time.perf_counter()
            ppo = train_ppo(HEAVY, work / f"heavy_{len(rows)}", cfg("ppo_pendulum"), seed=seed,
                            reward=reward)  # fmt: skip
            ev = evaluate(ppo["checkpoint"], HEAVY, episodes, EVAL_SEED)["mean_return"]
            row(env=HEAVY, seed=seed, what=what, ret=ev, norm=hnorm(ev),
                env_steps=ppo["env_steps"], wall_s=round(time.perf_counter() - t, 1))  # fmt: skip
        row(env=HEAVY, seed=seed, what="reference", **href)
    return rows


def main() -> None:
    """Parse the flags, run every seed, print the markdown table."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", default="0", help="comma-separated training seeds")
    ap.add_argument("--episodes", type=int, default=50, help="evaluation episodes")
    ap.add_argument("--quick", action="store_true", help="tiny budgets: a smoke run")
    args = ap.parse_args()
    torch.set_num_threads(1)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench_airl_") as tmp:
        for seed in (int(s) for s in args.seeds.split(",")):
            rows += run(seed, args.episodes, args.quick, Path(tmp))
    print("\n| env | seed | policy | return | normalised | env steps | wall s |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        if r["what"] == "reference":
            print(f"| {r['env']} | {r['seed']} | expert / random | {r['expert']:.1f} / "
                  f"{r['random']:.1f} | 1 / 0 | | |")  # fmt: skip
            continue
        print(f"| {r['env']} | {r['seed']} | {r['what']} | {r['ret']:.1f} | {r['norm']:.3f} | "
              f"{r.get('env_steps', '')} | {r.get('wall_s', '')} |")  # fmt: skip


if __name__ == "__main__":
    main()
