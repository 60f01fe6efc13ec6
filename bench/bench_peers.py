"""Ours against the ``imitation`` library (1.0.1): BC, DAgger, GAIL and AIRL on CartPole-v1.

Run from the repository root with ``.venv`` active (one torch thread on each side)::

    python bench/bench_peers.py [--repeats 3] [--only bc,dagger,gail,airl] [--quick]
        [--peers-venv .venv-peers] [--setup-only]

The library pins gymnasium 0.29 (ours runs on 1.x), so it lives in a virtualenv of its own,
``.venv-peers`` by default: ``make peers-venv`` installs it, and so does this script when it
is missing (imitation 1.0.1 and what it requires, torch held at ``constraints.txt``'s 2.13.0;
``--peers-venv PATH`` reuses another one). Its side runs as a subprocess,
``bench/_peers_worker.py``, one algorithm per process; ours runs in this process.

Both sides get the same data, networks, batch sizes, budgets and evaluation:

- Expert data: 10 episodes of the scripted expert (``il-core collect --expert auto --seed
  0``), exported to an ``.npz`` for the worker, which builds imitation ``Trajectory`` objects.
- BC (batch 32 and 256): config/bc_cartpole.yaml's MLP (64x64, ReLU), Adam at 1e-3, the same
  number of gradient steps, every transition (no validation split, no gradient clipping,
  no logger output). Samples/s = steps * batch / training time: ours the trainer's own
  figure (its loop, with batch building; set-up, logging and checkpoint excluded), theirs
  ``BC.train`` alone. A bare PyTorch loop of the same MLP on pre-built tensors is timed
  beside ours, for scale.
- DAgger: round 0 the expert drives (the demonstrations), round r >= 1 mixes per step with
  beta = 0.5^r; both sides reset episode i of round r with ``episode_seed(seed, r, i)``, so
  round 0 is the same data. Ours retrains from scratch each round (``il_core.algos.dagger``);
  the library continues training its one policy, the same gradient steps per round.
- GAIL and AIRL: config/gail_cartpole.yaml's PPO (8 envs x 32 steps, 20 epochs, minibatch
  256, lr 1e-3 annealed, gamma 0.98, lambda 0.8) with SB3's PPO set to the same, the same
  actor, critic and discriminator (or reward / potential) MLP sizes, the same env-step
  budget; ``config/airl_cartpole.yaml`` for AIRL. The reward forms are each library's own:
  imitation's GAIL has only ``-log(1 - D)``, ours uses the config's (``logit``); both AIRLs
  reward the discriminator's logit ``f - log pi``.
- DAgger's expert on their side is our scripted CartPole expert re-implemented in the
  worker (which cannot import ``sim``); its gains are checked against ours before a run.
- Evaluation: 50 episodes reset with seeds 1000..1049, deterministic actions, each side in
  its own venv (CartPole-v1's seeded start states are the same in gymnasium 0.29 and 1.x).

Each row alternates ours and theirs (A/B/A/B) over ``--repeats`` (repeat k uses seed
``--seed + k``) and reports medians. Prints one JSON object per run on stderr, one JSON
line per row and a Markdown table (for docs/benchmarks.md) on stdout. Ratios: our
samples/s over theirs (BC), their wall time over ours (DAgger, GAIL, AIRL).
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from il_core.algos.dagger import run_dagger
from il_core.algos.gail import train_gail
from il_core.algos.ppo import PPOConfig
from il_core.collect import collect
from il_core.config import from_dict, load_yaml, merge
from il_core.constants import ACTION, OBS
from il_core.data import EpisodeDataset
from il_core.envs import make_env
from il_core.evaluate import evaluate
from il_core.train import train

ROOT = Path(__file__).resolve().parent.parent
WORKER = ROOT / "bench" / "_peers_worker.py"
CONFIG = ROOT / "config"
ENV_ID = "CartPole-v1"
#: What the peers' venv holds besides torch (which comes first, at the constraints' pin).
PEER_REQUIREMENTS = ("imitation==1.0.1",)
PEER_VERSION = "1.0.1"
ALGOS = ("bc", "dagger", "gail", "airl")
#: PyTorch's CPU wheels, as the Makefile's TORCH_INDEX: PyPI's Linux torch is a CUDA build
#: of several GB. Tried with a short timeout; pip falls back to its other indexes.
DEFAULT_TORCH_INDEX = "https://download.pytorch.org/whl/cpu"


# --------------------------------------------------------------------------- peers venv


def _venv_python(venv: Path) -> Path:
    return venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def _peer_version(python: Path) -> str | None:
    """The imitation version installed for ``python``, or None (no python, no imitation)."""
    code = "import importlib.metadata as m; print(m.version('imitation'))"
    try:
        res = subprocess.run([str(python), "-c", code], capture_output=True, text=True)
    except OSError:
        return None
    return res.stdout.strip() if res.returncode == 0 else None


def ensure_peers_venv(
    venv: Path,
    python: str,
    constraints: Path | None,
    torch_index: str | None,
    pip_flags: list[str],
) -> Path:
    """Make sure ``venv`` holds imitation 1.0.1; install it there if not. Returns its python.

    An existing venv with the right imitation is reused as it is. One without it is
    installed into (pip leaves what is already right alone); a folder that is not a
    working venv is refused rather than deleted, since the path may be the caller's.

    Args:
        venv: The venv's folder (created when missing).
        python: The interpreter that creates it (imitation 1.0.1 supports up to 3.11).
        constraints: pip constraints applied to both installs (``constraints.txt``: torch
            2.13.0), or None.
        torch_index: Extra index tried for torch first, or None for the configured ones.
        pip_flags: Extra pip options (``-qq``).

    Raises:
        RuntimeError: the venv cannot be created, or an install fails (pip's output shown).
    """
    py = _venv_python(venv)
    if _peer_version(py) == PEER_VERSION:
        return py
    if venv.exists() and not (venv / "pyvenv.cfg").exists():
        raise RuntimeError(f"{venv} exists but is not a virtualenv; remove it or pass another")
    if not py.exists():
        if shutil.which(python) is None:
            raise RuntimeError(f"{python!r} not found; pass --peers-python /path/to/python3.11")
        print(f"==> creating {venv} with {python}", file=sys.stderr, flush=True)
        subprocess.run([python, "-m", "venv", str(venv)], check=True)
    pip = [str(py), "-m", "pip", "install", *pip_flags]
    if constraints is not None:
        pip += ["-c", str(constraints)]
    torch_cmd = [*pip, "--retries", "1", "--timeout", "20"]
    if torch_index:
        torch_cmd += ["--extra-index-url", torch_index]
    print(f"==> installing {', '.join(PEER_REQUIREMENTS)} into {venv}", file=sys.stderr)
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_INPUT": "1"}
    # torch first and alone, so that imitation's `torch>=1.4` is met by the constrained CPU
    # build instead of pulling the newest (CUDA) one.
    for cmd in (torch_cmd + ["torch"], pip + list(PEER_REQUIREMENTS)):
        print("+ " + " ".join(cmd), file=sys.stderr, flush=True)
        res = subprocess.run(cmd, env=env)
        if res.returncode:
            raise RuntimeError(f"installing into {venv} failed (exit {res.returncode})")
    version = _peer_version(py)
    if version != PEER_VERSION:
        raise RuntimeError(f"{venv}: imitation {version} after install, not {PEER_VERSION}")
    return py


def check_expert_gains() -> None:
    """The worker's copy of the CartPole expert must be ours (it cannot import ``sim``).

    Read from the worker's source (``CARTPOLE_GAINS = (...)``), not imported: the worker
    belongs to the peers' venv.
    """
    from sim.experts import CartPoleLinearExpert

    tree = ast.parse(WORKER.read_text())
    gains = next(
        ast.literal_eval(node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Assign)
        and any(isinstance(t, ast.Name) and t.id == "CARTPOLE_GAINS" for t in node.targets)
    )
    if tuple(gains) != tuple(CartPoleLinearExpert.GAINS):
        raise RuntimeError(
            f"{WORKER.name}: CARTPOLE_GAINS {gains} differ from sim.experts."
            f"CartPoleLinearExpert.GAINS {CartPoleLinearExpert.GAINS}"
        )


# --------------------------------------------------------------------------- data


def export_npz(data: Path, path: Path) -> dict[str, Any]:
    """Write the dataset at ``data`` as the worker's ``.npz`` (see ``_peers_worker.py``).

    An il_core episode stores the observation before each action but not the one after
    the last; imitation's ``Trajectory`` wants it (AIRL's shaping reads next states). Each
    episode is replayed from its recorded seed with its recorded actions to get it, and
    the replay must reproduce the stored observations (it checks the export too).

    Returns:
        ``{"episodes", "steps", "path"}``.

    Raises:
        RuntimeError: several observation keys, or a replay that departs from the data.
    """
    ds = EpisodeDataset(data)
    keys = list(ds.spec.observations)
    if len(keys) != 1:
        raise RuntimeError(f"{data}: expected one vector observation, got {keys}")
    env_id = ds.spec.metadata["env_id"]
    obs_parts, act_parts, finals, terminal = [], [], [], []
    env = make_env(env_id)
    try:
        for e in range(ds.num_episodes):
            ep = ds.episode(e)
            obs, acts = ep.observations[keys[0]], ep.actions
            o, _ = env.reset(seed=int(ep.info.metadata["seed"]))
            term = False
            for t, a in enumerate(acts):
                if not np.allclose(o, obs[t], atol=1e-6):
                    raise RuntimeError(f"{data}: episode {e} replay departs at step {t}")
                o, _, term, _, _ = env.step(int(a) if acts.ndim == 1 else a)
            obs_parts.append(obs)
            act_parts.append(acts)
            finals.append(np.asarray(o, dtype=np.float32))
            terminal.append(bool(term))
    finally:
        env.close()
    np.savez(
        path,
        obs=np.concatenate(obs_parts).astype(np.float32),
        acts=np.concatenate(act_parts),
        final_obs=np.stack(finals),
        terminal=np.asarray(terminal),
        episode_starts=ds.episode_starts,
        episode_lengths=ds.episode_lengths,
    )
    return {"episodes": ds.num_episodes, "steps": ds.num_steps, "path": str(path)}


# --------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class Budget:
    """Sizes of one benchmark run (full, or ``--quick``'s smoke sizes)."""

    bc_steps: int
    dagger_rounds: int
    dagger_episodes: int
    dagger_steps: int
    adversarial_steps: int | None  # None: the config's total_env_steps
    eval_episodes: int


FULL = Budget(
    bc_steps=3000,
    dagger_rounds=4,
    dagger_episodes=2,
    dagger_steps=1000,
    adversarial_steps=None,
    eval_episodes=50,
)
QUICK = Budget(
    bc_steps=200,
    dagger_rounds=1,
    dagger_episodes=1,
    dagger_steps=100,
    adversarial_steps=2048,
    eval_episodes=5,
)
EVAL_SEED = 1000
DAGGER_BATCH = 32
DAGGER_BETA_DECAY = 0.5


def bc_settings(batch: int, budget: Budget) -> dict[str, Any]:
    """config/bc_cartpole.yaml at ``batch`` and the budget's steps: network, optimiser, lr."""
    raw = load_yaml(CONFIG / "bc_cartpole.yaml")
    return {
        "hidden_dims": list(raw["policy"]["hidden_dims"]),
        "lr": float(raw["train"]["lr"]),
        "batch_size": batch,
        "steps": budget.bc_steps,
    }


def adversarial_settings(algo: str, budget: Budget) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(our raw config, the worker's params)`` of GAIL or AIRL, from the same YAML.

    Ours is the YAML with the budget, no periodic evaluation (it would be timed; the
    library's ``train`` evaluates nothing) and the shared final evaluation. The worker's
    params translate the same values to SB3's PPO and imitation's reward nets.
    """
    path = CONFIG / f"{algo}_cartpole.yaml"
    raw = load_yaml(path)
    if budget.adversarial_steps is not None:
        raw["total_env_steps"] = budget.adversarial_steps
    raw = merge(
        raw,
        {
            "eval_every_steps": 0,
            "final_eval_episodes": budget.eval_episodes,
            "final_eval_seed": EVAL_SEED,
        },
    )
    ppo = from_dict(PPOConfig, raw.get("ppo") or {}, f"{path.name}: ppo")
    # GAIL's section is `discriminator:`, AIRL's `reward:` (g and the shaping term h).
    disc = dict(raw.get("discriminator") or raw.get("reward") or {})
    n_round = ppo.num_envs * ppo.rollout_steps
    disc_batch = min(int(disc.get("batch_size", 256)), n_round)
    params: dict[str, Any] = {
        "env": ENV_ID,
        "total_env_steps": int(raw["total_env_steps"]),
        "hidden_dims": list((raw.get("policy") or {}).get("hidden_dims", [64, 64])),
        "value_hidden_dims": list(ppo.value_hidden_dims),
        "num_envs": ppo.num_envs,
        "rollout_steps": ppo.rollout_steps,
        "minibatch_size": ppo.minibatch_size,
        "epochs": ppo.epochs,
        "ppo_lr": ppo.lr,
        "anneal_lr": ppo.anneal_lr,
        "gamma": ppo.gamma,
        "gae_lambda": ppo.gae_lambda,
        "clip_coef": ppo.clip_coef,
        "ent_coef": ppo.ent_coef,
        "vf_coef": ppo.vf_coef,
        "max_grad_norm": ppo.max_grad_norm,
        "disc_lr": float(disc.get("lr", 3e-4)),
        "disc_batch_size": disc_batch,
        # Ours: `epochs` passes over each rollout in batches of `batch_size`.
        "disc_updates": int(disc.get("epochs", 1)) * (n_round // disc_batch),
        "eval_episodes": budget.eval_episodes,
        "eval_seed": EVAL_SEED,
    }
    hidden = list(disc.get("hidden_dims", [64, 64]))
    if algo == "gail":
        params["disc_hidden_dims"] = hidden
    else:
        params["reward_hidden_dims"] = hidden
        params["potential_hidden_dims"] = list(disc.get("shaping_hidden_dims", hidden))
        # Ours defaults to a state-only g(s) (AIRLRewardConfig.state_only).
        params["reward_use_action"] = not bool(disc.get("state_only", True))
    return raw, params


# --------------------------------------------------------------------------- our side


def bare_torch_bc(data: Path, s: dict[str, Any], seed: int) -> float:
    """Samples/s of a bare PyTorch loop: the same MLP, Adam, batch and steps, no trainer.

    Pre-built tensors of the data, uniform random batches, cross-entropy: the floor of
    eager PyTorch on this machine at this size, which puts both libraries' figures in
    scale (at batch 32 the step is dominated by per-op overhead, not arithmetic).
    """
    ds = EpisodeDataset(data)
    window = ds.window(ds.step_indices(), history=1, horizon=1)
    x = torch.as_tensor(next(iter(window[OBS].values()))[:, 0], dtype=torch.float32)
    y = torch.as_tensor(window[ACTION][:, 0])
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    dims = [x.shape[1], *s["hidden_dims"]]
    layers: list[torch.nn.Module] = []
    for a, b in zip(dims[:-1], dims[1:], strict=True):
        layers += [torch.nn.Linear(a, b), torch.nn.ReLU()]
    net = torch.nn.Sequential(*layers, torch.nn.Linear(dims[-1], int(y.max()) + 1))
    opt = torch.optim.Adam(net.parameters(), lr=s["lr"])
    idx = torch.randint(0, len(y), (s["steps"], s["batch_size"]), generator=gen)
    t0 = time.perf_counter()
    for i in range(s["steps"]):
        loss = torch.nn.functional.cross_entropy(net(x[idx[i]]), y[idx[i]])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return s["steps"] * s["batch_size"] / (time.perf_counter() - t0)


def ours_bc(data: Path, out: Path, s: dict[str, Any], seed: int, budget: Budget) -> dict:
    """Our BC through ``il_core.train.train``; samples/s from the trainer's own timing."""
    raw = {
        "policy": {"name": "bc", "hidden_dims": s["hidden_dims"]},
        "train": {
            "steps": s["steps"],
            "batch_size": s["batch_size"],
            "lr": s["lr"],
            # Like imitation's BC: every episode trains, no gradient clipping, no logger.
            "val_fraction": 0.0,
            "val_every": 0,
            "grad_clip": 0.0,
            "tensorboard": False,
            "num_threads": 1,
            "device": "cpu",
        },
    }
    t0 = time.perf_counter()
    summary = train([data], out, raw, seed=seed, progress=False)
    call_s = time.perf_counter() - t0
    sps = float(summary["samples_per_s"])
    ev = evaluate(summary["checkpoint"], ENV_ID, budget.eval_episodes, EVAL_SEED)
    return {
        "mean_return": ev["mean_return"],
        "samples_per_s": sps,
        "train_s": s["steps"] * s["batch_size"] / sps,
        "call_s": call_s,
        "bare_torch_samples_per_s": bare_torch_bc(data, s, seed),
    }


def dagger_config(budget: Budget) -> dict[str, Any]:
    """Our DAgger config: CartPole-v1, the expert's round 0, 0.5^r mixing, BC per round."""
    bc = bc_settings(DAGGER_BATCH, budget)
    return {
        "dagger": {
            "algorithm": "dagger",
            "env": ENV_ID,
            "demo_env": None,
            "expert": "auto",
            "rounds": budget.dagger_rounds,
            "demo_episodes": budget.dagger_episodes,
            "episodes_per_round": budget.dagger_episodes,
            "beta": {"kind": "exponential", "decay": DAGGER_BETA_DECAY},
            # run_dagger evaluates after every round, inside its wall time; one episode
            # keeps that cost small (it counts against us). The shared 50-episode
            # evaluation of the last round's policy comes after, untimed, as theirs.
            "eval_episodes": 1,
            "eval_seed": EVAL_SEED,
        },
        "policy": {"name": "bc", "hidden_dims": bc["hidden_dims"]},
        "train": {
            "steps": budget.dagger_steps,
            "batch_size": DAGGER_BATCH,
            "lr": bc["lr"],
            "val_fraction": 0.0,
            "val_every": 0,
            "grad_clip": 0.0,
            "tensorboard": False,
            "num_threads": 1,
            "device": "cpu",
        },
    }


def ours_dagger(out: Path, seed: int, budget: Budget) -> dict:
    """Our DAgger (``il_core.algos.dagger.run_dagger``), timed as a whole."""
    t0 = time.perf_counter()
    summary = run_dagger(dagger_config(budget), out, seed=seed)
    wall_s = time.perf_counter() - t0
    policy = out / f"round_{budget.dagger_rounds:03d}" / "train" / "policy.pt"
    ev = evaluate(policy, ENV_ID, budget.eval_episodes, EVAL_SEED)
    return {"mean_return": ev["mean_return"], "labels": summary["labels_total"], "wall_s": wall_s}


def ours_gail(data: Path, out: Path, raw: dict[str, Any], seed: int) -> dict:
    """Our GAIL (``train_gail``): its wall time excludes the final evaluation, as theirs."""
    s = train_gail(data, out, raw, seed=seed)
    return {"mean_return": s["mean_return"], "env_steps": s["env_steps"], "wall_s": s["wall_s"]}


def ours_airl(data: Path, out: Path, raw: dict[str, Any], seed: int) -> dict:
    """Our AIRL (``il_core.algos.airl.train_airl``), or why it could not run."""
    try:
        from il_core.algos.airl import train_airl
    except ImportError as err:
        return {"unavailable": f"il_core.algos.airl not available ({err})"}
    try:
        s = train_airl(data, out, raw, seed=seed)
    except Exception as err:
        # A failed AIRL run (a bad config key, or LearnedRewardError: the learned reward
        # does not prefer the expert's states, which small budgets can end in) is a
        # result of this row; it must not end the run of the other rows.
        return {"unavailable": f"train_airl failed: {type(err).__name__}: {err}"}
    return {"mean_return": s["mean_return"], "env_steps": s["env_steps"], "wall_s": s["wall_s"]}


# --------------------------------------------------------------------------- their side


def peer(
    python: Path,
    algo: str,
    npz: Path,
    params: dict[str, Any],
    seed: int,
    work: Path,
    timeout_s: float,
) -> dict[str, Any]:
    """Run one algorithm in the peers' venv; returns the worker's result JSON.

    The child gets a clean environment: no PYTHONPATH or VIRTUAL_ENV of ours (il_core must
    not be importable there) and one BLAS/OpenMP thread, as torch.

    Raises:
        RuntimeError: the worker failed (the tail of its output is in the message).
    """
    out = work / f"peer_{algo}_{seed}_{time.monotonic_ns()}.json"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", TQDM_DISABLE="1")
    cmd = [str(python), str(WORKER), "--algo", algo, "--data", str(npz), "--out", str(out)]
    cmd += ["--seed", str(seed), "--params", json.dumps(params)]
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=work, timeout=timeout_s)
    if res.returncode or not out.exists():
        tail = (res.stdout + res.stderr)[-3000:]
        raise RuntimeError(f"{WORKER.name} --algo {algo} failed (exit {res.returncode}):\n{tail}")
    result: dict[str, Any] = json.loads(out.read_text())
    result["mean_return"] = result["eval"]["mean_return"]
    return result


# --------------------------------------------------------------------------- rows


@dataclass
class Row:
    """One line of the table: how to run each side once, and what to compare."""

    name: str
    setting: str
    ours: Callable[[int, Path], dict[str, Any]]
    theirs: Callable[[int, Path], dict[str, Any]]
    measure: str  # "samples_per_s" (higher is better) or "wall_s" (lower is better)
    keys: tuple[str, ...]  # the figures reported (medians) besides mean_return


def _median(runs: list[dict[str, Any]], key: str) -> float | None:
    vals = [r[key] for r in runs if isinstance(r.get(key), (int, float))]
    return float(statistics.median(vals)) if vals else None


def run_row(row: Row, repeats: int, seed: int, work: Path) -> dict[str, Any]:
    """Alternate ours and theirs ``repeats`` times; medians of each side and the ratio."""
    ours_runs: list[dict[str, Any]] = []
    their_runs: list[dict[str, Any]] = []
    for k in range(repeats):
        sides = (("ours", row.ours, ours_runs), ("imitation", row.theirs, their_runs))
        for side, fn, runs in sides:
            out = work / f"{row.name}_{side}_{k}"
            shutil.rmtree(out, ignore_errors=True)  # a kept --keep folder's earlier run
            t0 = time.perf_counter()
            res = fn(seed + k, out)
            res = {
                key: res[key] for key in ("mean_return", "unavailable", *row.keys) if key in res
            }
            runs.append(res)
            log = {"row": row.name, "side": side, "repeat": k, "seed": seed + k, **res}
            log["process_s"] = round(time.perf_counter() - t0, 2)
            print(json.dumps(log), file=sys.stderr, flush=True)
    unavailable = next((r["unavailable"] for r in ours_runs if "unavailable" in r), None)
    ours = {key: _median(ours_runs, key) for key in ("mean_return", *row.keys)}
    theirs = {key: _median(their_runs, key) for key in ("mean_return", *row.keys)}
    a, b = ours.get(row.measure), theirs.get(row.measure)
    ratio = None
    if a and b:
        ratio = a / b if row.measure == "samples_per_s" else b / a
    return {
        "row": row.name,
        "setting": row.setting,
        "repeats": repeats,
        "ours": ours,
        "imitation": theirs,
        "measure": row.measure,
        "ratio": ratio,
        "unavailable": unavailable,
        "returns": {
            "ours": [r.get("mean_return") for r in ours_runs],
            "imitation": [r.get("mean_return") for r in their_runs],
        },
    }


def bar(result: dict[str, Any]) -> str:
    """Whether the row meets issue 12's bar (returns equal or better, and its ratio)."""
    if result["unavailable"]:
        return "n/a"
    ro, rt = result["ours"]["mean_return"], result["imitation"]["mean_return"]
    ok = ro is not None and rt is not None and ro >= rt
    need = ""
    if result["row"].startswith("bc"):
        ok = ok and (result["ratio"] or 0.0) >= 10.0
        need = ", samples/s >= 10x"
    elif result["row"] in ("gail", "airl"):
        ok = ok and (result["ratio"] or 0.0) > 1.0
        need = ", wall below theirs"
    return f"{'met' if ok else 'NOT met'} (return >= theirs{need})"


def _fmt(value: float | None, measure: str) -> str:
    if value is None:
        return "-"
    if measure == "samples_per_s":
        return f"{value / 1000:.1f}k/s"
    if measure == "wall_s":
        return f"{value:.1f} s"
    return f"{value:.1f}" if isinstance(value, float) and not value.is_integer() else f"{value:g}"


def markdown(
    results: list[dict[str, Any]], versions: dict[str, str], repeats: int, budget: Budget
) -> str:
    """The table for docs/benchmarks.md, with the versions and settings it was measured on."""
    import gymnasium

    last = EVAL_SEED + budget.eval_episodes - 1
    lines = [
        f"Theirs: imitation {versions.get('imitation')}, stable-baselines3 "
        f"{versions.get('stable_baselines3')}, gymnasium {versions.get('gymnasium')}, torch "
        f"{versions.get('torch')}; ours: gymnasium {gymnasium.__version__}, torch "
        f"{torch.__version__}. One torch thread each; medians of {repeats} alternating runs "
        f"(run k trains with seed k); returns: mean over {budget.eval_episodes} episodes, seeds "
        f"{EVAL_SEED}..{last}, deterministic actions.",
        "",
        "| row | setting | mean return, ours | mean return, imitation | measure | ours "
        "| imitation | ratio | bar |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        o, t, m = r["ours"], r["imitation"], r["measure"]
        extra_o = extra_t = ""
        if r["row"] == "dagger":
            extra_o = f" ({_fmt(o['labels'], '')} labels)"
            extra_t = f" ({_fmt(t['labels'], '')} labels)"
        if r["row"].startswith("bc"):
            bare = _fmt(o.get("bare_torch_samples_per_s"), "samples_per_s")
            extra_o = f" ({_fmt(o['train_s'], 'wall_s')}; bare torch loop {bare})"
            extra_t = f" ({_fmt(t['train_s'], 'wall_s')})"
        what = {"samples_per_s": "training samples/s (train time)", "wall_s": "wall time"}[m]
        if r["row"] == "dagger":
            what += " (expert labels)"
        if r["row"] in ("gail", "airl"):
            what += f" ({_fmt(t.get('env_steps'), '')} env steps)"
        ours_cell = r["unavailable"] or f"{_fmt(o.get(m), m)}{extra_o}"
        ret_o = "-" if r["unavailable"] else _fmt(o["mean_return"], "")
        ratio = "-" if r["ratio"] is None else f"{r['ratio']:.1f}x"
        lines.append(
            f"| {r['row']} | {r['setting']} | {ret_o} | {_fmt(t['mean_return'], '')} | {what} "
            f"| {ours_cell} | {_fmt(t.get(m), m)}{extra_t} | {ratio} | {bar(r)} |"
        )
    return "\n".join(lines)


def build_rows(
    only: list[str],
    budget: Budget,
    data: Path,
    npz: Path,
    python: Path,
    work: Path,
    timeout: float,
) -> list[Row]:
    """The rows asked for, in table order."""

    def theirs(algo: str, params: dict[str, Any]) -> Callable[[int, Path], dict[str, Any]]:
        return lambda seed, _out: peer(python, algo, npz, params, seed, work, timeout)

    rows: list[Row] = []
    ev = {"eval_episodes": budget.eval_episodes, "eval_seed": EVAL_SEED, "env": ENV_ID}
    if "bc" in only:
        for batch in (32, 256):
            s = bc_settings(batch, budget)
            net = "x".join(str(h) for h in s["hidden_dims"])
            rows.append(
                Row(
                    name=f"bc_b{batch}",
                    setting=f"BC, MLP {net}, Adam {s['lr']:g}, {s['steps']} steps, batch {batch}",
                    ours=lambda seed, out, s=s: ours_bc(data, out, s, seed, budget),
                    theirs=theirs("bc", {**s, **ev}),
                    measure="samples_per_s",
                    keys=("samples_per_s", "train_s", "bare_torch_samples_per_s"),
                )
            )
    if "dagger" in only:
        bc = bc_settings(DAGGER_BATCH, budget)
        params = {
            "hidden_dims": bc["hidden_dims"],
            "batch_size": DAGGER_BATCH,
            "lr": bc["lr"],
            "steps_per_round": budget.dagger_steps,
            "rounds": budget.dagger_rounds,
            "episodes_per_round": budget.dagger_episodes,
            "beta_decay": DAGGER_BETA_DECAY,
            **ev,
        }
        rows.append(
            Row(
                name="dagger",
                setting=f"DAgger, {budget.dagger_rounds + 1} rounds x "
                f"{budget.dagger_episodes} episodes, beta 0.5^r, {budget.dagger_steps} BC "
                f"steps/round, batch {DAGGER_BATCH}",
                ours=lambda seed, out: ours_dagger(out, seed, budget),
                theirs=theirs("dagger", params),
                measure="wall_s",
                keys=("labels", "wall_s"),
            )
        )
    for algo in ("gail", "airl"):
        if algo not in only:
            continue
        raw, params = adversarial_settings(algo, budget)
        fn = ours_gail if algo == "gail" else ours_airl
        rows.append(
            Row(
                name=algo,
                setting=f"{algo.upper()}, PPO {params['num_envs']}x{params['rollout_steps']}, "
                f"{params['total_env_steps']} env steps",
                ours=lambda seed, out, fn=fn, raw=raw: fn(data, out, raw, seed),
                theirs=theirs(algo, params),
                measure="wall_s",
                keys=("env_steps", "wall_s"),
            )
        )
    return rows


def main() -> None:
    """Parse arguments, set up the peers' venv, run the rows, print JSON and Markdown."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=None, help="A/B pairs per row (default 3)")
    ap.add_argument("--only", default=",".join(ALGOS), help="comma list of bc,dagger,gail,airl")
    ap.add_argument("--quick", action="store_true", help="tiny budgets, 1 repeat: a smoke run")
    ap.add_argument("--seed", type=int, default=0, help="repeat k uses seed + k")
    ap.add_argument("--peers-venv", type=Path, default=ROOT / ".venv-peers")
    ap.add_argument("--peers-python", default="python3.11", help="creates a missing venv")
    ap.add_argument("--constraints", type=Path, default=ROOT / "constraints.txt")
    ap.add_argument("--torch-index", default=DEFAULT_TORCH_INDEX, help="'' for none")
    ap.add_argument(
        "--pip-flags", default="-qq", help="extra pip options, e.g. --pip-flags=-v ('' for none)"
    )
    ap.add_argument("--setup-only", action="store_true", help="install the venv, run nothing")
    ap.add_argument("--timeout", type=float, default=3600.0, help="per worker run, seconds")
    ap.add_argument("--keep", type=Path, default=None, help="work folder to keep (default tmp)")
    args = ap.parse_args()
    only = [a.strip() for a in args.only.split(",") if a.strip()]
    bad = sorted(set(only) - set(ALGOS))
    if bad:
        ap.error(f"--only: unknown {bad}; choose from {','.join(ALGOS)}")
    repeats = args.repeats if args.repeats is not None else (1 if args.quick else 3)
    if repeats < 1:
        ap.error("--repeats must be >= 1")
    constraints = None if str(args.constraints) in ("", "/dev/null") else args.constraints
    try:
        python = ensure_peers_venv(
            args.peers_venv.resolve(),
            args.peers_python,
            constraints,
            args.torch_index or None,
            args.pip_flags.split(),
        )
    except (RuntimeError, OSError, subprocess.CalledProcessError) as err:
        sys.exit(f"error: {err}")
    if args.setup_only:
        print(f"==> peers venv ready: {args.peers_venv} (imitation {PEER_VERSION})")
        return
    check_expert_gains()
    torch.set_num_threads(1)
    budget = QUICK if args.quick else FULL

    tmp = None if args.keep else tempfile.mkdtemp(prefix="bench_peers_")
    work = (args.keep or Path(tmp or ".")).resolve()
    work.mkdir(parents=True, exist_ok=True)
    try:
        data, npz = work / "demos", work / "demos.npz"
        if not data.exists():
            print(json.dumps(collect(ENV_ID, "auto", 10, 0, data)), file=sys.stderr)
        print(json.dumps(export_npz(data, npz)), file=sys.stderr, flush=True)
        rows = build_rows(only, budget, data, npz, python, work, args.timeout)
        results = []
        for row in rows:
            result = run_row(row, repeats, args.seed, work)
            results.append(result)
            print(json.dumps(result), flush=True)
        print()
        print(markdown(results, peer_versions(python), repeats, budget))
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


def peer_versions(python: Path) -> dict[str, str]:
    """Versions in the peers' venv (the table's header)."""
    code = (
        "import importlib.metadata as m, json; print(json.dumps({k: m.version(n) for k, n in "
        "[('imitation', 'imitation'), ('stable_baselines3', 'stable-baselines3'), "
        "('gymnasium', 'gymnasium'), ('torch', 'torch'), ('numpy', 'numpy')]}))"
    )
    res = subprocess.run([str(python), "-c", code], capture_output=True, text=True, check=True)
    return dict(json.loads(res.stdout))


if __name__ == "__main__":
    main()
