"""DAgger and expert-gated DAgger (HG-DAgger) in simulation, with a scripted expert.

DAgger (Ross et al., 2011) fixes behaviour cloning's data: run the learner, have the expert
label every state the learner visits, aggregate the labels with all earlier ones and retrain.
HG-DAgger (Kelly et al., 2019) asks less of the expert: the learner drives, an intervention
rule decides when the expert takes over, and only the steps the expert drove are labelled.

The pieces, each usable on its own:

- **Schedules** (:class:`ConstantBetaSchedule`, :class:`LinearBetaSchedule`,
  :class:`ExponentialBetaSchedule`): round number -> beta, the probability that the expert's
  action is executed at a step (per-step mixing, as in the ``imitation`` library).
- :class:`DAggerCollector`: runs episodes through the shared rollout loop
  (:func:`il_core.rollout.run_episode`) and records them with the crash-safe
  :class:`~il_core.data.DatasetWriter`. Without a gate (DAgger) it asks the expert at every
  step and records the expert's label at every step; which action is executed is drawn from
  an injected :class:`numpy.random.Generator`. With a gate (HG-DAgger) the decision is
  :class:`il_core.intervention.InterventionGate`, the class the ROS DAgger node uses, and
  only intervention steps are recorded. Steps carry the per-step extras of the ROS
  recorder and DAgger node (``is_intervention``, ``has_expert_label``, ``executed_action``,
  ``obs_age``, ``receive_delay``), so simulated and robot rounds share one dataset layout.
- :func:`run_dagger`: round 0 records expert demonstrations (in ``demo_env``, by default the
  clean variant of the simulator), every later round runs the learner of the previous round
  in ``env``; after each round a policy is trained from scratch on all rounds so far
  (:func:`il_core.train.train`) and evaluated (:func:`il_core.evaluate.evaluate`).
- :func:`run_bc_baseline`: behaviour cloning on expert demonstrations only, given a number
  of expert labels (the comparison DAgger is measured against).

Command line (``il-core dagger``, one JSON line)::

    il-core dagger --config config/dagger_drift.yaml --out runs/dagger --seed 0
    il-core dagger --config config/dagger_drift.yaml --algorithm hg_dagger --out runs/hg
    il-core dagger ... --bc-baseline          # also BC with the same number of labels

Seeds: episode ``i`` of round ``r`` is reset with ``1_000_000 * (seed + 1) + 10_000 * r +
i`` (the BC baseline's demonstrations use round 0's seeds), evaluation episode ``i`` with
``eval_seed + i``, so training and evaluation never share an episode.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np

from il_core.config import ConfigError, from_dict, to_dict
from il_core.data import DatasetWriter
from il_core.envs import GymAdapter, make_env
from il_core.experts import load_expert
from il_core.intervention import GateConfig, InterventionGate
from il_core.recording import (
    EXTRA_AGE,
    EXTRA_DELAY,
    EXTRA_EXECUTED,
    EXTRA_HAS_LABEL,
    EXTRA_INTERVENTION,
    recording_extras,
)
from il_core.rollout import run_episode, step_timestamp
from il_core.spec import DatasetSpec, FeatureSpec

__all__ = [
    "EXTRA_AGE",
    "EXTRA_DELAY",
    "EXTRA_EXECUTED",
    "EXTRA_HAS_LABEL",
    "EXTRA_INTERVENTION",
    "BetaConfig",
    "BetaSchedule",
    "CollectedEpisode",
    "ConstantBetaSchedule",
    "DAggerCollector",
    "DAggerConfig",
    "ExponentialBetaSchedule",
    "Learner",
    "LinearBetaSchedule",
    "add_cli",
    "dagger_spec",
    "episode_seed",
    "make_beta_schedule",
    "run_bc_baseline",
    "run_dagger",
]

Algorithm = Literal["dagger", "hg_dagger"]


# -- beta schedules ----------------------------------------------------------------------


class BetaSchedule(Protocol):
    """Round number (0-based) -> beta in [0, 1], the probability of executing the expert."""

    def __call__(self, round_num: int) -> float:
        """Beta for round ``round_num``."""


@dataclass(frozen=True)
class ConstantBetaSchedule:
    """The same beta every round (``beta = 0``: the learner always drives).

    Attributes:
        beta: Probability in [0, 1] of executing the expert's action at a step.
    """

    beta: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.beta <= 1.0:
            raise ConfigError(f"beta must be in [0, 1], got {self.beta}")

    def __call__(self, round_num: int) -> float:
        """``beta`` whatever the round."""
        return self.beta


@dataclass(frozen=True)
class LinearBetaSchedule:
    """``beta = max(0, 1 - round / rampdown_rounds)``: 1 at round 0, 0 from ``rampdown_rounds``.

    Attributes:
        rampdown_rounds: Rounds over which beta falls from 1 to 0, >= 1.
    """

    rampdown_rounds: int = 4

    def __post_init__(self) -> None:
        if self.rampdown_rounds < 1:
            raise ConfigError(f"rampdown_rounds must be >= 1, got {self.rampdown_rounds}")

    def __call__(self, round_num: int) -> float:
        """Linear decay, clipped to [0, 1]."""
        return float(min(1.0, max(0.0, 1.0 - round_num / self.rampdown_rounds)))


@dataclass(frozen=True)
class ExponentialBetaSchedule:
    """``beta = decay ** round`` (Ross et al.'s ``p^(i-1)``): 1 at round 0.

    Attributes:
        decay: Factor per round, in [0, 1).
    """

    decay: float = 0.5

    def __post_init__(self) -> None:
        if not 0.0 <= self.decay < 1.0:
            raise ConfigError(f"decay must be in [0, 1), got {self.decay}")

    def __call__(self, round_num: int) -> float:
        """Geometric decay."""
        return float(self.decay**round_num)


@dataclass(frozen=True)
class BetaConfig:
    """The ``beta:`` section of a DAgger config: which schedule, and its parameter.

    Attributes:
        kind: ``constant``, ``linear`` or ``exponential``.
        beta: Beta of the ``constant`` schedule.
        rampdown_rounds: Rounds of the ``linear`` schedule.
        decay: Factor per round of the ``exponential`` schedule.
    """

    kind: Literal["constant", "linear", "exponential"] = field(
        default="exponential", metadata={"help": "constant | linear | exponential"}
    )
    beta: float = field(default=0.0, metadata={"help": "constant: beta in [0, 1]"})
    rampdown_rounds: int = field(default=4, metadata={"help": "linear: rounds to reach 0"})
    decay: float = field(default=0.5, metadata={"help": "exponential: factor per round"})

    def __post_init__(self) -> None:
        make_beta_schedule(self)  # Check the chosen schedule's parameter now.


def make_beta_schedule(cfg: BetaConfig) -> BetaSchedule:
    """Build the schedule ``cfg`` describes.

    Raises:
        ConfigError: naming the parameter that is out of range.
    """
    if cfg.kind == "constant":
        return ConstantBetaSchedule(cfg.beta)
    if cfg.kind == "linear":
        return LinearBetaSchedule(cfg.rampdown_rounds)
    if cfg.kind == "exponential":
        return ExponentialBetaSchedule(cfg.decay)
    raise ConfigError(f"kind must be constant, linear or exponential, got {cfg.kind!r}")


# -- the collector -----------------------------------------------------------------------


class Learner(Protocol):
    """What the collector needs of a learner; :class:`il_core.execution.PolicyExecutor` fits."""

    def reset(self) -> None:
        """Forget the history (episode start)."""

    def step(self, obs: dict[str, np.ndarray]) -> np.ndarray | None:
        """The learner's action for this tick's observation (None: no action yet)."""


def dagger_spec(spec: DatasetSpec) -> DatasetSpec:
    """``spec`` with the per-step extras of DAgger data (the ROS nodes' set).

    Args:
        spec: The env's spec (:attr:`il_core.envs.GymAdapter.spec`).

    Returns:
        The same spec plus extras ``obs_age`` and ``receive_delay`` ``(n_obs + 1,)``,
        ``is_intervention`` and ``has_expert_label`` ``(1,)``, ``executed_action``
        ``(action dim,)`` (``(1,)`` holding the class for discrete actions).
    """
    act_dim = spec.action.dim if spec.action.kind == "continuous" else 1
    sizes = recording_extras(len(spec.observations), int(act_dim))
    extras = {**spec.extras, **{k: FeatureSpec("vector", (d,)) for k, d in sizes.items()}}
    return replace(spec, extras=extras)


@dataclass(frozen=True)
class CollectedEpisode:
    """What one collected episode did.

    Attributes:
        seed: The env reset seed.
        length: Steps executed.
        success: The env's success for the episode (None if it defines none).
        ret: Undiscounted return.
        expert_steps: Steps where the expert's action was executed.
        labels: Steps recorded with an expert label (the expert's labelling effort).
        takeovers: Interventions started (HG-DAgger), else 0.
        saved: Whether the episode was written (an HG-DAgger episode without interventions
            has nothing to record).
    """

    seed: int
    length: int
    success: bool | None
    ret: float
    expert_steps: int
    labels: int
    takeovers: int
    saved: bool


class DAggerCollector:
    """Runs learner/expert episodes in a gymnasium env and records the expert's labels.

    DAgger (no ``gate``): at every step the expert labels the observation; the executed
    action is the expert's with probability ``beta`` (drawn from ``rng``, one draw per step
    when ``0 < beta < 1``), else the learner's; every step is recorded with the expert's
    label and ``is_intervention`` = whether the expert's action was executed.

    HG-DAgger (``gate``): the learner drives; each step the expert's and the learner's
    actions (and, optionally, a deadman rule's verdict) go to ``gate.update``, whose decision
    is executed. Only intervention steps are recorded (``is_intervention`` 1), as the ROS
    DAgger node does with ``record: interventions``; the recorded step keeps its simulated
    timestamp, so the gaps between interventions are visible.

    Args:
        env: The gymnasium env (from :func:`il_core.envs.make_env`).
        expert: Scripted expert on RAW observations (see :mod:`il_core.experts`).
        writer: Writer of a dataset whose spec is ``dagger_spec(GymAdapter(env).spec)``.
        rng: Draws the beta mixing (injected, so a run is reproducible and testable).
        gate: The intervention gate for HG-DAgger; None for DAgger.
        deadman: Optional HG-DAgger intervention rule on the il_core observation dict,
            passed to the gate as the deadman button (gate modes ``deadman``/``either``).
    """

    def __init__(
        self,
        env: Any,
        expert: Any,
        writer: DatasetWriter,
        *,
        rng: np.random.Generator,
        gate: InterventionGate | None = None,
        deadman: Callable[[dict[str, np.ndarray]], bool] | None = None,
    ) -> None:
        if not isinstance(rng, np.random.Generator):
            raise TypeError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
        self.env = env
        self.adapter = GymAdapter(env)
        self.expert = expert
        self.writer = writer
        self.rng = rng
        self.gate = gate
        self.deadman = deadman
        expected = dagger_spec(self.adapter.spec)
        missing = sorted(set(expected.extras) - set(writer.spec.extras))
        if missing:
            raise ValueError(
                f"the dataset at {writer.root} lacks the DAgger extras {missing}; "
                "create it with dagger_spec(env spec)"
            )
        self._n_streams = len(self.adapter.spec.observations) + 1

    def _expert_action(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        # The expert sees the recorded float32 observation, so the stored label is exactly
        # the expert's action on the stored observation (as in il_core.collect).
        return self.adapter.action_from_env(self.expert(self.adapter.obs_to_raw(obs)))

    def run_episode(
        self,
        learner: Learner | None,
        seed: int,
        beta: float = 0.0,
        *,
        metadata: dict[str, Any] | None = None,
        max_steps: int | None = None,
    ) -> CollectedEpisode:
        """Run and record one episode.

        Args:
            learner: The learner (reset here); None only for pure expert episodes
                (``beta == 1``, no gate).
            seed: ``env.reset`` seed; also passed to ``expert.reset``.
            beta: DAgger: probability of executing the expert's action at each step. Must
                be 0 with a gate (the gate decides).
            metadata: Extra episode metadata (round number, ...).
            max_steps: Optional cap on the episode length.

        Returns:
            What the episode did; see :class:`CollectedEpisode`.

        Raises:
            ValueError: ``beta`` outside [0, 1], or incompatible with the learner or gate.
        """
        if not 0.0 <= beta <= 1.0:
            raise ValueError(f"beta must be in [0, 1], got {beta}")
        if self.gate is not None and beta != 0.0:
            raise ValueError(f"beta must be 0 with an intervention gate (it decides), got {beta}")
        if learner is None and (self.gate is not None or beta < 1.0):
            raise ValueError("a learner is needed unless beta == 1 without a gate")
        if learner is not None:
            learner.reset()
        if self.gate is not None:
            self.gate.reset()
        self.expert.reset(seed=seed)
        rate = self.adapter.control_rate_hz
        zeros = np.zeros(self._n_streams, np.float32)
        # The decision taken in act() for the step that on_step() then records.
        pending: dict[str, Any] = {}
        counts = {"expert": 0, "labels": 0}

        def act(obs: dict[str, np.ndarray]) -> np.ndarray:
            label = self._expert_action(obs)
            policy = learner.step(obs) if learner is not None else None
            if self.gate is not None:
                deadman = bool(self.deadman(obs)) if self.deadman is not None else False
                decision = self.gate.update(policy, label, deadman)
                by_expert = decision.is_intervention
                executed = decision.action
                record = by_expert
            else:
                if beta >= 1.0:
                    by_expert = True
                elif beta <= 0.0:
                    by_expert = False
                else:
                    by_expert = bool(self.rng.random() < beta)
                executed = label if by_expert else policy
                record = True
            if executed is None:
                # No learner action yet (an asynchronous executor) and no intervention: the
                # expert's action stands in, as the ROS node's safe command would.
                executed, by_expert = label, True
            pending.update(label=label, by_expert=by_expert, record=record)
            return executed

        def on_step(obs: dict[str, np.ndarray], action: np.ndarray, t: int) -> None:
            if pending["by_expert"]:
                counts["expert"] += 1
            if not pending["record"]:
                return
            extras = {
                EXTRA_AGE: zeros,
                EXTRA_DELAY: zeros,
                EXTRA_INTERVENTION: np.array([float(pending["by_expert"])], np.float32),
                EXTRA_HAS_LABEL: np.ones(1, np.float32),
                EXTRA_EXECUTED: np.asarray(action, np.float32).reshape(-1),
            }
            self.writer.add_step(obs, pending["label"], step_timestamp(t, rate), extras)
            counts["labels"] += 1

        self.writer.start_episode(
            metadata={
                "seed": seed,
                "beta": beta,
                "gated": self.gate is not None,
                **(metadata or {}),
            }
        )
        try:
            result = run_episode(
                self.env, self.adapter, act, seed, on_step=on_step, max_steps=max_steps
            )
        except BaseException:
            # A half-recorded episode is not data: drop it, keep the completed ones.
            self.writer.discard_episode()
            raise
        takeovers = self.gate.takeovers if self.gate is not None else 0
        saved = counts["labels"] > 0
        if saved:
            summary: dict[str, Any] = {"return": result.ret, "length": result.length}
            summary |= {"expert_steps": counts["expert"], "labels": counts["labels"]}
            if self.gate is not None:
                summary["gate"] = self.gate.summary()
            self.writer.end_episode(success=result.success, metadata=summary)
        else:
            self.writer.discard_episode()
        return CollectedEpisode(
            seed=seed,
            length=result.length,
            success=result.success,
            ret=result.ret,
            expert_steps=counts["expert"],
            labels=counts["labels"],
            takeovers=takeovers,
            saved=saved,
        )


# -- the rounds ---------------------------------------------------------------------------


@dataclass(frozen=True)
class DAggerConfig:
    """The ``dagger:`` section of a DAgger config (``policy:`` and ``train:`` are training's).

    Attributes:
        algorithm: ``dagger`` (expert labels every visited step, beta mixing) or
            ``hg_dagger`` (the gate decides; only interventions are labelled).
        env: Gymnasium id where the learner runs and is evaluated.
        demo_env: Where round 0's expert demonstrations are recorded; None: ``env``.
        expert: Expert name, ``auto`` or ``module:callable`` (:func:`il_core.experts.load_expert`).
        rounds: Learner rounds after the demonstrations (policies trained: ``rounds + 1``).
        demo_episodes: Expert episodes of round 0.
        episodes_per_round: Learner episodes per later round.
        beta: The beta schedule (DAgger only; round 0 is always the expert).
        gate: The intervention rule (HG-DAgger only).
        eval_episodes: Evaluation episodes after each round.
        eval_seed: Evaluation episode ``i`` is reset with ``eval_seed + i``.
        max_steps: Optional cap on episode length (collection and evaluation).
    """

    algorithm: Algorithm = field(default="dagger", metadata={"help": "dagger | hg_dagger"})
    env: str = field(default="il_ros/DriftCorridorWindy-v0", metadata={"help": "learner env"})
    demo_env: str | None = field(
        default="il_ros/DriftCorridor-v0", metadata={"help": "round-0 demo env; null: env"}
    )
    expert: str = field(default="auto", metadata={"help": "expert name | auto | mod:callable"})
    rounds: int = field(default=4, metadata={"help": "learner rounds after the demos, >= 0"})
    demo_episodes: int = field(default=10, metadata={"help": "expert episodes, >= 1"})
    episodes_per_round: int = field(default=10, metadata={"help": "learner episodes, >= 1"})
    beta: BetaConfig = field(default_factory=BetaConfig, metadata={"help": "beta schedule"})
    gate: GateConfig = field(
        default_factory=lambda: GateConfig(mode="deviation"),
        metadata={"help": "HG-DAgger intervention gate"},
    )
    eval_episodes: int = field(default=100, metadata={"help": "evaluation episodes, >= 1"})
    eval_seed: int = field(default=1000, metadata={"help": "evaluation seed base"})
    max_steps: int | None = field(default=None, metadata={"help": "episode length cap"})

    def __post_init__(self) -> None:
        if self.algorithm not in ("dagger", "hg_dagger"):
            raise ConfigError(f"algorithm must be dagger or hg_dagger, got {self.algorithm!r}")
        for key in ("demo_episodes", "episodes_per_round", "eval_episodes"):
            if getattr(self, key) < 1:
                raise ConfigError(f"{key} must be >= 1, got {getattr(self, key)}")
        if self.rounds < 0:
            raise ConfigError(f"rounds must be >= 0, got {self.rounds}")
        if self.max_steps is not None and self.max_steps < 1:
            raise ConfigError(f"max_steps must be >= 1 or null, got {self.max_steps}")
        if self.algorithm == "hg_dagger" and self.gate.mode != "deviation":
            # A scripted expert has no deadman button; the Python API takes a deadman rule.
            raise ConfigError(
                f"gate.mode must be deviation for a scripted expert, got {self.gate.mode!r}"
            )


def episode_seed(seed: int, round_num: int, episode: int) -> int:
    """Reset seed of episode ``episode`` of round ``round_num`` for run seed ``seed``."""
    return 1_000_000 * (seed + 1) + 10_000 * round_num + episode


def _learner(policy_path: Path) -> Learner:
    from il_core.checkpoint import load_policy
    from il_core.execution import PolicyExecutor

    return PolicyExecutor(load_policy(policy_path))


def _train_and_eval(
    data: list[Path],
    out: Path,
    raw_train: dict[str, Any],
    cfg: DAggerConfig,
    seed: int,
    where: str,
) -> tuple[Path, dict[str, Any], float]:
    from il_core.evaluate import evaluate
    from il_core.train import train

    t0 = time.perf_counter()
    summary = train(data, out, raw_train, seed=seed, progress=False, config_where=where)
    train_s = time.perf_counter() - t0
    policy_path = Path(summary["checkpoint"])
    result = evaluate(
        policy_path, cfg.env, cfg.eval_episodes, cfg.eval_seed, max_steps=cfg.max_steps
    )
    return policy_path, result, train_s


def _split_raw(raw: dict[str, Any], where: str) -> tuple[DAggerConfig, dict[str, Any]]:
    unknown = sorted(set(raw) - {"dagger", "policy", "train", "augment"})
    if unknown:
        raise ConfigError(
            f"{where}: unknown top-level keys {unknown}; allowed: dagger, policy, train, augment"
        )
    cfg = from_dict(DAggerConfig, raw.get("dagger") or {}, f"{where}: dagger")
    return cfg, {k: v for k, v in raw.items() if k != "dagger"}


def run_dagger(
    raw_config: dict[str, Any],
    out: str | Path,
    *,
    seed: int = 0,
    config_where: str = "config",
    log: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Run DAgger or HG-DAgger rounds with a scripted expert; train and evaluate each round.

    Layout: ``out/round_NNN/data`` (the round's dataset) and ``out/round_NNN/train``
    (``policy.pt`` trained on rounds ``0..NNN``); ``out/summary.json`` (the return value).

    Args:
        raw_config: ``{dagger: {...}, policy: {...}, train: {...}}`` (YAML merged with
            ``--set``); see :class:`DAggerConfig` and :func:`il_core.train.train`.
        out: Output directory (must not hold an earlier run's rounds).
        seed: Seeds episode resets (:func:`episode_seed`), the beta draws and training.
        config_where: Name of the config source for error messages.
        log: Called with each round's figures as soon as they are known.

    Returns:
        ``algorithm``, ``env``, ``seed``, ``rounds`` (per round: ``round``, ``beta``,
        ``episodes``, ``labels``, ``labels_total``, ``expert_steps``, ``takeovers``,
        ``rollout_success``, ``success_rate``, ``mean_return``, ``train_s``),
        ``labels_total``, ``final_success_rate``, ``first_round_at`` (first round reaching
        each of 0.9 and 0.95, or None), ``wall_s``.

    Raises:
        ConfigError: a bad key or value, naming it.
        FileExistsError: ``out`` already holds rounds.
    """
    cfg, raw_train = _split_raw(raw_config, config_where)
    # Resolve the training sections now, so a typo fails before any episode is run.
    from il_core.train import resolve_config

    resolve_config(raw_train, where=config_where)
    out = Path(out)
    if (out / "round_000").exists():
        raise FileExistsError(f"{out} already holds DAgger rounds; choose another --out")
    schedule = make_beta_schedule(cfg.beta)
    rng = np.random.default_rng(seed)
    t_start = time.perf_counter()
    rounds: list[dict[str, Any]] = []
    data_dirs: list[Path] = []
    labels_total = 0
    policy_path: Path | None = None
    for r in range(cfg.rounds + 1):
        demo = r == 0
        env_id = (cfg.demo_env or cfg.env) if demo else cfg.env
        env = make_env(env_id)
        try:
            adapter = GymAdapter(env)
            spec = dagger_spec(adapter.spec)
            # Every round's dataset carries the learner env's id, so rounds recorded in the
            # clean demo env aggregate with the others (metadata may differ; shapes may not).
            spec = replace(spec, metadata={**spec.metadata, "env_id": cfg.env})
            gated = cfg.algorithm == "hg_dagger" and not demo
            gate = InterventionGate(cfg.gate) if gated else None
            beta = 1.0 if demo else (0.0 if gated else schedule(r))
            learner = None if demo else _learner(policy_path)  # type: ignore[arg-type]
            data_dir = out / f"round_{r:03d}" / "data"
            n_eps = cfg.demo_episodes if demo else cfg.episodes_per_round
            stats: list[CollectedEpisode] = []
            with DatasetWriter(data_dir, spec) as writer:
                collector = DAggerCollector(
                    env, load_expert(cfg.expert, env), writer, rng=rng, gate=gate
                )
                for i in range(n_eps):
                    stats.append(
                        collector.run_episode(
                            learner,
                            episode_seed(seed, r, i),
                            beta,
                            metadata={"round": r, "env_id": env_id},
                            max_steps=cfg.max_steps,
                        )
                    )
        finally:
            env.close()
        labels = sum(s.labels for s in stats)
        labels_total += labels
        if any(s.saved for s in stats):
            data_dirs.append(data_dir)
        policy_path, result, train_s = _train_and_eval(
            data_dirs, out / f"round_{r:03d}" / "train", raw_train, cfg, seed, config_where
        )
        succ = [s.success for s in stats if s.success is not None]
        row = {
            "round": r,
            "env": env_id,
            "beta": beta if not gated else None,
            "episodes": len(stats),
            "labels": labels,
            "labels_total": labels_total,
            "expert_steps": sum(s.expert_steps for s in stats),
            "steps": sum(s.length for s in stats),
            "takeovers": sum(s.takeovers for s in stats),
            "rollout_success": float(np.mean(succ)) if succ else None,
            "success_rate": result["success_rate"],
            "mean_return": result["mean_return"],
            "train_s": round(train_s, 2),
        }
        rounds.append(row)
        if log is not None:
            log(row)

    def first_at(bar: float) -> int | None:
        return next((x["round"] for x in rounds if (x["success_rate"] or 0.0) >= bar), None)

    summary = {
        "algorithm": cfg.algorithm,
        "env": cfg.env,
        "demo_env": cfg.demo_env or cfg.env,
        "seed": seed,
        "rounds": rounds,
        "labels_total": labels_total,
        "final_success_rate": rounds[-1]["success_rate"],
        "first_round_at": {"0.9": first_at(0.9), "0.95": first_at(0.95)},
        "eval_episodes": cfg.eval_episodes,
        "eval_seed": cfg.eval_seed,
        "config": {"dagger": to_dict(cfg), **raw_train},
        "wall_s": round(time.perf_counter() - t_start, 1),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    return summary


def run_bc_baseline(
    raw_config: dict[str, Any],
    out: str | Path,
    labels: int,
    *,
    seed: int = 0,
    config_where: str = "config",
) -> dict[str, Any]:
    """Behaviour cloning on expert demonstrations holding at least ``labels`` expert labels.

    Expert episodes are recorded in ``demo_env`` (seeds of round 0, so they extend the
    DAgger run's own demonstrations) until ``labels`` steps are stored, then one policy is
    trained with the same ``policy:``/``train:`` sections and evaluated in ``env`` exactly
    as the DAgger rounds are.

    Args:
        raw_config: The DAgger config (its ``dagger:`` section gives the envs, the expert
            and the evaluation).
        out: Output directory: ``out/data``, ``out/train``.
        labels: Number of expert labels (steps) to record, >= 1.
        seed: Run seed (episode seeds as :func:`episode_seed` round 0; training).
        config_where: Name of the config source for error messages.

    Returns:
        ``labels``, ``episodes``, ``success_rate``, ``mean_return``, ``train_s``.
    """
    if labels < 1:
        raise ConfigError(f"labels must be >= 1, got {labels}")
    cfg, raw_train = _split_raw(raw_config, config_where)
    out = Path(out)
    env_id = cfg.demo_env or cfg.env
    env = make_env(env_id)
    stored = episodes = 0
    try:
        spec = dagger_spec(GymAdapter(env).spec)
        spec = replace(spec, metadata={**spec.metadata, "env_id": cfg.env})
        with DatasetWriter(out / "data", spec) as writer:
            collector = DAggerCollector(
                env, load_expert(cfg.expert, env), writer, rng=np.random.default_rng(seed)
            )
            while stored < labels:
                ep = collector.run_episode(
                    None, episode_seed(seed, 0, episodes), 1.0, max_steps=cfg.max_steps
                )
                stored += ep.labels
                episodes += 1
    finally:
        env.close()
    _, result, train_s = _train_and_eval(
        [out / "data"], out / "train", raw_train, cfg, seed, config_where
    )
    return {
        "labels": stored,
        "episodes": episodes,
        "success_rate": result["success_rate"],
        "mean_return": result["mean_return"],
        "train_s": round(train_s, 2),
    }


# -- command line -------------------------------------------------------------------------


def _cmd_dagger(args: argparse.Namespace) -> dict[str, Any]:
    import sys

    import torch

    from il_core.config import load_config, merge

    if args.threads < 1:
        raise ConfigError(f"--threads must be >= 1, got {args.threads}")
    torch.set_num_threads(args.threads)
    raw, where = load_config(args.config, args.set)
    if args.algorithm is not None:
        raw = merge(raw, {"dagger": {"algorithm": args.algorithm}})

    def log(row: dict[str, Any]) -> None:
        print(json.dumps(row), file=sys.stderr, flush=True)

    summary = run_dagger(raw, args.out, seed=args.seed, config_where=where, log=log)
    if args.bc_baseline:
        summary["bc_baseline"] = run_bc_baseline(
            raw,
            Path(args.out) / "bc_baseline",
            summary["labels_total"],
            seed=args.seed,
            config_where=where,
        )
        (Path(args.out) / "summary.json").write_text(
            json.dumps(summary, indent=2, default=str) + "\n"
        )
    # The one JSON line stays short: per-round figures are in OUT/summary.json.
    return {
        k: summary[k] for k in ("algorithm", "env", "seed", "labels_total", "final_success_rate")
    } | {
        "success_per_round": [x["success_rate"] for x in summary["rounds"]],
        "labels_per_round": [x["labels_total"] for x in summary["rounds"]],
        "bc_baseline": summary.get("bc_baseline"),
        "summary": str(Path(args.out) / "summary.json"),
        "wall_s": summary["wall_s"],
    }


def add_cli(subparsers: argparse._SubParsersAction) -> None:
    """Add ``il-core dagger`` (discovered by :func:`il_core.algos.cli_modules`)."""
    p = subparsers.add_parser(
        "dagger",
        help="DAgger / HG-DAgger rounds in a simulator with a scripted expert",
        description="Round 0 records expert demonstrations; each later round runs the "
        "previous round's policy, labels with the expert (all steps, or only interventions "
        "for hg_dagger), aggregates, retrains and evaluates. Per-round figures go to stderr "
        "and OUT/summary.json.",
    )
    p.add_argument("--config", default=None, help="YAML with dagger:, policy: and train:")
    p.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="override a config value, e.g. dagger.rounds=3; repeatable",
    )
    p.add_argument(
        "--algorithm", choices=("dagger", "hg_dagger"), default=None, help="overrides config"
    )
    p.add_argument("--seed", type=int, default=0, help="episode seeds, beta draws, training")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument(
        "--bc-baseline",
        action="store_true",
        help="also train BC on expert demonstrations with the same number of labels",
    )
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    p.set_defaults(func=_cmd_dagger)
