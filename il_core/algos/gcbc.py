r"""Goal-conditioned behaviour cloning with hindsight relabelling (GCSL / play-LMP style).

Play data reaches many states without demonstrating any task. Relabelling makes each
trajectory a set of goal-reaching examples: the action taken at step ``t`` is a reasonable
action for reaching any state the same trajectory visited later, so the goal input of a
training sample is replaced by the achieved state at a future step ``t + k`` of the same
episode, ``k`` drawn uniformly from ``1 .. horizon`` (or up to the episode end), afresh in
every batch. The policy is an ordinary registered policy (``bc`` by default) whose spec
includes the goal observation, so ``il-core eval`` and the ROS inference node run it unchanged.

Strategies (``gcbc.relabel``), the last two being the baselines without relabelling:

- ``future``: goal = achieved state at a uniformly drawn future step (hindsight).
- ``final``: goal = achieved state at the episode's last recorded step.
- ``none``: goal = the goal the episode recorded (which play data ignores).

Configuration: one YAML with ``gcbc:`` (:class:`GCBCConfig`), ``policy:`` (as for
``il-core train``) and ``train:`` (:class:`GCBCTrainConfig`). Command line::

    il-core gcbc play --env il_ros/PointReach-v0 --episodes 300 --seed 0 --out runs/reach/play
    il-core gcbc train --data runs/reach/play --config config/gcbc_point_reach.yaml \
        --seed 0 --out runs/reach/gcbc
    il-core eval --checkpoint runs/reach/gcbc/policy.pt --env il_ros/PointReach-v0 \
        --episodes 100 --seed 1000
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import yaml
from torch import nn

from il_core.config import (
    ConfigError,
    from_dict,
    load_config,
    load_yaml,
    merge,
    parse_overrides,
    to_dict,
)
from il_core.constants import OBS

__all__ = [
    "GCBCConfig",
    "GCBCTrainConfig",
    "anchor_indices",
    "relabel_goal_indices",
    "resolve_gcbc_config",
    "train_gcbc",
]

Relabel = Literal["future", "final", "none"]


@dataclass
class GCBCConfig:
    """The ``gcbc:`` section: which keys are goals and how goals are relabelled.

    Attributes:
        goal_key: Observation key the policy reads its goal from.
        achieved_key: Observation key whose later values are the relabelled goals (the
            achieved goal; same shape as ``goal_key``).
        relabel: ``future`` (hindsight), ``final`` or ``none`` (see the module docstring).
        horizon: ``future`` only: the largest offset ``k`` in steps (0: to the episode end).
    """

    goal_key: str = field(default="goal", metadata={"help": "goal observation key"})
    achieved_key: str = field(default="position", metadata={"help": "achieved-goal key"})
    relabel: Relabel = field(default="future", metadata={"help": "future | final | none"})
    horizon: int = field(default=0, metadata={"help": "largest future offset, 0 = to the end"})

    def __post_init__(self) -> None:
        if self.relabel not in ("future", "final", "none"):
            raise ConfigError(f"relabel must be future, final or none, got {self.relabel!r}")
        if self.horizon < 0:
            raise ConfigError(f"horizon must be >= 0, got {self.horizon}")


@dataclass
class GCBCTrainConfig:
    """The ``train:`` section of goal-conditioned cloning.

    Attributes:
        steps: Optimiser steps.
        batch_size: Samples per step (anchors drawn with replacement).
        lr: AdamW learning rate.
        weight_decay: AdamW weight decay.
        grad_clip: Gradient-norm clip (0 disables).
        num_threads: torch threads (0 keeps torch's default).
    """

    steps: int = field(default=5000, metadata={"help": "optimiser steps"})
    batch_size: int = field(default=256, metadata={"help": "samples per step"})
    lr: float = field(default=1e-3, metadata={"help": "learning rate"})
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay"})
    grad_clip: float = field(default=10.0, metadata={"help": "grad-norm clip, 0 disables"})
    num_threads: int = field(default=1, metadata={"help": "torch threads, 0 = default"})

    def __post_init__(self) -> None:
        checks = [
            (self.steps >= 1, f"steps must be >= 1, got {self.steps}"),
            (self.batch_size >= 1, f"batch_size must be >= 1, got {self.batch_size}"),
            (self.lr > 0, f"lr must be > 0, got {self.lr}"),
            (self.weight_decay >= 0 and self.grad_clip >= 0, "weight_decay, grad_clip >= 0"),
            (self.num_threads >= 0, "num_threads must be >= 0"),
        ]
        for ok, msg in checks:
            if not ok:
                raise ConfigError(msg)


def resolve_gcbc_config(
    raw: dict[str, Any], where: str = "config"
) -> tuple[GCBCConfig, str, Any, GCBCTrainConfig]:
    """Validate ``{gcbc, policy, train}``.

    Returns:
        ``(gcbc_config, policy_name, policy_config, train_config)``.

    Raises:
        ConfigError: naming ``where`` and the key.
    """
    from il_core.policies import make_config

    unknown = sorted(set(raw) - {"gcbc", "policy", "train"})
    if unknown:
        raise ConfigError(
            f"{where}: unknown top-level keys {unknown}; allowed: gcbc, policy, train"
        )
    gcfg = from_dict(GCBCConfig, raw.get("gcbc") or {}, f"{where}: gcbc")
    pol = dict(raw.get("policy") or {})
    name = pol.pop("name", "bc")
    policy_cfg = make_config(name, pol, f"{where}: policy")
    tcfg = from_dict(GCBCTrainConfig, raw.get("train") or {}, f"{where}: train")
    return gcfg, name, policy_cfg, tcfg


def anchor_indices(
    starts: np.ndarray, lengths: np.ndarray, relabel: Relabel
) -> tuple[np.ndarray, np.ndarray]:
    """Global steps that can be training anchors, and the last step of each one's episode.

    With ``future``/``final`` relabelling an anchor needs a later step of its episode, so each
    episode's last step is left out (and one-step episodes entirely).

    Args:
        starts: ``(E,)`` first global step of each episode.
        lengths: ``(E,)`` steps per episode.
        relabel: The strategy.

    Returns:
        ``(anchors, episode_last)``, both ``(M,)`` int64: anchor global indices and the
        global index of the last step of the anchor's episode.

    Raises:
        ValueError: no usable anchor (every episode has a single step).
    """
    starts = np.asarray(starts, dtype=np.int64)
    lengths = np.asarray(lengths, dtype=np.int64)
    usable = lengths - (0 if relabel == "none" else 1)
    usable = np.maximum(usable, 0)
    first = np.repeat(starts, usable)
    within = np.arange(int(usable.sum()), dtype=np.int64) - np.repeat(
        np.cumsum(usable) - usable, usable
    )
    last = np.repeat(starts + lengths - 1, usable)
    if first.size == 0:
        raise ValueError(f"no training anchors for relabel={relabel!r}: episodes are too short")
    return first + within, last


def relabel_goal_indices(
    anchors: np.ndarray,
    episode_last: np.ndarray,
    relabel: Relabel,
    horizon: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """Global step indices whose achieved state becomes each anchor's goal.

    Args:
        anchors: ``(B,)`` anchor global indices (from :func:`anchor_indices`).
        episode_last: ``(B,)`` last global index of each anchor's episode.
        relabel: ``future`` draws uniformly from ``anchor + 1 .. min(last, anchor +
            horizon)`` (``horizon`` 0: up to ``last``); ``final`` takes ``last``.
        horizon: See above.
        rng: Injected generator.

    Returns:
        ``(B,)`` int64 goal indices, always in the anchor's own episode and after it.

    Raises:
        ValueError: ``relabel == "none"`` (nothing to relabel) or an anchor at its
            episode's last step.
    """
    anchors = np.asarray(anchors, dtype=np.int64)
    episode_last = np.asarray(episode_last, dtype=np.int64)
    if relabel == "none":
        raise ValueError("relabel='none' keeps the recorded goals; there is nothing to relabel")
    if np.any(anchors >= episode_last):
        raise ValueError("an anchor at its episode's last step has no future state")
    if relabel == "final":
        return episode_last.copy()
    hi = episode_last if horizon == 0 else np.minimum(episode_last, anchors + horizon)
    # integers(low, high) with array bounds: one uniform draw per anchor in [a + 1, hi].
    return rng.integers(anchors + 1, hi + 1).astype(np.int64)


def train_gcbc(
    data: Sequence[str | Path] | str | Path,
    out: str | Path,
    raw_config: dict[str, Any] | None = None,
    *,
    seed: int = 0,
    config_where: str = "config",
) -> dict[str, Any]:
    """Train a goal-conditioned policy on play data; writes ``out/policy.pt``.

    Args:
        data: Dataset directories (aggregated; they need actions).
        out: Output directory: ``policy.pt``, ``config.yaml``.
        raw_config: ``{gcbc: ..., policy: ..., train: ...}``.
        seed: Seeds the weights, anchors and relabelled goals.
        config_where: Name of the config source for error messages.

    Returns:
        Summary: ``relabel``, ``steps``, ``train_loss`` (mean of the last 100 steps),
        ``anchors``, ``samples_per_s``, ``checkpoint``.

    Raises:
        ConfigError: bad config, or goal/achieved keys missing from the data or of
            different shapes (naming the key).
        DatasetError: unreadable data (or data without actions).
    """
    from il_core.batch import to_torch
    from il_core.checkpoint import save_checkpoint
    from il_core.data import EpisodeDataset
    from il_core.policies import make_policy

    gcfg, name, policy_cfg, tcfg = resolve_gcbc_config(dict(raw_config or {}), config_where)
    if tcfg.num_threads:
        torch.set_num_threads(tcfg.num_threads)
    roots = [data] if isinstance(data, (str, Path)) else list(data)
    ds = EpisodeDataset([Path(r) for r in roots])
    spec = ds.spec
    for attr in ("goal_key", "achieved_key"):
        key = getattr(gcfg, attr)
        if key not in spec.vector_keys:
            raise ConfigError(
                f"{config_where}: gcbc.{attr}={key!r} is not a vector observation of the data "
                f"(it has {list(spec.observations)})"
            )
    g_shape = spec.observations[gcfg.goal_key].shape
    a_shape = spec.observations[gcfg.achieved_key].shape
    if g_shape != a_shape:
        raise ConfigError(
            f"{config_where}: gcbc.goal_key {gcfg.goal_key!r} has shape {g_shape} but "
            f"gcbc.achieved_key {gcfg.achieved_key!r} has {a_shape}"
        )
    anchors, last = anchor_indices(ds.episode_starts, ds.episode_lengths, gcfg.relabel)
    stats = ds.stats()
    if gcfg.relabel != "none":
        # Relabelled goals are achieved states: normalise them as those, not as the
        # recorded goals the policy will never be trained on.
        stats[f"obs.{gcfg.goal_key}"] = stats[f"obs.{gcfg.achieved_key}"]
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    policy = make_policy(name, policy_cfg, spec, stats)
    optim = torch.optim.AdamW(policy.parameters(), lr=tcfg.lr, weight_decay=tcfg.weight_decay)
    k, h = policy.n_obs_steps, policy.horizon
    device = torch.device("cpu")
    policy.train()
    recent: list[float] = []
    t0 = time.perf_counter()
    for _ in range(tcfg.steps):
        pick = rng.integers(len(anchors), size=tcfg.batch_size)
        window = ds.window(anchors[pick], k, h)
        if gcfg.relabel != "none":
            goal_idx = relabel_goal_indices(
                anchors[pick], last[pick], gcfg.relabel, gcfg.horizon, rng
            )
            goals = ds.window(goal_idx, 1, 1)[OBS][gcfg.achieved_key][:, 0]  # (B, G)
            # One goal for the whole observation history of a sample: (B, k, G).
            window[OBS][gcfg.goal_key] = np.repeat(goals[:, None], k, axis=1)
        loss, _ = policy(to_torch(window, device))
        optim.zero_grad(set_to_none=True)
        loss.backward()
        if tcfg.grad_clip > 0:
            nn.utils.clip_grad_norm_(policy.parameters(), tcfg.grad_clip)
        optim.step()
        policy.after_optimizer_step(len(recent) + 1)
        recent = (recent + [loss.item()])[-100:]
    elapsed = time.perf_counter() - t0
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    resolved = {
        "gcbc": to_dict(gcfg),
        "policy": {"name": name, **to_dict(policy_cfg)},
        "train": to_dict(tcfg),
    }
    (out / "config.yaml").write_text(yaml.safe_dump(resolved, sort_keys=False))
    summary = {
        "policy": name,
        "relabel": gcfg.relabel,
        "steps": tcfg.steps,
        "train_loss": float(np.mean(recent)),
        "anchors": int(len(anchors)),
        "samples_per_s": tcfg.steps * tcfg.batch_size / max(elapsed, 1e-9),
        "checkpoint": str(out / "policy.pt"),
    }
    extra = {
        "train": {
            "step": tcfg.steps,
            "seed": seed,
            "raw_config": resolved,
            "datasets": [str(Path(r).resolve()) for r in roots],
            "summary": summary,
        }
    }
    save_checkpoint(out / "policy.pt", policy, extra)
    return summary


# --------------------------------------------------------------------------- command line


def _cmd_play(args: argparse.Namespace) -> dict[str, Any]:
    from il_core.algos.gcbc_play import PlayConfig, collect_play

    raw = load_yaml(args.config).get("play") if args.config else None
    where = f"{args.config}: play" if args.config else "play"
    cfg = from_dict(PlayConfig, raw or {}, where)
    return collect_play(args.env, args.episodes, args.seed, args.out, cfg)


def _cmd_train(args: argparse.Namespace) -> dict[str, Any]:
    raw, where = load_config(args.config)
    raw.pop("play", None)  # one file may hold the play settings too
    raw = merge(raw, parse_overrides(args.set or []))
    return train_gcbc(args.data, args.out, raw, seed=args.seed, config_where=where)


def add_cli(subparsers: Any) -> None:
    """Add ``il-core gcbc play`` and ``il-core gcbc train``."""
    p = subparsers.add_parser(
        "gcbc", help="goal-conditioned behaviour cloning with hindsight relabelling"
    )
    sub = p.add_subparsers(dest="gcbc_command", required=True)
    pl = sub.add_parser("play", help="record noisy random-waypoint play data")
    pl.add_argument("--env", default="il_ros/PointReach-v0", help="point-robot env id")
    pl.add_argument("--episodes", type=int, required=True)
    pl.add_argument("--seed", type=int, default=0, help="episode i is reset with seed + i")
    pl.add_argument("--out", required=True, help="dataset directory")
    pl.add_argument("--config", default=None, help="YAML whose play: section sets PlayConfig")
    pl.set_defaults(func=_cmd_play)
    t = sub.add_parser("train", help="train a goal-conditioned policy; writes OUT/policy.pt")
    t.add_argument("--data", action="append", required=True, help="dataset; repeatable")
    t.add_argument("--config", default=None, help="YAML with gcbc:, policy: and train:")
    t.add_argument(
        "--set", action="append", metavar="KEY=VALUE", help="override, e.g. gcbc.relabel=final"
    )
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--out", required=True, help="output directory")
    t.set_defaults(func=_cmd_train)
