r"""Generative adversarial imitation learning (GAIL, Ho & Ermon 2016) on torch.

A discriminator ``D(s, a)`` learns to tell the expert's state-action pairs (from an il_core
dataset) from the learner's; the learner, trained with PPO (:mod:`il_core.algos.ppo`),
maximises a reward that is high where ``D`` takes its pairs for the expert's. At the fixed
point the learner's state-action distribution is one the discriminator cannot separate from
the expert's. Unlike behaviour cloning, the learner visits its own states during training,
so it is taught what to do where it drifts; unlike DAgger, no expert is asked anything after
the demonstrations were recorded. The price is environment interaction.

The actor is an il_core ``bc`` policy (one observation in, one action out), so the result is
an ordinary checkpoint: ``il-core eval --checkpoint OUT/policy.pt`` and the ROS inference
node run it (acting with the mode of its distribution: arg-max class, or Gaussian mean).

Reward forms (:func:`gail_reward`, ``discriminator.reward``), with ``D`` the probability
that a pair is the expert's and ``logit = log D - log(1 - D)``:

- ``gail``: ``-log(1 - D) = softplus(logit)``, the original paper's. Always positive, so it
  also rewards staying alive: in an env that ends episodes on failure (CartPole) this
  survival bias helps the learner whatever the discriminator says.
- ``logit``: ``log D - log(1 - D)`` (AIRL's form). Positive where the pair looks expert,
  negative where it does not, so it carries no built-in survival (or suicide) bias.

``gail`` is the default of :class:`DiscriminatorConfig`; ``config/gail_cartpole.yaml`` uses
``logit``, because on CartPole ``gail`` with an untrained discriminator already balances
the pole in 2 of 3 seeds (docs/benchmarks.md, "GAIL (issue 6)").

Command line::

    il-core collect --env CartPole-v1 --expert auto --episodes 10 --seed 0 --out runs/cp/data
    il-core gail --data runs/cp/data --config config/gail_cartpole.yaml --seed 0 \
        --out runs/cp/gail
    il-core eval --checkpoint runs/cp/gail/policy.pt --env CartPole-v1 --episodes 50

Shapes: B samples, D_key observation size, A continuous action dimension, C classes.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.distributions import Categorical

from il_core.algos.ppo import ActorCritic, RewardFn, Rollout
from il_core.algos.ppo_train import (
    DemoRunConfig,
    actor_critic_state,
    add_run_arguments,
    finish_summary,
    load_run_config,
    run_ppo,
)
from il_core.config import ConfigError, from_dict
from il_core.constants import ACTION, OBS
from il_core.normalize import Normalizer
from il_core.policies.encoders import mlp
from il_core.spec import DatasetSpec

__all__ = [
    "DiscriminatorConfig",
    "GAILConfig",
    "GAILDiscriminator",
    "add_cli",
    "gail_discriminator_loss",
    "gail_expert_agreement",
    "gail_reward",
    "train_gail",
]

log = logging.getLogger(__name__)

RewardKind = Literal["gail", "logit"]


@dataclass
class DiscriminatorConfig:
    """The discriminator ``D(s, a)`` and how it is trained.

    Attributes:
        hidden_dims: Hidden sizes of its MLP over normalised observations and the action
            (one-hot classes, or the normalised continuous action).
        lr: Adam learning rate.
        epochs: Passes over each learner rollout per iteration, each learner minibatch
            paired with an equally large random minibatch of expert pairs.
        batch_size: Learner (and expert) pairs per gradient step.
        reward: ``gail`` (``-log(1 - D)``, survival-biased) or ``logit``
            (``log D - log(1 - D)``); see the module docstring.
    """

    hidden_dims: tuple[int, ...] = field(
        default=(64, 64), metadata={"help": "discriminator MLP hidden sizes"}
    )
    lr: float = field(default=3e-4, metadata={"help": "discriminator Adam learning rate"})
    epochs: int = field(default=1, metadata={"help": "passes over each rollout per iteration"})
    batch_size: int = field(default=256, metadata={"help": "pairs per side per gradient step"})
    reward: RewardKind = field(default="gail", metadata={"help": "reward form: gail | logit"})

    def __post_init__(self) -> None:
        if not self.hidden_dims or min(self.hidden_dims) < 1:
            raise ConfigError(f"hidden_dims must be positive sizes, got {self.hidden_dims}")
        if self.lr <= 0:
            raise ConfigError(f"lr must be > 0, got {self.lr}")
        if self.epochs < 0:
            raise ConfigError(f"epochs must be >= 0, got {self.epochs}")
        if self.batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.reward not in ("gail", "logit"):
            raise ConfigError(f"reward must be 'gail' or 'logit', got {self.reward!r}")


@dataclass
class GAILConfig(DemoRunConfig):
    """Everything ``il-core gail`` reads from its YAML config (``config/gail_*.yaml``).

    The run's budget, actor, PPO, evaluation and demonstration settings of
    :class:`~il_core.algos.ppo_train.DemoRunConfig`, and:

    Attributes:
        discriminator: Discriminator settings.
    """

    discriminator: DiscriminatorConfig = field(
        default_factory=DiscriminatorConfig, metadata={"help": "discriminator settings"}
    )


# --------------------------------------------------------------------------- discriminator


class GAILDiscriminator(nn.Module):
    """``D(s, a)`` as a logit: positive where a pair looks like the expert's.

    Args:
        spec: Dataset spec (vector observations; discrete or continuous action).
        stats: ``EpisodeDataset.stats()`` of the expert data (for normalisation), or None
            when weights are loaded afterwards.
        hidden_dims: MLP hidden sizes.

    Raises:
        ConfigError: for image observations.
    """

    def __init__(
        self,
        spec: DatasetSpec,
        stats: dict[str, dict[str, np.ndarray]] | None,
        hidden_dims: tuple[int, ...],
    ) -> None:
        super().__init__()
        if spec.image_keys:
            raise ConfigError(
                f"observation {spec.image_keys[0]!r} is an image; the GAIL discriminator "
                "supports vector observations only"
            )
        self.keys = spec.vector_keys
        self.discrete = spec.action.kind == "discrete"
        if self.discrete:
            assert spec.action.num_classes is not None  # ActionSpec requires it for discrete
            self.num_classes = int(spec.action.num_classes)
        else:
            self.num_classes = 0
        self.normalizer = Normalizer(spec, stats)
        obs_dim = sum(spec.observations[k].shape[0] for k in self.keys)
        act_dim = self.num_classes if self.discrete else int(spec.action.dim)
        self.net = mlp(obs_dim + act_dim, tuple(hidden_dims), 1)

    def forward(self, obs: dict[str, Tensor], actions: Tensor) -> Tensor:
        """Logits of "expert" for a batch of pairs.

        Args:
            obs: ``{key: (B, D_key)}`` raw observations.
            actions: ``(B,)`` int64 classes or ``(B, A)`` raw continuous actions.

        Returns:
            ``(B,)`` logits ``log D - log(1 - D)``.
        """
        norm = self.normalizer.normalize_obs(obs)
        if self.discrete:
            a = F.one_hot(actions.long().reshape(-1), self.num_classes).to(torch.float32)
        else:
            a = self.normalizer.normalize_action(actions.to(torch.float32))
        x = torch.cat([norm[k] for k in self.keys] + [a], dim=-1)
        return self.net(x).squeeze(-1)


def gail_discriminator_loss(
    expert_logits: Tensor, policy_logits: Tensor
) -> tuple[Tensor, dict[str, float]]:
    """Binary cross-entropy: expert pairs labelled 1, learner pairs 0.

    Args:
        expert_logits: ``(B_e,)`` discriminator logits on expert pairs.
        policy_logits: ``(B_p,)`` on learner pairs.

    Returns:
        The scalar loss (mean of both sides' means, so unequal batch sizes weigh the
        same) and logs ``disc_loss``, ``expert_acc`` and ``policy_acc`` (share of each side
        classified correctly).
    """
    loss_e = F.binary_cross_entropy_with_logits(expert_logits, torch.ones_like(expert_logits))
    loss_p = F.binary_cross_entropy_with_logits(policy_logits, torch.zeros_like(policy_logits))
    loss = 0.5 * (loss_e + loss_p)
    with torch.no_grad():
        logs = {
            "disc_loss": float(loss.detach()),
            "expert_acc": float((expert_logits > 0).float().mean()),
            "policy_acc": float((policy_logits < 0).float().mean()),
        }
    return loss, logs


def gail_reward(logits: Tensor, kind: RewardKind = "gail") -> Tensor:
    """The learner's reward from discriminator logits (same shape as ``logits``).

    Args:
        logits: Discriminator logits ``log D - log(1 - D)``, any shape.
        kind: ``gail``: ``-log(1 - D) = softplus(logits)`` (> 0); ``logit``: the logits.

    Returns:
        Rewards, increasing in ``logits`` in both forms.

    Raises:
        ValueError: unknown ``kind``.
    """
    if kind == "gail":
        return F.softplus(logits)
    if kind == "logit":
        return logits
    raise ValueError(f"reward kind must be 'gail' or 'logit', got {kind!r}")


@torch.no_grad()
def gail_expert_agreement(ac: ActorCritic, obs: dict[str, Tensor], actions: Tensor) -> float:
    """How closely the deterministic actor matches the expert on the expert's own states.

    Args:
        ac: The actor-critic.
        obs: ``{key: (B, D_key)}`` expert observations.
        actions: ``(B,)`` expert classes or ``(B, A)`` raw actions.

    Returns:
        Discrete: the share of states where the arg-max class is the expert's. Continuous:
        minus the mean absolute error of the mean action, in raw units (higher is better
        either way).
    """
    dist = ac.distribution(obs)
    if ac.discrete:
        assert isinstance(dist, Categorical)  # ActorCritic.distribution for discrete actions
        return float((dist.probs.argmax(-1) == actions).float().mean())
    mean = ac.env_action(dist.mean)
    return -float((mean - actions).abs().mean())


# --------------------------------------------------------------------------- training


def _expert_pairs(
    data: str | Path | Sequence[str | Path], expert_episodes: int | None
) -> tuple[Any, dict[str, Tensor], Tensor, dict[str, dict[str, np.ndarray]]]:
    """Load the dataset: (dataset, obs ``{key: (M, D)}``, actions, stats of those steps)."""
    from il_core.data import EpisodeDataset

    ds = EpisodeDataset(data)
    if ds.spec.image_keys:
        raise ConfigError(
            f"dataset {ds.roots[0]}: observation {ds.spec.image_keys[0]!r} is an image; "
            "GAIL here supports vector observations only"
        )
    n_eps = ds.num_episodes
    if expert_episodes is not None and expert_episodes > n_eps:
        raise ConfigError(
            f"expert_episodes is {expert_episodes} but the data holds {n_eps} episodes"
        )
    idx = ds.step_indices(None if expert_episodes is None else np.arange(expert_episodes))
    window = ds.window(idx, history=1, horizon=1)
    obs = {k: torch.as_tensor(v[:, 0], dtype=torch.float32) for k, v in window[OBS].items()}
    actions = torch.as_tensor(window[ACTION][:, 0])
    return ds, obs, actions, ds.stats(idx)


def _dataset_env(ds: Any, env_id: str | None) -> str:
    """``env_id``, or the one the collector stored in the dataset's spec metadata."""
    found = env_id or ds.spec.metadata.get("env_id")
    if not found:
        raise ConfigError(
            f"dataset {ds.roots[0]} does not name its env (no env_id in its spec metadata); "
            "pass --env"
        )
    return str(found)


