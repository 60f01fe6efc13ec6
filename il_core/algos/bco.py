r"""Behavioural cloning from observation (BCO, Torabi et al. 2018), with BCO(alpha) iterations.

Demonstrations hold observations only (a dataset whose spec is ``state_only``, see
:data:`il_core.spec.STATE_ONLY`; :func:`strip_actions` makes one from a labelled dataset).
The learner:

1. explores the env itself for ``pre_demo_steps`` steps (random actions, each held for
   ``explore_hold`` steps) and records its own transitions ``(s, a, s')``;
2. fits an inverse dynamics model p(a | s, s') on them (:mod:`il_core.algos.bco_idm`);
3. labels each demonstrated transition ``(s_t, s_{t+1})`` with the model's most likely action
   and writes the labelled demonstrations as an ordinary dataset;
4. trains behaviour cloning on it with :func:`il_core.train.train` (any registered policy);
5. BCO(alpha): for ``iterations`` more rounds, runs the current policy (with probability
   ``policy_epsilon`` a random action instead) for ``alpha * pre_demo_steps`` steps, adds
   those transitions, and repeats 2-4. The policy's rollouts reach the states the
   demonstrations visit, where random exploration does not go (MountainCar's hill tops).

The environment interaction budget is ``pre_demo_steps * (1 + alpha * iterations)`` steps;
optional evaluation episodes are not part of it (reported separately).

Configuration: one YAML with a ``bco:`` section (:class:`BCOConfig`) and the ``policy:`` and
``train:`` sections of ``il-core train``. Command line::

    il-core bco strip --data runs/cp/demos --out runs/cp/demos_state_only
    il-core bco run --demos runs/cp/demos_state_only --env CartPole-v1 \
        --config config/bco_cartpole.yaml --seed 0 --out runs/cp/bco
"""

from __future__ import annotations

import argparse
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from il_core.algos.bco_idm import (
    IDMConfig,
    InverseDynamicsModel,
    Transitions,
    fit_inverse_dynamics,
    flatten_obs,
    state_dim,
)
from il_core.config import ConfigError, from_dict, load_config, to_dict
from il_core.spec import STATE_ONLY, ActionSpec, DatasetSpec

__all__ = [
    "BCOConfig",
    "EpsilonPolicyActor",
    "RandomActor",
    "bco",
    "label_demonstrations",
    "resolve_bco_config",
    "rollout_transitions",
    "strip_actions",
]


@dataclass
class BCOConfig:
    """The ``bco:`` section of a BCO config.

    Attributes:
        pre_demo_steps: Environment steps of random exploration before any policy exists
            (``|I^pre|`` in the paper).
        alpha: BCO(alpha): each further iteration runs the policy for
            ``alpha * pre_demo_steps`` steps.
        iterations: Number of policy-rollout iterations after the first cloning (0: plain
            BCO(0)).
        explore_hold: Random exploration repeats each random action for this many steps
            (1: a fresh uniform action every step). Held actions travel further from the
            start states, as a policy does.
        policy_epsilon: Probability of a uniform random action, instead of the policy's,
            in policy rollouts: without it the model never sees the other actions in the
            states the policy visits.
        idm: The inverse dynamics model (:class:`~il_core.algos.bco_idm.IDMConfig`).
        num_threads: torch threads for the inverse dynamics model (0 keeps torch's default).
    """

    pre_demo_steps: int = field(default=5000, metadata={"help": "random exploration steps"})
    alpha: float = field(default=0.0, metadata={"help": "policy steps per iteration / pre"})
    iterations: int = field(default=0, metadata={"help": "BCO(alpha) iterations after BCO(0)"})
    explore_hold: int = field(default=1, metadata={"help": "steps each random action is held"})
    policy_epsilon: float = field(default=0.1, metadata={"help": "random-action probability"})
    idm: IDMConfig = field(default_factory=IDMConfig, metadata={"help": "inverse dynamics"})
    num_threads: int = field(default=1, metadata={"help": "torch threads, 0 = default"})

    def __post_init__(self) -> None:
        checks = [
            (self.pre_demo_steps >= 2, f"pre_demo_steps must be >= 2, got {self.pre_demo_steps}"),
            (self.alpha >= 0, f"alpha must be >= 0, got {self.alpha}"),
            (self.iterations >= 0, f"iterations must be >= 0, got {self.iterations}"),
            (self.explore_hold >= 1, f"explore_hold must be >= 1, got {self.explore_hold}"),
            (0 <= self.policy_epsilon <= 1, "policy_epsilon must be in [0, 1]"),
            (self.num_threads >= 0, "num_threads must be >= 0"),
        ]
        for ok, msg in checks:
            if not ok:
                raise ConfigError(msg)
        if self.iterations and round(self.alpha * self.pre_demo_steps) < 1:
            raise ConfigError(
                f"iterations={self.iterations} needs alpha * pre_demo_steps >= 1 "
                f"(alpha={self.alpha}, pre_demo_steps={self.pre_demo_steps})"
            )

    @property
    def budget(self) -> int:
        """Environment steps used for learning: pre-demonstration plus policy rollouts."""
        return self.pre_demo_steps + self.iterations * self.steps_per_iteration

    @property
    def steps_per_iteration(self) -> int:
        """Policy-rollout steps of each BCO(alpha) iteration."""
        return int(round(self.alpha * self.pre_demo_steps))


