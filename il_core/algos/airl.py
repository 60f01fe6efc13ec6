r"""Adversarial inverse reinforcement learning (AIRL, Fu, Luo & Levine 2018) on torch.

GAIL (:mod:`il_core.algos.gail`) learns a policy only. AIRL learns the reward as well: its
discriminator has the form

.. math::

    D(s, a, s') = \frac{\exp f(s, a, s')}{\exp f(s, a, s') + \pi(a \mid s)},
    \qquad f(s, a, s') = g(s) + \gamma\, h(s') - h(s)

so its logit is ``f - log pi(a|s)``. At the optimum ``f`` is the expert's advantage; the
split of ``f`` into a reward ``g`` and a potential-based shaping term ``gamma h(s') - h(s)``
(which changes no optimal policy) lets ``g`` recover the reward up to a constant, and a
*state-only* ``g(s)`` is disentangled from the dynamics: it is the part that still means
something when the robot's body changes. The learner is trained with PPO
(:mod:`il_core.algos.ppo`) on ``f - log pi``, the entropy-regularised reward at which the
expert is optimal. After training, ``g`` is calibrated (:meth:`LearnedReward.calibrate`:
the expert's states average +1, an untrained learner's -1) and saved as ``OUT/reward.pt``;
``il-core ppo --reward OUT/reward.pt`` optimises it again from scratch, in the same env or
one with other dynamics, and :class:`il_core.reward.LearnedRewardWrapper` makes it the
reward of any gymnasium env.

Implementation notes:

- Expert transitions ``(s, a, s')`` are consecutive steps of an episode; an episode's last
  step has no recorded successor and is left out. The expert datasets here end on time
  limits (truncation), so expert transitions never terminate.
- Learner transitions come from the PPO rollout with their collection log-probabilities
  (the policy has not been updated when the rollout is scored, so they are the current
  policy's); the expert's ``log pi(a|s)`` is evaluated under the current policy, as in the
  AIRL paper and the imitation library. A terminated transition has no ``h(s')``.
- ``gamma`` of the shaping term is PPO's discount.

Command line::

    il-core collect --env Pendulum-v1 --expert auto --episodes 10 --seed 0 --out runs/pd/data
    il-core airl --data runs/pd/data --config config/airl_pendulum.yaml --seed 0 \
        --out runs/pd/airl
    il-core ppo --env Pendulum-v1 --reward runs/pd/airl/reward.pt \
        --config config/ppo_pendulum.yaml --seed 0 --out runs/pd/ppo_on_airl

Shapes: B samples, D_key observation size, A continuous action dimension.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from il_core.algos.gail import _dataset_env, gail_discriminator_loss
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
from il_core.policies.encoders import mlp
from il_core.reward import LearnedReward, LearnedRewardError, save_learned_reward
from il_core.spec import DatasetSpec

log = logging.getLogger(__name__)

__all__ = [
    "AIRLConfig",
    "AIRLDiscriminator",
    "AIRLRewardConfig",
    "add_cli",
    "expert_transitions",
    "train_airl",
]


@dataclass
class AIRLRewardConfig:
    """AIRL's reward and shaping networks and how they are trained.

    Attributes:
        hidden_dims: Hidden sizes of the reward ``g``.
        shaping_hidden_dims: Hidden sizes of the potential ``h``.
        state_only: ``g(s)`` (disentangled from the dynamics: the one to transfer) rather
            than ``g(s, a)``.
        lr: Adam learning rate of ``g`` and ``h``.
        epochs: Passes over each learner rollout per iteration, each learner minibatch
            paired with an equally large random minibatch of expert transitions.
        batch_size: Learner (and expert) transitions per gradient step.
        replay_capacity: Learner transitions kept from all past rollouts (a uniform
            reservoir sample of every transition so far); each learner minibatch then
            takes half its transitions from it and half from the current rollout. 0: the
            current rollout only. Without it the discriminator sees only what the learner
            does now: once the learner is good, ``g`` forgets the states of a beginner,
            which are the states a fresh learner starts in when it re-optimises the reward.
    """

    hidden_dims: tuple[int, ...] = field(default=(64, 64), metadata={"help": "g(s) MLP sizes"})
    shaping_hidden_dims: tuple[int, ...] = field(
        default=(64, 64), metadata={"help": "h(s) MLP sizes"}
    )
    state_only: bool = field(default=True, metadata={"help": "g(s) rather than g(s, a)"})
    lr: float = field(default=3e-4, metadata={"help": "Adam learning rate"})
    epochs: int = field(default=1, metadata={"help": "passes over each rollout per iteration"})
    batch_size: int = field(default=256, metadata={"help": "pairs per side per gradient step"})
    replay_capacity: int = field(
        default=0, metadata={"help": "past learner transitions kept (reservoir; 0: none)"}
    )

    def __post_init__(self) -> None:
        if self.replay_capacity < 0:
            raise ConfigError(f"replay_capacity must be >= 0, got {self.replay_capacity}")
        for name in ("hidden_dims", "shaping_hidden_dims"):
            dims = getattr(self, name)
            if not dims or min(dims) < 1:
                raise ConfigError(f"{name} must be positive sizes, got {dims}")
        if self.lr <= 0:
            raise ConfigError(f"lr must be > 0, got {self.lr}")
        if self.epochs < 0:
            raise ConfigError(f"epochs must be >= 0, got {self.epochs}")
        if self.batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {self.batch_size}")


@dataclass
class AIRLConfig(DemoRunConfig):
    """Everything ``il-core airl`` reads from its YAML config (``config/airl_*.yaml``).

    The run's budget, actor, PPO, evaluation and demonstration settings of
    :class:`~il_core.algos.ppo_train.DemoRunConfig`, and:

    Attributes:
        reward: Reward and shaping networks.
    """

    reward: AIRLRewardConfig = field(
        default_factory=AIRLRewardConfig, metadata={"help": "reward network settings"}
    )


class AIRLDiscriminator(nn.Module):
    """``f(s, a, s') = g(s) + gamma (1 - done) h(s') - h(s)``; logit ``f - log pi(a|s)``.

    Args:
        spec: Dataset spec (vector observations).
        stats: ``EpisodeDataset.stats()`` of the expert data.
        config: Network sizes and ``state_only``.
        gamma: Discount of the shaping term (PPO's).
    """

    def __init__(
        self,
        spec: DatasetSpec,
        stats: dict[str, dict[str, np.ndarray]] | None,
        config: AIRLRewardConfig,
        gamma: float,
    ) -> None:
        super().__init__()
        self.reward = LearnedReward(
            spec, stats, config.hidden_dims, use_action=not config.state_only
        )
        obs_dim = sum(spec.observations[k].shape[0] for k in spec.vector_keys)
        self.shaping = mlp(obs_dim, tuple(config.shaping_hidden_dims), 1)
        self.gamma = float(gamma)

    def potential(self, obs: dict[str, Tensor]) -> Tensor:
        """``h(s)``, ``(B,)``, over the reward's normalised observations."""
        norm = self.reward.normalizer.normalize_obs(obs)
        return self.shaping(torch.cat([norm[k] for k in self.reward.keys], -1)).squeeze(-1)

    def f(
        self,
        obs: dict[str, Tensor],
        actions: Tensor,
        next_obs: dict[str, Tensor],
        terminated: Tensor,
    ) -> Tensor:
        """``f``, ``(B,)``, for transitions ``(s, a, s')`` (``terminated``: ``(B,)`` bool)."""
        not_done = 1.0 - terminated.to(torch.float32)
        g = self.reward.raw(obs, actions)
        return g + self.gamma * not_done * self.potential(next_obs) - self.potential(obs)

    def forward(
        self,
        obs: dict[str, Tensor],
        actions: Tensor,
        next_obs: dict[str, Tensor],
        terminated: Tensor,
        log_pi: Tensor,
    ) -> Tensor:
        """Logits ``log D - log(1 - D) = f - log pi(a|s)``, ``(B,)``."""
        return self.f(obs, actions, next_obs, terminated) - log_pi


def expert_transitions(
    data: str | Path | Sequence[str | Path], expert_episodes: int | None
) -> tuple[Any, dict[str, Tensor], Tensor, dict[str, Tensor], dict[str, dict[str, np.ndarray]]]:
    """Consecutive expert steps as transitions ``(s, a, s')``.

    Args:
        data: Expert dataset directory (or several with matching specs).
        expert_episodes: Use only the first this many episodes (None: all).

    Returns:
        ``(dataset, obs, actions, next_obs, stats)``: ``obs`` and ``next_obs`` are
        ``{key: (M, D_key)}``, ``actions`` ``(M,)`` classes or ``(M, A)``, with M the
        steps that have a successor in their episode; ``stats`` are over all the steps
        used (for normalisation).

    Raises:
        ConfigError: image observations, more episodes asked for than the data holds, or
            no episode with two steps.
    """
    from il_core.data import EpisodeDataset

    ds = EpisodeDataset(data)
    if ds.spec.image_keys:
        raise ConfigError(
            f"dataset {ds.roots[0]}: observation {ds.spec.image_keys[0]!r} is an image; "
            "AIRL here supports vector observations only"
        )
    if expert_episodes is not None and expert_episodes > ds.num_episodes:
        raise ConfigError(
            f"expert_episodes is {expert_episodes} but the data holds {ds.num_episodes} episodes"
        )
    eps = np.arange(expert_episodes if expert_episodes is not None else ds.num_episodes)
    idx = ds.step_indices(eps)
    last = ds.episode_starts[eps] + ds.episode_lengths[eps] - 1
    head = idx[~np.isin(idx, last)]  # steps with a successor in the same episode
    if head.size == 0:
        raise ConfigError(f"dataset {ds.roots[0]}: no episode has two steps")
    now, nxt = ds.window(head, history=1, horizon=1), ds.window(head + 1, history=1, horizon=1)
    obs = {k: torch.as_tensor(v[:, 0], dtype=torch.float32) for k, v in now[OBS].items()}
    next_obs = {k: torch.as_tensor(v[:, 0], dtype=torch.float32) for k, v in nxt[OBS].items()}
    actions = torch.as_tensor(now[ACTION][:, 0])
    return ds, obs, actions, next_obs, ds.stats(idx)


class _Reservoir:
    """A uniform sample of at most ``capacity`` of every transition added so far."""

    def __init__(self, capacity: int, generator: torch.Generator) -> None:
        self.capacity, self.gen, self.seen = capacity, generator, 0
        self.data: dict[str, Any] = {}

    def __len__(self) -> int:
        return min(self.seen, self.capacity)

    def add(self, batch: dict[str, Any]) -> None:
        """Offer ``batch`` (``{name: (B, ...) tensor or {key: (B, D)}}``) to the sample."""
        n = len(next(iter(_flat(batch).values())))
        if not self.data:
            self.data = _map(batch, lambda v: v.new_zeros((self.capacity, *v.shape[1:])))
        # Algorithm R: item i (0-based, overall) replaces slot j ~ U[0, i] if j < capacity.
        pos = torch.arange(self.seen, self.seen + n)
        slot = torch.where(
            pos < self.capacity,
            pos,
            (torch.rand(n, generator=self.gen) * (pos + 1)).long(),
        )
        keep = slot < self.capacity
        for name, arr in _flat(self.data).items():
            arr[slot[keep]] = _flat(batch)[name][keep]
        self.seen += n

    def sample(self, n: int) -> dict[str, Any]:
        """``n`` stored transitions, uniformly with replacement."""
        idx = torch.randint(0, len(self), (n,), generator=self.gen)
        return _map(self.data, lambda v: v[idx])


def _flat(batch: dict[str, Any]) -> dict[str, Tensor]:
    """``{"obs": {"state": t}, "done": t}`` -> ``{"obs/state": t, "done": t}`` (views)."""
    out: dict[str, Tensor] = {}
    for name, v in batch.items():
        if isinstance(v, dict):
            out.update({f"{name}/{k}": t for k, t in v.items()})
        else:
            out[name] = v
    return out


def _map(batch: dict[str, Any], fn: Any) -> dict[str, Any]:
    return {
        n: ({k: fn(t) for k, t in v.items()} if isinstance(v, dict) else fn(v))
        for n, v in batch.items()
    }


def train_airl(
    data: str | Path | Sequence[str | Path],
    out: str | Path,
    config: AIRLConfig | dict[str, Any] | None = None,
    *,
    seed: int = 0,
    env_id: str | None = None,
    config_where: str = "config",
) -> dict[str, Any]:
    """Learn a reward and a policy with AIRL; save ``OUT/reward.pt`` and ``OUT/policy.pt``.

    Args:
        data: Expert dataset directory (or several with matching specs).
        out: Output directory: ``reward.pt`` (the calibrated learned reward, see
            :mod:`il_core.reward`), ``policy.pt`` (a ``bc`` checkpoint of the adversarial
            learner; the critic and discriminator ride along under ``airl``),
            ``config.json`` and ``metrics.jsonl``.
        config: An :class:`AIRLConfig` or a dict of it (YAML contents).
        seed: Seeds torch and the training envs (see :func:`~il_core.algos.ppo_train.run_ppo`).
        env_id: Gymnasium env to interact with; default: the dataset's.
        config_where: Name of the config's source for error messages.

    Returns:
        The summary of :func:`~il_core.algos.ppo_train.run_ppo` (the adversarial learner's
        own returns) plus ``reward_file``, ``expert_episodes``, ``expert_transitions``,
        ``reward_expert_mean``/``reward_novice_mean`` (raw ``g`` before calibration),
        ``state_only``, ``reward_calibrated`` and ``reward_problem`` (why the reward could
        not be calibrated: it does not prefer the expert's states; None when it was).

    Raises:
        ConfigError: bad config values (naming the key), image observations, no env id.
        DatasetError: unreadable data, or data whose spec does not match the env.
    """
    if not isinstance(config, AIRLConfig):
        config = from_dict(AIRLConfig, config, config_where)
    cfg = config
    ds, e_obs, e_act, e_next, stats = expert_transitions(data, cfg.expert_episodes)
    env_id = _dataset_env(ds, env_id)
    n_expert = int(e_act.shape[0])
    e_done = torch.zeros(n_expert, dtype=torch.bool)
    disc_logs: dict[str, list[float]] = {}
    built: dict[str, Any] = {}

    def make_reward(ac: ActorCritic, gen: torch.Generator) -> tuple[RewardFn, dict]:
        disc = AIRLDiscriminator(ds.spec, stats, cfg.reward, cfg.ppo.gamma)
        opt = torch.optim.Adam(disc.parameters(), lr=cfg.reward.lr)
        built["disc"] = disc

        replay = (
            _Reservoir(cfg.reward.replay_capacity, gen) if cfg.reward.replay_capacity else None
        )

        def learner_logits(batch: dict[str, Any]) -> Tensor:
            # log pi under the current policy (for the current rollout, the collection
            # log-probabilities: the policy has not been updated since).
            with torch.no_grad():
                log_pi = ac.distribution(batch["obs"]).log_prob(batch["samples"])
            return disc(batch["obs"], batch["actions"], batch["next"], batch["done"], log_pi)

        def reward_fn(rollout: Rollout) -> Tensor:
            t, n = rollout.values.shape
            cur = {
                "obs": rollout.flat_obs(),
                "next": {k: v.reshape(t * n, -1) for k, v in rollout.next_obs.items()},
                "samples": rollout.samples.reshape(t * n, *rollout.samples.shape[2:]),
                "actions": rollout.flat_actions(),
                "done": rollout.terminated.reshape(-1),
            }
            if "novice" not in built:  # the untrained learner's states, for calibration
                built["novice"] = cur["obs"]
            if replay is not None:
                replay.add(cur)
            total = rollout.num_steps
            bs = min(cfg.reward.batch_size, total)
            for _ in range(cfg.reward.epochs):
                perm = torch.randperm(total, generator=gen)
                for lo in range(0, total - bs + 1, bs):
                    mb = _map(cur, lambda v, idx=perm[lo : lo + bs]: v[idx])
                    if replay is not None:  # half now, half from the past
                        half = bs // 2
                        old = replay.sample(bs - half)
                        mb = {
                            k: (
                                {j: torch.cat([v[j][:half], old[k][j]]) for j in v}
                                if isinstance(v, dict)
                                else torch.cat([v[:half], old[k]])
                            )
                            for k, v in mb.items()
                        }
                    ex = torch.randint(0, n_expert, (bs,), generator=gen)
                    ex_obs = {k: v[ex] for k, v in e_obs.items()}
                    with torch.no_grad():
                        ex_log_pi = ac.log_prob_of_actions(ex_obs, e_act[ex])
                    ex_next = {k: v[ex] for k, v in e_next.items()}
                    loss, logs = gail_discriminator_loss(
                        disc(ex_obs, e_act[ex], ex_next, e_done[ex], ex_log_pi),
                        learner_logits(mb),
                    )
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    for k, v in logs.items():
                        disc_logs.setdefault(k, []).append(v)
            with torch.no_grad():  # f - log pi: the entropy-regularised reward
                r = learner_logits(cur)
            return r.reshape(t, n)

        return reward_fn, disc_logs

    def save_extra(ac: ActorCritic) -> dict[str, Any]:
        disc = built["disc"]
        return {
            "airl": {
                "actor_critic": actor_critic_state(ac),
                "discriminator": {k: v.detach().cpu() for k, v in disc.state_dict().items()},
            }
        }

    summary, _ = run_ppo(
        "airl",
        cfg,
        env_id,
        out,
        seed=seed,
        spec=ds.spec,
        stats=stats,
        make_reward=make_reward,
        save_extra=save_extra,
        train_info={"datasets": [str(Path(r).resolve()) for r in ds.roots]},
        spec_source=f"dataset {ds.roots[0]}",
    )
    reward: LearnedReward = built["disc"].reward
    with torch.no_grad():
        expert_mean = float(reward.raw(e_obs).mean()) if cfg.reward.state_only else None
        novice_mean = float(reward.raw(built["novice"]).mean()) if cfg.reward.state_only else None
    # A reward that does not rank the expert above a beginner is reported, not raised:
    # the run's policy and reward are still written for inspection.
    problem = None
    if cfg.reward.state_only:
        try:
            reward.calibrate(e_obs, built["novice"])
        except LearnedRewardError as e:
            problem = str(e)
            log.warning("airl: %s; reward.pt is saved uncalibrated", problem)
    path = save_learned_reward(
        Path(out) / "reward.pt",
        reward,
        meta={
            "algo": "airl",
            "env_id": env_id,
            "seed": seed,
            "gamma": cfg.ppo.gamma,
            "env_steps": summary["env_steps"],
            "calibrated": cfg.reward.state_only and problem is None,
            "datasets": [str(Path(r).resolve()) for r in ds.roots],
        },
    )
    summary.update(
        reward_file=str(path),
        state_only=cfg.reward.state_only,
        reward_calibrated=cfg.reward.state_only and problem is None,
        reward_problem=problem,
        reward_expert_mean=expert_mean,
        reward_novice_mean=novice_mean,
        expert_episodes=cfg.expert_episodes or ds.num_episodes,
        expert_transitions=n_expert,
    )
    return summary


# --------------------------------------------------------------------------- command line


def _cmd_airl(args: argparse.Namespace) -> dict[str, Any]:
    raw, where = load_run_config(args)
    summary = train_airl(
        args.data, args.out, raw, seed=args.seed, env_id=args.env, config_where=where
    )
    return finish_summary(args, summary)


def add_cli(subparsers: argparse._SubParsersAction) -> None:
    """Add ``il-core airl`` (discovered by :func:`il_core.algos.cli_modules`)."""
    p = subparsers.add_parser(
        "airl",
        help="inverse RL (AIRL with PPO): learn the expert's reward and a policy",
        description="Learn a reward function from expert demonstrations with AIRL in a "
        "gymnasium env; writes OUT/reward.pt (for il-core ppo --reward, or "
        "il_core.reward.LearnedRewardWrapper) and OUT/policy.pt (the adversarial learner).",
    )
    p.add_argument("--data", required=True, action="append", help="expert dataset (repeatable)")
    p.add_argument("--env", default=None, help="gymnasium env id (default: the dataset's)")
    add_run_arguments(p, "config/airl_cartpole.yaml")
    p.set_defaults(func=_cmd_airl)