def train_gail(
    data: str | Path | Sequence[str | Path],
    out: str | Path,
    config: GAILConfig | dict[str, Any] | None = None,
    *,
    seed: int = 0,
    env_id: str | None = None,
    config_where: str = "config",
) -> dict[str, Any]:
    """Train a policy with GAIL from expert demonstrations and save ``OUT/policy.pt``.

    Args:
        data: Expert dataset directory (or several with matching specs).
        out: Output directory: ``policy.pt`` (a ``bc`` checkpoint that ``il-core eval``
            loads; the critic and discriminator weights ride along under ``gail``),
            ``config.json`` (resolved config) and ``metrics.jsonl`` (one line per
            evaluation).
        config: A :class:`GAILConfig` or a dict of it (YAML contents).
        seed: Seeds torch (weights, sampling, shuffles) and the training envs (env i of
            the pool is first reset with ``seed * 1000 + 100_000 + i``, away from the
            collection and evaluation seeds).
        env_id: Gymnasium env to interact with; default: the ``env_id`` the collector
            stored in the dataset's spec metadata.
        config_where: Name of the config's source for error messages.

    Returns:
        Summary: ``env``, ``env_steps``, ``wall_s``, final evaluation (``mean_return``,
        ``std_return``, ``success_rate``, ``episodes``, ``seed``), ``best_eval_return``,
        ``first_steps_at_max_eval`` (env steps of the first evaluation at the best
        return), ``expert_agreement``, ``expert_episodes``, ``expert_steps``,
        ``history`` (per evaluation: ``env_steps``, ``wall_s``, ``eval_return``,
        ``train_return``, discriminator accuracies), ``checkpoint``.

    Raises:
        ConfigError: bad config values (naming the key), image observations, no env id.
        DatasetError: unreadable data, or data whose spec does not match the env.
    """
    if not isinstance(config, GAILConfig):
        config = from_dict(GAILConfig, config, config_where)
    cfg = config
    ds, expert_obs, expert_actions, stats = _expert_pairs(data, cfg.expert_episodes)
    env_id = _dataset_env(ds, env_id)
    n_expert = int(expert_actions.shape[0])
    disc_logs: dict[str, list[float]] = {}
    discs: list[GAILDiscriminator] = []

    def make_reward(ac: ActorCritic, gen: torch.Generator) -> tuple[RewardFn, dict]:
        disc = GAILDiscriminator(ds.spec, stats, cfg.discriminator.hidden_dims)
        disc_opt = torch.optim.Adam(disc.parameters(), lr=cfg.discriminator.lr)
        discs.append(disc)

        def reward_fn(rollout: Rollout) -> Tensor:
            # Train D on this rollout first, then score it with the updated D (the order
            # of Ho & Ermon's algorithm 1 and the imitation library).
            obs, actions = rollout.flat_obs(), rollout.flat_actions()
            dcfg = cfg.discriminator
            total = rollout.num_steps
            bs = min(dcfg.batch_size, total)
            for _ in range(dcfg.epochs):
                perm = torch.randperm(total, generator=gen)
                for lo in range(0, total - bs + 1, bs):
                    mb = perm[lo : lo + bs]
                    ex = torch.randint(0, n_expert, (bs,), generator=gen)
                    loss, logs = gail_discriminator_loss(
                        disc({k: v[ex] for k, v in expert_obs.items()}, expert_actions[ex]),
                        disc({k: v[mb] for k, v in obs.items()}, actions[mb]),
                    )
                    disc_opt.zero_grad(set_to_none=True)
                    loss.backward()
                    disc_opt.step()
                    for k, v in logs.items():
                        disc_logs.setdefault(k, []).append(v)
            with torch.no_grad():
                r = gail_reward(disc(obs, actions), dcfg.reward)
            return r.reshape(rollout.values.shape)

        return reward_fn, disc_logs

    summary, ac = run_ppo(
        "gail",
        cfg,
        env_id,
        out,
        seed=seed,
        spec=ds.spec,
        stats=stats,
        make_reward=make_reward,
        # Plain tensors (loadable with weights_only=True): the critic and log std with the
        # actor, and the discriminator, for inspection or a later fine-tune.
        save_extra=lambda ac: {
            "gail": {
                "actor_critic": actor_critic_state(ac),
                "discriminator": {k: v.detach().cpu() for k, v in discs[0].state_dict().items()},
            }
        },
        train_info={"datasets": [str(Path(r).resolve()) for r in ds.roots]},
        spec_source=f"dataset {ds.roots[0]}",
    )
    summary.update(
        expert_agreement=gail_expert_agreement(ac, expert_obs, expert_actions),
        expert_episodes=cfg.expert_episodes or ds.num_episodes,
        expert_steps=n_expert,
        reward=cfg.discriminator.reward,
    )
    return summary


# --------------------------------------------------------------------------- command line


def _cmd_gail(args: argparse.Namespace) -> dict[str, Any]:
    raw, where = load_run_config(args)
    summary = train_gail(
        args.data, args.out, raw, seed=args.seed, env_id=args.env, config_where=where
    )
    return finish_summary(args, summary)


def add_cli(subparsers: argparse._SubParsersAction) -> None:
    """Add ``il-core gail`` (discovered by :func:`il_core.algos.cli_modules`)."""
    p = subparsers.add_parser(
        "gail",
        help="adversarial imitation (GAIL with PPO) from expert demonstrations",
        description="Train a policy with GAIL in a gymnasium env from an expert dataset; "
        "writes OUT/policy.pt (a 'bc' checkpoint for il-core eval).",
    )
    p.add_argument("--data", required=True, action="append", help="expert dataset (repeatable)")
    p.add_argument("--env", default=None, help="gymnasium env id (default: the dataset's)")
    add_run_arguments(p, "config/gail_cartpole.yaml")
    p.set_defaults(func=_cmd_gail)