def resolve_bco_config(
    raw: dict[str, Any], where: str = "config"
) -> tuple[BCOConfig, dict[str, Any]]:
    """Split a raw config into the validated ``bco:`` section and the training sections.

    Returns:
        ``(bco_config, {"policy": ..., "train": ...})``; the training sections are checked
        by :func:`il_core.train.train`.

    Raises:
        ConfigError: unknown top-level or ``bco`` keys, bad values (naming ``where``).
    """
    unknown = sorted(set(raw) - {"bco", "policy", "train"})
    if unknown:
        raise ConfigError(
            f"{where}: unknown top-level keys {unknown}; allowed: bco, policy, train"
        )
    cfg = from_dict(BCOConfig, raw.get("bco") or {}, f"{where}: bco")
    return cfg, {k: raw[k] for k in ("policy", "train") if k in raw}


# --------------------------------------------------------------------------- acting


class Actor(Protocol):
    """Chooses il_core actions in rollouts; ``reset`` starts an episode."""

    def reset(self) -> None: ...

    def __call__(self, obs: dict[str, np.ndarray]) -> np.ndarray: ...


def _random_action(action: ActionSpec, rng: np.random.Generator) -> np.ndarray:
    """A uniform random il_core action (class index ``()`` or ``(A,)`` in the bounds)."""
    if action.kind == "discrete":
        assert action.num_classes is not None  # ActionSpec requires it for discrete actions
        return np.asarray(rng.integers(int(action.num_classes)), dtype=np.int64)
    low = np.asarray(action.low if action.low is not None else [-np.inf] * action.dim)
    high = np.asarray(action.high if action.high is not None else [np.inf] * action.dim)
    if not (np.all(np.isfinite(low)) and np.all(np.isfinite(high))):
        raise ValueError(
            "random exploration needs finite action bounds (spec action low/high), "
            f"got low={action.low} high={action.high}"
        )
    return rng.uniform(low, high).astype(np.float32)


