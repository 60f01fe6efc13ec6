"""A PPO training run with evaluation, metrics and a checkpoint; and ``il-core ppo``.

GAIL (:mod:`il_core.algos.gail`), AIRL (:mod:`il_core.algos.airl`) and plain PPO share
everything around the learner: the env pool, the ``bc`` actor with its critic, periodic and
final evaluation on the env's own reward, ``metrics.jsonl``, the summary and the checkpoint.
:func:`run_ppo` holds that once; an algorithm passes only how a rollout is scored
(``make_reward``) and what it saves beside the actor.

``il-core ppo`` trains a policy on an env's reward or, with ``--reward FILE``, on a learned
reward saved by ``il-core airl`` (:mod:`il_core.reward`): rollouts are scored with it and the
training envs' own reward is hidden (:class:`~il_core.reward.HiddenRewardWrapper`), so the
learner never sees it; only the evaluation reads it, to report the return the task defines::

    il-core ppo --env CartPole-v1 --reward runs/cp/airl/reward.pt \
        --config config/ppo_cartpole.yaml --seed 0 --out runs/cp/ppo_on_airl
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from il_core.algos.ppo import ActorCritic, PPOConfig, PPOEnvPool, RewardFn, Rollout, ppo_run
from il_core.config import ConfigError, from_dict, to_dict
from il_core.policies.bc.configuration import BCConfig
from il_core.spec import DatasetSpec

__all__ = [
    "DemoRunConfig",
    "PPOTrainConfig",
    "actor_critic_state",
    "add_cli",
    "add_run_arguments",
    "finish_summary",
    "load_run_config",
    "run_ppo",
    "train_ppo",
]

log = logging.getLogger(__name__)


def _default_policy() -> BCConfig:
    return BCConfig(hidden_dims=(64, 64))


@dataclass
class PPOTrainConfig:
    """A PPO training run: budget, actor, PPO settings and evaluation (``config/ppo_*.yaml``).

    GAIL's and AIRL's configs extend it with their discriminator settings.

    Attributes:
        total_env_steps: Interaction budget (env steps of the learner, all envs together;
            rounded up to whole PPO rollouts).
        policy: The actor, a ``bc`` policy config (``n_obs_steps`` and ``horizon`` 1, no
            dropout); the checkpoint is a ``bc`` policy.
        ppo: PPO hyper-parameters.
        eval_every_steps: Evaluate the deterministic policy every this many env steps
            (0: only at the end).
        eval_episodes: Episodes per periodic evaluation.
        eval_seed: Periodic evaluation episode i is reset with ``eval_seed + i``.
        final_eval_episodes: Episodes of the final evaluation (0: none).
        final_eval_seed: Final evaluation episode i is reset with ``final_eval_seed + i``
            (``il-core eval``'s default 1000; kept apart from ``eval_seed``).
    """

    total_env_steps: int = field(default=100_000, metadata={"help": "interaction budget"})
    policy: BCConfig = field(
        default_factory=_default_policy, metadata={"help": "actor: a 'bc' policy config"}
    )
    ppo: PPOConfig = field(default_factory=PPOConfig, metadata={"help": "PPO settings"})
    eval_every_steps: int = field(
        default=10_000, metadata={"help": "env steps between evaluations (0: end only)"}
    )
    eval_episodes: int = field(default=10, metadata={"help": "episodes per evaluation"})
    eval_seed: int = field(default=10_000, metadata={"help": "periodic evaluation base seed"})
    final_eval_episodes: int = field(default=50, metadata={"help": "final evaluation episodes"})
    final_eval_seed: int = field(default=1000, metadata={"help": "final evaluation base seed"})

    def __post_init__(self) -> None:
        if self.total_env_steps < 1:
            raise ConfigError(f"total_env_steps must be >= 1, got {self.total_env_steps}")
        if self.policy.n_obs_steps != 1 or self.policy.horizon != 1:
            raise ConfigError(
                "policy.n_obs_steps and policy.horizon must be 1 for PPO, got "
                f"{self.policy.n_obs_steps} and {self.policy.horizon}"
            )
        if self.policy.dropout:
            raise ConfigError(f"policy.dropout must be 0 for PPO, got {self.policy.dropout}")
        for name in ("eval_every_steps", "final_eval_episodes"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.eval_episodes < 1:
            raise ConfigError(f"eval_episodes must be >= 1, got {self.eval_episodes}")


@dataclass
class DemoRunConfig(PPOTrainConfig):
    """A PPO run that learns from expert demonstrations (GAIL, AIRL): which of them to use.

    Attributes:
        expert_episodes: Use only the first this many episodes of the data (None: all).
    """

    expert_episodes: int | None = field(
        default=None, metadata={"help": "use the first N expert episodes (null: all)"}
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.expert_episodes is not None and self.expert_episodes < 1:
            raise ConfigError(f"expert_episodes must be >= 1 or null, got {self.expert_episodes}")


#: Builds the rollout scorer once the actor-critic exists (AIRL's discriminator reads the
#: actor's log-probabilities), from the actor-critic and the run's torch generator (shared
#: with PPO's minibatch shuffles, so that one seed fixes the whole run). Returns the scorer
#: (None: the envs' own rewards) and a dict of lists the scorer appends its training logs
#: to (averaged into each evaluation row).
MakeReward = Callable[
    [ActorCritic, torch.Generator], tuple[RewardFn | None, dict[str, list[float]]]
]
#: After training: what to store in the checkpoint beside the actor (plain tensors).
SaveExtra = Callable[[ActorCritic], dict[str, Any]]


def run_ppo(
    algo: str,
    cfg: PPOTrainConfig,
    env_id: str,
    out: str | Path,
    *,
    seed: int,
    spec: DatasetSpec,
    stats: dict[str, dict[str, np.ndarray]] | None,
    make_reward: MakeReward | None = None,
    save_extra: SaveExtra | None = None,
    wrap_env: Callable[[gym.Env], gym.Env] | None = None,
    train_info: dict[str, Any] | None = None,
    spec_source: str = "the data",
) -> tuple[dict[str, Any], ActorCritic]:
    """Train a ``bc`` actor with PPO, evaluate it and save ``OUT/policy.pt``.

    Args:
        algo: Name in the summary and checkpoint (``gail``, ``airl``, ``ppo``).
        cfg: The run's config.
        env_id: Gymnasium env to interact with (and to evaluate in, unwrapped).
        out: Output directory: ``policy.pt``, ``config.json`` and ``metrics.jsonl``.
        seed: Seeds torch (weights, sampling, shuffles) and the training envs (env i of
            the pool is first reset with ``seed * 1000 + 100_000 + i``, away from the
            collection and evaluation seeds).
        spec: The actor's spec (the expert data's, checked against the env's).
        stats: Normalisation statistics of the actor (``EpisodeDataset.stats()``).
        make_reward: Builds the rollout scorer; None trains on the envs' rewards.
        save_extra: Extra checkpoint entries, e.g. ``{"gail": {...}}``.
        wrap_env: Applied to every training env (a learned reward); evaluation is not
            wrapped.
        train_info: Extra entries of the checkpoint's ``train`` record (datasets, ...).
        spec_source: Where ``spec`` comes from, for the mismatch error (``dataset PATH``).

    Returns:
        ``(summary, actor_critic)``. The summary holds ``algo``, ``env``, ``seed``,
        ``env_steps``, ``wall_s`` (training), the final evaluation (``mean_return``,
        ``std_return``, ``success_rate``, ``episodes``, ``eval_seed``),
        ``best_eval_return``, ``first_steps_at_max_eval``, ``history`` (per evaluation:
        ``env_steps``, ``wall_s``, ``eval_return``, ``train_return`` and the scorer's logs)
        and ``checkpoint``.

    Raises:
        ConfigError: bad config values, image observations.
        DatasetError: a spec that does not match the env.
    """
    from il_core.checkpoint import save_checkpoint
    from il_core.data import DatasetError
    from il_core.evaluate import evaluate
    from il_core.policies import make_policy

    out = Path(out)
    t0 = time.perf_counter()
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    pool = PPOEnvPool(env_id, cfg.ppo.num_envs, seed * 1000 + 100_000, wrap=wrap_env)
    try:
        problems = spec.compatible_with(pool.spec)
        if problems:
            raise DatasetError(
                f"{spec_source} does not match env {env_id}: " + "; ".join(problems)
            )
        actor = make_policy("bc", cfg.policy, spec, stats)
        ac = ActorCritic(actor, cfg.ppo.value_hidden_dims, cfg.ppo.init_log_std)
        reward_fn, scorer_logs = make_reward(ac, gen) if make_reward is not None else (None, {})
        history: list[dict[str, Any]] = []
        recent_returns: list[float] = []
        next_eval = cfg.eval_every_steps
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.json").write_text(json.dumps(to_dict(cfg), indent=2))
        metrics = (out / "metrics.jsonl").open("w", encoding="utf-8")

        def on_iteration(it: int, steps: int, rollout: Rollout, logs: dict[str, float]) -> None:
            nonlocal next_eval
            recent_returns.extend(r for r, _ in rollout.episodes)
            del recent_returns[:-20]
            if cfg.eval_every_steps and steps >= next_eval:
                next_eval += cfg.eval_every_steps
                res = evaluate(actor, env_id, cfg.eval_episodes, cfg.eval_seed)
                row: dict[str, Any] = {
                    "env_steps": steps,
                    "wall_s": round(time.perf_counter() - t0, 2),
                    "eval_return": res["mean_return"],
                    # The training envs' own return (None where a wrapper hides it).
                    "train_return": (
                        float(np.mean(recent_returns))
                        if recent_returns and wrap_env is None
                        else None
                    ),
                    **{k: float(np.mean(v)) for k, v in scorer_logs.items() if v},
                    **{k: logs[k] for k in ("entropy", "approx_kl") if k in logs},
                }
                for v in scorer_logs.values():
                    v.clear()
                history.append(row)
                metrics.write(json.dumps(row) + "\n")
                metrics.flush()
                log.info("%s %s", algo, row)

        try:
            steps = ppo_run(
                ac,
                pool,
                cfg.ppo,
                cfg.total_env_steps,
                reward_fn=reward_fn,
                on_iteration=on_iteration,
                generator=gen,
            )
        finally:
            metrics.close()
    finally:
        pool.close()
    train_wall = time.perf_counter() - t0

    final: dict[str, Any] = {}
    if cfg.final_eval_episodes:
        final = evaluate(actor, env_id, cfg.final_eval_episodes, cfg.final_eval_seed)
    evals = [h["eval_return"] for h in history]
    best = max(evals) if evals else None
    summary: dict[str, Any] = {
        "algo": algo,
        "env": env_id,
        "seed": seed,
        "env_steps": steps,
        "wall_s": round(train_wall, 2),
        "mean_return": final.get("mean_return"),
        "std_return": final.get("std_return"),
        "success_rate": final.get("success_rate"),
        "episodes": final.get("episodes", 0),
        "eval_seed": cfg.final_eval_seed,
        "best_eval_return": best,
        "first_steps_at_max_eval": (
            next(h["env_steps"] for h in history if h["eval_return"] == best)
            if best is not None
            else None
        ),
        "history": history,
    }
    extra = save_extra(ac) if save_extra is not None else {}
    ckpt = save_checkpoint(
        out / "policy.pt",
        actor,
        extra={
            "train": {
                "algo": algo,
                "step": steps,
                "seed": seed,
                "env_id": env_id,
                "raw_config": to_dict(cfg),
                **(train_info or {}),
                "summary": {k: v for k, v in summary.items() if k != "history"},
            },
            **extra,
        },
    )
    summary["checkpoint"] = str(ckpt)
    return summary, ac


def actor_critic_state(ac: ActorCritic) -> dict[str, torch.Tensor]:
    """The critic and log std with the actor, as plain tensors (``weights_only`` loadable)."""
    return {k: v.detach().cpu() for k, v in ac.state_dict().items()}


def train_ppo(
    env_id: str,
    out: str | Path,
    config: PPOTrainConfig | dict[str, Any] | None = None,
    *,
    seed: int = 0,
    reward: str | Path | None = None,
    config_where: str = "config",
) -> dict[str, Any]:
    """PPO on an env's own reward, or on a learned reward file (the env's reward hidden).

    Args:
        env_id: Gymnasium id.
        out: Output directory (see :func:`run_ppo`).
        config: A :class:`PPOTrainConfig` or a dict of it.
        seed: See :func:`run_ppo`.
        reward: A learned reward (``reward.pt`` of ``il-core airl``): rollouts are scored
            with it (the values :class:`~il_core.reward.LearnedRewardWrapper` gives, one
            batched call per rollout), the training envs' own reward is hidden
            (:class:`~il_core.reward.HiddenRewardWrapper`), and the actor normalises its
            inputs with the reward's statistics (of the expert data it was learned on).
            None: the env's reward, with statistics of a short uniformly random rollout.
        config_where: Name of the config's source for error messages.

    Returns:
        The summary of :func:`run_ppo`, plus ``reward_file``. ``mean_return`` is always
        the env's own return (evaluation is never wrapped).
    """
    from il_core.reward import HiddenRewardWrapper, load_learned_reward

    if not isinstance(config, PPOTrainConfig):
        config = from_dict(PPOTrainConfig, config, config_where)
    wrap: Callable[[gym.Env], gym.Env] | None = None
    make_reward: MakeReward | None = None
    if reward is not None:
        learned = load_learned_reward(reward)
        spec, stats = learned.spec, learned.stats

        logs: dict[str, list[float]] = {"learned_reward_mean": []}

        def score(rollout: Rollout) -> torch.Tensor:
            # r of the state acted in (and its action, for an r(s, a)): what
            # LearnedRewardWrapper gives per step, here in one call per rollout.
            with torch.no_grad():
                acts = rollout.flat_actions() if learned.use_action else None
                r = learned(rollout.flat_obs(), acts).reshape(rollout.values.shape)
            logs["learned_reward_mean"].append(float(r.mean()))
            return r

        wrap = HiddenRewardWrapper  # the env's reward never reaches the learner

        def make_reward(ac: ActorCritic, gen: torch.Generator) -> tuple[RewardFn, dict]:
            return score, logs

    else:
        spec, stats = _random_rollout_stats(env_id, seed)
    summary, _ = run_ppo(
        "ppo",
        config,
        env_id,
        out,
        seed=seed,
        spec=spec,
        stats=stats,
        make_reward=make_reward,
        wrap_env=wrap,
        train_info={"reward_file": str(Path(reward).resolve()) if reward else None},
    )
    summary["reward_file"] = str(reward) if reward is not None else None
    return summary


def _random_rollout_stats(
    env_id: str, seed: int, steps: int = 2000
) -> tuple[DatasetSpec, dict[str, dict[str, np.ndarray]]]:
    """The env's spec and normalisation statistics of uniformly random actions."""
    from il_core.envs import GymAdapter, make_env

    env = make_env(env_id)
    try:
        adapter = GymAdapter(env)
        spec = adapter.spec
        env.action_space.seed(seed)
        raw, _ = env.reset(seed=seed + 999_999)
        obs: dict[str, list[np.ndarray]] = {k: [] for k in spec.vector_keys}
        actions = []
        for _ in range(steps):
            d = adapter.obs_to_dict(raw)
            for k in obs:
                obs[k].append(d[k])
            a = env.action_space.sample()
            actions.append(np.asarray(a))
            raw, _, term, trunc, _ = env.step(a)
            if term or trunc:
                raw, _ = env.reset()
    finally:
        env.close()

    def moments(x: np.ndarray) -> dict[str, np.ndarray]:
        return {
            "mean": x.mean(0).astype(np.float32),
            "std": x.std(0).astype(np.float32),
            "min": x.min(0).astype(np.float32),
            "max": x.max(0).astype(np.float32),
        }

    stats = {f"obs.{k}": moments(np.stack(v).astype(np.float64)) for k, v in obs.items()}
    acts = np.stack(actions)
    if spec.action.kind == "discrete":
        n = int(spec.action.num_classes or 0)
        stats["action"] = {"counts": np.bincount(acts.astype(np.int64), minlength=n)}
    else:
        stats["action"] = moments(acts.reshape(steps, -1).astype(np.float64))
    return spec, stats


# --------------------------------------------------------------------------- command line


def add_run_arguments(p: argparse.ArgumentParser, example: str) -> None:
    """The options every PPO-based command shares (``--out``, ``--config``, ``--set``, ...).

    Args:
        p: The subcommand's parser.
        example: A config path for the ``--config`` help, e.g. ``config/gail_cartpole.yaml``.
    """
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--config", default=None, help=f"YAML config, e.g. {example}")
    p.add_argument(
        "--set", action="append", metavar="KEY=VALUE", help="override, e.g. ppo.lr=3e-4"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--total-env-steps", type=int, default=None, help="interaction budget (overrides config)"
    )
    p.add_argument("--threads", type=int, default=1, help="torch threads (1 suits small MLPs)")
    p.add_argument(
        "--history", action="store_true", help="include the per-evaluation history in the JSON"
    )


def load_run_config(args: argparse.Namespace) -> tuple[dict[str, Any], str]:
    """Apply ``--threads``; return the YAML config with ``--set`` and ``--total-env-steps``.

    Returns:
        ``(raw config dict, where)`` for :func:`il_core.config.from_dict`.
    """
    from il_core.config import load_config

    if args.threads < 1:
        raise ConfigError(f"--threads must be >= 1, got {args.threads}")
    torch.set_num_threads(args.threads)
    raw, where = load_config(args.config, args.set)
    if args.total_env_steps is not None:
        raw["total_env_steps"] = args.total_env_steps
    return raw, where


def finish_summary(args: argparse.Namespace, summary: dict[str, Any]) -> dict[str, Any]:
    """Drop the per-evaluation history from the printed summary unless ``--history``."""
    if not args.history:
        summary.pop("history", None)
    return summary


def _cmd_ppo(args: argparse.Namespace) -> dict[str, Any]:
    raw, where = load_run_config(args)
    return finish_summary(
        args,
        train_ppo(args.env, args.out, raw, seed=args.seed, reward=args.reward, config_where=where),
    )


def add_cli(subparsers: argparse._SubParsersAction) -> None:
    """Add ``il-core ppo`` (discovered by :func:`il_core.algos.cli_modules`)."""
    p = subparsers.add_parser(
        "ppo",
        help="reinforcement learning with PPO, on the env's reward or a learned one",
        description="Train a 'bc' policy with PPO in a gymnasium env, on the env's own reward "
        "or (--reward) on a learned reward file from il-core airl, the env's reward hidden; "
        "writes OUT/policy.pt. The reported return is always the env's own.",
    )
    p.add_argument("--env", required=True, help="gymnasium env id")
    p.add_argument("--reward", default=None, help="learned reward file (reward.pt)")
    add_run_arguments(p, "config/ppo_cartpole.yaml")
    p.set_defaults(func=_cmd_ppo)