class RandomActor:
    """Uniform random actions, each held for ``hold`` steps (reset starts a new one).

    Args:
        action: The action spec.
        rng: Injected generator (the only source of randomness).
        hold: Steps each drawn action is repeated.
    """

    def __init__(self, action: ActionSpec, rng: np.random.Generator, hold: int = 1) -> None:
        if hold < 1:
            raise ValueError(f"hold must be >= 1, got {hold}")
        self.action, self.rng, self.hold = action, rng, hold
        self._current: np.ndarray | None = None
        self._left = 0

    def reset(self) -> None:
        """Draw a fresh action on the next call."""
        self._left = 0

    def __call__(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        """The held random action (``()`` class or ``(A,)``); ``obs`` is not used."""
        if self._left == 0 or self._current is None:
            self._current = _random_action(self.action, self.rng)
            self._left = self.hold
        self._left -= 1
        return self._current


class EpsilonPolicyActor:
    """A policy through :class:`~il_core.execution.PolicyExecutor`, with random actions.

    With probability ``epsilon`` a step takes a uniform random action instead of the
    policy's (the policy still sees every observation, so its history stays consistent).

    Args:
        policy: A trained policy (any registered type).
        rng: Injected generator.
        epsilon: Random-action probability, 0..1.
    """

    def __init__(self, policy: Any, rng: np.random.Generator, epsilon: float) -> None:
        from il_core.execution import PolicyExecutor

        self.executor = PolicyExecutor(policy)
        self.action = policy.spec.action
        self.keys = tuple(policy.spec.observations)
        self.rng, self.epsilon = rng, epsilon

    def reset(self) -> None:
        """Clear the policy's history and queued actions."""
        self.executor.reset()

    def __call__(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        """The policy's action for ``obs``, or with probability epsilon a random one."""
        action = self.executor.step({k: obs[k] for k in self.keys})
        # A synchronous executor (the default) plans the current tick, so it never starves.
        assert action is not None
        if self.rng.random() < self.epsilon:
            return _random_action(self.action, self.rng)
        return action


def rollout_transitions(
    env: Any, adapter: Any, actor: Actor, steps: int, seed: int
) -> tuple[Transitions, dict[str, Any]]:
    """Run ``actor`` in ``env`` for exactly ``steps`` transitions (the last episode may be cut).

    Episode ``i`` is reset with ``seed + i``. Unlike :func:`il_core.rollout.run_episode`,
    this records the observation after every step (the ``s'`` of the last transition too).

    Args:
        env: The gymnasium env.
        adapter: Its :class:`~il_core.envs.GymAdapter`.
        actor: Chooses actions (reset at each episode start).
        steps: Number of transitions, >= 1.
        seed: Base seed of the episodes.

    Returns:
        ``(transitions, info)``; info: ``episodes`` started and ``mean_return`` of the
        episodes that ended within the budget (None if none did).
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    spec: DatasetSpec = adapter.spec
    obs_l: list[np.ndarray] = []
    act_l: list[np.ndarray] = []
    next_l: list[np.ndarray] = []
    returns: list[float] = []
    episode = 0
    while len(obs_l) < steps:
        actor.reset()
        raw, _ = env.reset(seed=seed + episode)
        episode += 1
        obs = adapter.obs_to_dict(raw)
        ret = 0.0
        while len(obs_l) < steps:
            action = spec.check_action(actor(obs), where="rollout action")
            raw, reward, terminated, truncated, _ = env.step(adapter.action_to_env(action))
            nxt = adapter.obs_to_dict(raw)
            obs_l.append(flatten_obs(spec, obs))
            act_l.append(action)
            next_l.append(flatten_obs(spec, nxt))
            ret += float(reward)
            if terminated or truncated:
                returns.append(ret)
                break
            obs = nxt
    data = Transitions(np.stack(obs_l), np.stack(act_l), np.stack(next_l))
    return data, {
        "episodes": episode,
        "mean_return": float(np.mean(returns)) if returns else None,
    }


# --------------------------------------------------------------------------- datasets


def strip_actions(src: str | Path, out: str | Path) -> dict[str, Any]:
    """Copy a dataset's observations (no actions) into a new state-only dataset.

    Observations, timestamps, extras, success labels and episode metadata are kept; the spec
    gets ``metadata["state_only"] = True`` (:data:`il_core.spec.STATE_ONLY`).

    Args:
        src: A labelled dataset.
        out: New dataset directory (must not hold a dataset).

    Returns:
        ``{"episodes", "steps", "out"}``.

    Raises:
        DatasetError: ``src`` is unreadable or ``out`` already holds a dataset.
    """
    from il_core.data import DatasetError, DatasetWriter, EpisodeDataset
    from il_core.data.format import META

    out = Path(out)
    if (out / META).exists():
        raise DatasetError("already holds a dataset; choose a new directory", path=out)
    ds = EpisodeDataset(src, allow_state_only=True)
    spec = DatasetSpec(
        observations=ds.spec.observations,
        action=ds.spec.action,
        control_rate_hz=ds.spec.control_rate_hz,
        extras=ds.spec.extras,
        metadata={**ds.spec.metadata, STATE_ONLY: True},
    )
    steps = 0
    with DatasetWriter(out, spec, flush_every=1000, fsync=False) as writer:
        for e in range(ds.num_episodes):
            ep = ds.episode(e)
            writer.start_episode(metadata=dict(ep.info.metadata))
            for t in range(len(ep.timestamps)):
                writer.add_step(
                    {k: v[t] for k, v in ep.observations.items()},
                    None,
                    float(ep.timestamps[t]),
                    {k: v[t] for k, v in ep.extras.items()} or None,
                )
            writer.end_episode(success=ep.info.success)
            steps += len(ep.timestamps)
    return {"episodes": ds.num_episodes, "steps": steps, "out": str(out)}


def label_demonstrations(
    demos: Any,
    model: InverseDynamicsModel,
    out: str | Path,
    metadata: dict[str, Any] | None = None,
    reference: Any = None,
) -> dict[str, Any]:
    """Label every demonstrated transition with the model's action; write a labelled dataset.

    Step ``t`` of a demonstration episode of ``T`` observations gets the action the model
    infers from ``(s_t, s_{t+1})``; the last observation has no successor and is dropped,
    so each labelled episode has ``T - 1`` steps (episodes of one step are skipped).

    Args:
        demos: An :class:`~il_core.data.EpisodeDataset` of demonstrations (state-only or
            not: recorded actions are never read, only compared with the labels).
        model: The fitted inverse dynamics model.
        out: New dataset directory.
        metadata: Added to the labelled spec's metadata.
        reference: Diagnostics only: an :class:`~il_core.data.EpisodeDataset` of the same
            demonstrations with their true actions (same episodes, same lengths). Without
            it, the demonstrations' own actions serve when they have any.

    Returns:
        ``{"episodes", "steps", "out", "label_agreement"}``; ``label_agreement`` is the
        fraction of labels equal to the true actions (discrete actions, when known), else
        None.

    Raises:
        DatasetError: ``reference`` does not hold the same episodes.
    """
    from il_core.data import DatasetError, DatasetWriter

    if reference is None and not demos.state_only:
        reference = demos
    if reference is not None and (
        reference.num_episodes != demos.num_episodes
        or not np.array_equal(reference.episode_lengths, demos.episode_lengths)
    ):
        raise DatasetError(
            "the reference dataset does not hold the same episodes as the demonstrations "
            f"({reference.num_episodes} vs {demos.num_episodes} episodes, or other lengths)",
            path=reference.roots[0],
        )

    src = demos.spec
    meta = {k: v for k, v in src.metadata.items() if k != STATE_ONLY}
    meta.update({"actions_from": "bco inverse dynamics model", **(metadata or {})})
    spec = DatasetSpec(src.observations, src.action, src.control_rate_hz, src.extras, meta)
    agree: list[np.ndarray] = []
    episodes = steps = 0
    with DatasetWriter(out, spec, flush_every=1000, fsync=False) as writer:
        for e in range(demos.num_episodes):
            ep = demos.episode(e)
            length = len(ep.timestamps)
            if length < 2:
                continue
            flat = flatten_obs(src, ep.observations)
            labels = model.predict(flat[:-1], flat[1:])
            if reference is not None and src.action.kind == "discrete":
                agree.append(labels == reference.episode(e).actions[:-1])
            writer.start_episode(metadata=dict(ep.info.metadata))
            for t in range(length - 1):
                writer.add_step(
                    {k: v[t] for k, v in ep.observations.items()},
                    labels[t],
                    float(ep.timestamps[t]),
                    {k: v[t] for k, v in ep.extras.items()} or None,
                )
            writer.end_episode(success=ep.info.success)
            episodes += 1
            steps += length - 1
    return {
        "episodes": episodes,
        "steps": steps,
        "out": str(out),
        "label_agreement": float(np.concatenate(agree).mean()) if agree else None,
    }


# --------------------------------------------------------------------------- the loop


def bco(
    demos: Sequence[str | Path] | str | Path,
    out: str | Path,
    raw_config: dict[str, Any] | None = None,
    *,
    env_id: str | None = None,
    seed: int = 0,
    eval_episodes: int = 0,
    eval_seed: int = 1000,
    config_where: str = "config",
    log: Callable[[str], None] | None = None,
    reference: Sequence[str | Path] | str | Path | None = None,
) -> dict[str, Any]:
    """Run BCO(alpha) from state-only demonstrations; writes ``out/policy.pt``.

    Layout of ``out``: ``iter_<i>/labelled`` (the labelled demonstrations),
    ``iter_<i>/bc`` (``il-core train`` output), ``iter_<i>/idm.pt`` (the model's
    ``state_dict``), ``policy.pt`` (the last iteration's policy).

    Args:
        demos: Demonstration dataset directories (observations are used, actions never).
        out: Output directory.
        raw_config: ``{bco: ..., policy: ..., train: ...}``.
        env_id: Gymnasium id of the learner's env; default: the demonstrations' spec
            ``metadata["env_id"]``.
        seed: Seeds exploration, the models and training.
        eval_episodes: If > 0, evaluate each iteration's policy for this many episodes
            (not counted in the interaction budget).
        eval_seed: Base seed of evaluation episodes.
        config_where: Name of the config source for error messages.
        log: Called with one line per phase (progress); None is silent.
        reference: Diagnostics only, never used for learning: the same demonstrations with
            their true actions, to report how many labels the model got right.

    Returns:
        Summary: ``env``, ``demo_episodes``, ``demo_transitions``, ``env_steps`` (used for
        learning), ``budget``, ``iterations`` (per iteration: ``env_steps`` so far, inverse
        dynamics ``idm_val_error``, ``label_agreement``, ``bc_train_loss``, ``eval`` when
        evaluated), ``checkpoint``, ``wall_s``.

    Raises:
        ConfigError: bad config (naming the key) or no env id.
        DatasetError: unreadable demonstrations.
        SpecError: image observations, or demonstrations that do not match the env.
    """
    from il_core.checkpoint import load_policy
    from il_core.data import EpisodeDataset
    from il_core.envs import GymAdapter, make_env
    from il_core.evaluate import evaluate
    from il_core.spec import SpecError
    from il_core.train import train

    t_start = time.perf_counter()
    say = log or (lambda _msg: None)
    cfg, train_raw = resolve_bco_config(dict(raw_config or {}), config_where)
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    roots = [demos] if isinstance(demos, (str, Path)) else list(demos)
    demo_ds = EpisodeDataset(roots, allow_state_only=True)
    state_dim(demo_ds.spec)  # vector observations only, before any interaction
    ref_ds = None
    if reference is not None:
        ref_roots = [reference] if isinstance(reference, (str, Path)) else list(reference)
        ref_ds = EpisodeDataset(ref_roots)
    env_id = env_id or demo_ds.spec.metadata.get("env_id")
    if not env_id:
        raise ConfigError("no env id: pass --env (the demonstrations' spec names none)")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    env = make_env(env_id)
    try:
        adapter = GymAdapter(env)
        problems = demo_ds.spec.compatible_with(adapter.spec)
        if problems:
            raise SpecError(f"demonstrations do not match env {env_id}: " + "; ".join(problems))
        rng = np.random.default_rng(seed)
        env.action_space.seed(seed)
        say(f"bco: exploring {cfg.pre_demo_steps} steps at random")
        data, info = rollout_transitions(
            env,
            adapter,
            RandomActor(adapter.spec.action, rng, cfg.explore_hold),
            cfg.pre_demo_steps,
            seed,
        )
        env_steps = len(data)
        next_episode_seed = seed + info["episodes"]
        iterations: list[dict[str, Any]] = []
        checkpoint = None
        for it in range(cfg.iterations + 1):
            it_dir = out / f"iter_{it}"
            if it_dir.exists():
                shutil.rmtree(it_dir)  # a rerun into the same out replaces its iterations
            it_dir.mkdir(parents=True)
            model, idm_logs = fit_inverse_dynamics(
                data, adapter.spec.action, cfg.idm, seed + 7919 * it
            )
            torch.save(model.state_dict(), it_dir / "idm.pt")
            labelled = label_demonstrations(
                demo_ds,
                model,
                it_dir / "labelled",
                {"bco_iteration": it, "env_id": env_id},
                reference=ref_ds,
            )
            say(
                f"bco iter {it}: {env_steps} env steps, idm val error "
                f"{idm_logs['val_error']}, labelled {labelled['steps']} steps"
            )
            summary = train(
                [it_dir / "labelled"],
                it_dir / "bc",
                train_raw,
                seed=seed + it,
                progress=False,
                config_where=config_where,
            )
            checkpoint = summary["checkpoint"]
            record: dict[str, Any] = {
                "iteration": it,
                "env_steps": env_steps,
                "idm_train_loss": idm_logs["train_loss"],
                "idm_val_error": idm_logs["val_error"],
                "label_agreement": labelled["label_agreement"],
                "bc_train_loss": summary["train_loss"],
            }
            if eval_episodes > 0:
                result = evaluate(checkpoint, env_id, eval_episodes, eval_seed)
                record["eval"] = {
                    k: result[k] for k in ("mean_return", "success_rate", "episodes")
                }
                say(f"bco iter {it}: eval {record['eval']}")
            iterations.append(record)
            if it == cfg.iterations:
                break
            actor = EpsilonPolicyActor(load_policy(checkpoint), rng, cfg.policy_epsilon)
            more, info = rollout_transitions(
                env, adapter, actor, cfg.steps_per_iteration, next_episode_seed
            )
            next_episode_seed += info["episodes"]
            env_steps += len(more)
            data = Transitions.concatenate([data, more])
    finally:
        env.close()
    final = out / "policy.pt"
    shutil.copyfile(str(checkpoint), final)
    return {
        "env": env_id,
        "demo_episodes": demo_ds.num_episodes,
        "demo_transitions": int(labelled["steps"]),
        "env_steps": env_steps,
        "budget": cfg.budget,
        "iterations": iterations,
        "config": {"bco": to_dict(cfg), **train_raw},
        "checkpoint": str(final),
        "wall_s": time.perf_counter() - t_start,
    }


# --------------------------------------------------------------------------- command line


def _cmd_run(args: argparse.Namespace) -> dict[str, Any]:
    raw, where = load_config(args.config, args.set)
    if args.eval_episodes < 0:
        raise ConfigError(f"--eval-episodes must be >= 0, got {args.eval_episodes}")
    import sys

    return bco(
        args.demos,
        args.out,
        raw,
        env_id=args.env,
        seed=args.seed,
        eval_episodes=args.eval_episodes,
        eval_seed=args.eval_seed,
        config_where=where,
        log=lambda msg: print(msg, file=sys.stderr, flush=True),
        reference=args.reference,
    )


def _cmd_strip(args: argparse.Namespace) -> dict[str, Any]:
    return strip_actions(args.data, args.out)


def add_cli(subparsers: Any) -> None:
    """Add ``il-core bco run`` and ``il-core bco strip``."""
    p = subparsers.add_parser(
        "bco", help="behavioural cloning from observation (state-only demonstrations)"
    )
    sub = p.add_subparsers(dest="bco_command", required=True)
    r = sub.add_parser("run", help="BCO(alpha): explore, fit inverse dynamics, label, clone")
    r.add_argument(
        "--demos", action="append", required=True, help="demonstration dataset; repeatable"
    )
    r.add_argument("--env", default=None, help="gymnasium env id (default: the demos' env_id)")
    r.add_argument("--config", default=None, help="YAML with bco:, policy: and train:")
    r.add_argument(
        "--set", action="append", metavar="KEY=VALUE", help="override, e.g. bco.alpha=0.5"
    )
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--out", required=True, help="output directory")
    r.add_argument(
        "--eval-episodes", type=int, default=0, help="evaluate each iteration (not budgeted)"
    )
    r.add_argument("--eval-seed", type=int, default=1000, help="evaluation episode i: seed + i")
    r.add_argument(
        "--reference",
        action="append",
        default=None,
        help="diagnostics only: the demos with their true actions, to report label agreement",
    )
    r.set_defaults(func=_cmd_run)
    s = sub.add_parser("strip", help="copy a dataset without its actions (state-only)")
    s.add_argument("--data", required=True, help="labelled dataset")
    s.add_argument("--out", required=True, help="new state-only dataset directory")
    s.set_defaults(func=_cmd_strip)
