"""Compact proximal policy optimisation (PPO) on torch, for il_core policies.

No RL framework: a few hundred lines that GAIL (:mod:`il_core.algos.gail`) drives with its
discriminator's reward, and that also run on an env's own reward (what the tests use to check
the learner on its own). The pieces, each testable alone:

- :func:`ppo_gae`: generalised advantage estimation that tells a termination (the value
  after it is 0) from a time-limit truncation (bootstrap from the value of the final
  observation) -- CartPole's 500-step limit is a truncation, and treating it as a death
  would teach the critic that surviving ends badly.
- :func:`ppo_policy_loss` (the clipped surrogate) and :func:`ppo_value_loss`.
- :class:`ActorCritic`: the actor *is* an il_core :class:`~il_core.policies.Policy` (``bc``,
  one observation, one action), so a trained actor is saved with
  :func:`il_core.checkpoint.save_checkpoint` and runs in ``il-core eval`` and on the ROS
  inference node unchanged. Discrete actions: a categorical over the BC head's logits, and
  the checkpoint acts by arg-max. Continuous actions: a diagonal Gaussian around the BC
  head's (normalised) output with a learned, state-independent log standard deviation;
  the checkpoint acts with the mean.
- :class:`PPOEnvPool`: N gymnasium envs stepped in lock-step with their own reset, so the
  final observation of a truncated episode is kept for bootstrapping.
- :func:`ppo_collect` and :class:`PPOLearner` (one update over a rollout).

Shapes: T rollout steps per env, N envs, B = T * N samples, D_key observation size,
A action dimension. Observations are dicts ``{key: (..., D_key)}`` of vector features only.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, cast

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor, nn
from torch.distributions import Categorical, Distribution, Independent, Normal

from il_core.config import ConfigError
from il_core.envs import GymAdapter, make_env
from il_core.normalize import Normalizer
from il_core.policies import Policy
from il_core.policies.encoders import ObservationEncoder, mlp
from il_core.spec import DatasetSpec

__all__ = [
    "ActorCritic",
    "PPOConfig",
    "PPOEnvPool",
    "PPOLearner",
    "Rollout",
    "ppo_collect",
    "ppo_gae",
    "ppo_policy_loss",
    "ppo_run",
    "ppo_value_loss",
    "RewardFn",
]

ObsDict = dict[str, Tensor]


@dataclass
class PPOConfig:
    """PPO hyper-parameters (defaults: RL Zoo's tuned CartPole-v1 PPO, 8 envs x 32 steps).

    Attributes:
        num_envs: Envs stepped in lock-step; a rollout holds ``num_envs * rollout_steps``
            samples.
        rollout_steps: Steps per env between updates (T).
        gamma: Discount factor.
        gae_lambda: GAE lambda (0: one-step TD advantages, 1: Monte-Carlo returns).
        clip_coef: Clipping range epsilon of the probability ratio.
        epochs: Passes over each rollout per update.
        minibatch_size: Samples per gradient step (<= ``num_envs * rollout_steps``).
        lr: Adam learning rate of actor and critic.
        anneal_lr: Decay the learning rate linearly to 0 over the training budget.
        ent_coef: Weight of the entropy bonus.
        vf_coef: Weight of the value loss.
        max_grad_norm: Gradient norm clip (0 disables).
        normalize_advantages: Standardise advantages per minibatch.
        value_hidden_dims: Hidden sizes of the value MLP (its own network, not shared).
        init_log_std: Continuous actions: initial log standard deviation of the Gaussian,
            in normalised action units.
        target_kl: Stop an update's epochs early once the approximate KL to the rollout
            policy exceeds this (None: never).
    """

    num_envs: int = field(default=8, metadata={"help": "parallel envs"})
    rollout_steps: int = field(default=32, metadata={"help": "steps per env per rollout"})
    gamma: float = field(default=0.98, metadata={"help": "discount factor, 0..1"})
    gae_lambda: float = field(default=0.8, metadata={"help": "GAE lambda, 0..1"})
    clip_coef: float = field(default=0.2, metadata={"help": "ratio clipping epsilon, > 0"})
    epochs: int = field(default=20, metadata={"help": "passes over each rollout"})
    minibatch_size: int = field(default=256, metadata={"help": "samples per gradient step"})
    lr: float = field(default=1e-3, metadata={"help": "Adam learning rate"})
    anneal_lr: bool = field(default=True, metadata={"help": "linear decay of lr to 0"})
    ent_coef: float = field(default=0.0, metadata={"help": "entropy bonus weight, >= 0"})
    vf_coef: float = field(default=0.5, metadata={"help": "value loss weight, >= 0"})
    max_grad_norm: float = field(default=0.5, metadata={"help": "gradient clip, 0 = off"})
    normalize_advantages: bool = field(
        default=True, metadata={"help": "standardise advantages per minibatch"}
    )
    value_hidden_dims: tuple[int, ...] = field(
        default=(64, 64), metadata={"help": "value MLP hidden sizes"}
    )
    init_log_std: float = field(
        default=-0.5, metadata={"help": "continuous: initial log std (normalised units)"}
    )
    target_kl: float | None = field(
        default=None, metadata={"help": "early-stop epochs above this approx. KL (null: off)"}
    )

    def __post_init__(self) -> None:
        for name in ("num_envs", "rollout_steps", "epochs", "minibatch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.minibatch_size > self.batch_size:
            raise ConfigError(
                f"minibatch_size ({self.minibatch_size}) must not exceed num_envs * "
                f"rollout_steps ({self.batch_size})"
            )
        for name in ("gamma", "gae_lambda"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if self.clip_coef <= 0:
            raise ConfigError(f"clip_coef must be > 0, got {self.clip_coef}")
        if self.lr <= 0:
            raise ConfigError(f"lr must be > 0, got {self.lr}")
        for name in ("ent_coef", "vf_coef", "max_grad_norm"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not self.value_hidden_dims or min(self.value_hidden_dims) < 1:
            raise ConfigError(
                f"value_hidden_dims must be positive sizes, got {self.value_hidden_dims}"
            )
        if self.target_kl is not None and self.target_kl <= 0:
            raise ConfigError(f"target_kl must be > 0 or null, got {self.target_kl}")

    @property
    def batch_size(self) -> int:
        """Samples per rollout, ``num_envs * rollout_steps``."""
        return self.num_envs * self.rollout_steps


# --------------------------------------------------------------------------- losses


def ppo_gae(
    rewards: Tensor,
    values: Tensor,
    next_values: Tensor,
    terminated: Tensor,
    ended: Tensor,
    gamma: float,
    lam: float,
) -> tuple[Tensor, Tensor]:
    """Generalised advantage estimates over a rollout of T steps of N envs.

    ``delta_t = r_t + gamma * (1 - terminated_t) * V(s'_t) - V(s_t)`` and
    ``A_t = delta_t + gamma * lam * (1 - ended_t) * A_{t+1}``, with ``A_T = 0``. Passing
    the value of the real next observation for every step (the final observation for an
    episode that ended) keeps truncation and termination apart: a truncated step still
    bootstraps from ``V(s'_t)`` but does not chain into the next episode's advantages.

    Args:
        rewards: ``(T, N)`` rewards of each step.
        values: ``(T, N)`` ``V(s_t)``.
        next_values: ``(T, N)`` ``V(s'_t)`` of the observation after step t (the episode's
            final observation where it ended there).
        terminated: ``(T, N)`` bool, the episode terminated at step t (no value after).
        ended: ``(T, N)`` bool, terminated or truncated at step t.
        gamma: Discount factor.
        lam: GAE lambda.

    Returns:
        ``(advantages, returns)``, both ``(T, N)``; ``returns = advantages + values`` (the
        value targets).

    Raises:
        ValueError: if the shapes differ.
    """
    shape = rewards.shape
    for name, arr in (
        ("values", values),
        ("next_values", next_values),
        ("terminated", terminated),
        ("ended", ended),
    ):
        if arr.shape != shape:
            raise ValueError(
                f"ppo_gae: {name} has shape {tuple(arr.shape)}, rewards {tuple(shape)}"
            )
    not_term = 1.0 - terminated.to(rewards.dtype)
    not_end = 1.0 - ended.to(rewards.dtype)
    deltas = rewards + gamma * not_term * next_values - values
    adv = torch.zeros_like(rewards)
    last = torch.zeros_like(rewards[0])
    for t in range(shape[0] - 1, -1, -1):
        last = deltas[t] + gamma * lam * not_end[t] * last
        adv[t] = last
    return adv, adv + values


def ppo_policy_loss(
    logp_new: Tensor, logp_old: Tensor, advantages: Tensor, clip_coef: float
) -> tuple[Tensor, dict[str, float]]:
    """PPO's clipped surrogate, as a loss to minimise.

    ``-mean(min(r * A, clip(r, 1 - eps, 1 + eps) * A))`` with ``r = exp(logp_new -
    logp_old)``: once the ratio has moved past ``1 +- eps`` in the direction the advantage
    rewards, the sample stops contributing gradient.

    Args:
        logp_new: ``(B,)`` log-probabilities of the taken actions under the current policy.
        logp_old: ``(B,)`` the same under the policy that collected them.
        advantages: ``(B,)`` advantage estimates.
        clip_coef: Epsilon.

    Returns:
        The scalar loss and logs ``clip_fraction`` (share of clipped ratios) and
        ``approx_kl`` (the ``(r - 1) - log r`` estimator of KL(old || new)).
    """
    log_ratio = logp_new - logp_old
    ratio = log_ratio.exp()
    unclipped = ratio * advantages
    clipped = ratio.clamp(1.0 - clip_coef, 1.0 + clip_coef) * advantages
    loss = -torch.minimum(unclipped, clipped).mean()
    with torch.no_grad():
        logs = {
            "clip_fraction": float(((ratio - 1.0).abs() > clip_coef).float().mean()),
            "approx_kl": float(((ratio - 1.0) - log_ratio).mean()),
        }
    return loss, logs


def ppo_value_loss(values: Tensor, returns: Tensor) -> Tensor:
    """``0.5 * mean((V(s) - R)^2)`` over ``(B,)`` predictions and targets."""
    return 0.5 * (values - returns).square().mean()


# --------------------------------------------------------------------------- networks


def _with_history(obs: ObsDict) -> ObsDict:
    """``{key: (B, D)}`` -> ``{key: (B, 1, D)}``: the policy contract takes a history axis."""
    return {k: v.unsqueeze(1) for k, v in obs.items()}


class _BCStyleActor(Protocol):
    """The parts of a ``bc``-style policy that :class:`ActorCritic` uses (typing only)."""

    normalizer: Normalizer
    encoder: ObservationEncoder
    head: nn.Module


class ActorCritic(nn.Module):
    """An il_core policy as PPO's actor, plus a value network (and a log std if continuous).

    The actor must map one observation to one action (``n_obs_steps == horizon == 1``) and
    expose ``normalizer``, ``encoder`` and ``head`` like the ``bc`` policy does; its head
    output (logits, or the normalised action mean) parametrises the action distribution, so
    the deterministic action of the saved checkpoint is the distribution's mode.

    Args:
        actor: The policy (``bc``), already built with normalisation statistics.
        value_hidden_dims: Hidden sizes of the value MLP, which reads the actor's
            normalised observations.
        init_log_std: Continuous actions: initial log std (normalised units).

    Raises:
        ConfigError: if the actor has history, chunks, dropout or image observations.
    """

    def __init__(
        self, actor: Policy, value_hidden_dims: tuple[int, ...], init_log_std: float = -0.5
    ) -> None:
        super().__init__()
        cfg = actor.config
        if cfg.n_obs_steps != 1 or cfg.horizon != 1:
            raise ConfigError(
                "policy.n_obs_steps and policy.horizon must be 1 for PPO/GAIL, got "
                f"{cfg.n_obs_steps} and {cfg.horizon}"
            )
        if getattr(cfg, "dropout", 0.0):
            raise ConfigError("policy.dropout must be 0 for PPO/GAIL (it breaks the ratios)")
        for name in ("normalizer", "encoder", "head"):
            if not hasattr(actor, name):
                raise ConfigError(
                    f"policy {actor.name!r} has no {name!r}; PPO/GAIL needs a 'bc'-style policy"
                )
        image_keys = actor.spec.image_keys
        if image_keys:
            raise ConfigError(
                f"observation {image_keys[0]!r} is an image; PPO/GAIL here supports vector "
                "observations only"
            )
        self.actor = actor
        self.spec: DatasetSpec = actor.spec
        self.discrete = self.spec.action.kind == "discrete"
        self.value_net = mlp(self._parts.encoder.out_dim, tuple(value_hidden_dims), 1)
        if not self.discrete:
            self.log_std = nn.Parameter(torch.full((self.spec.action.dim,), float(init_log_std)))
        self._init_weights()

    @property
    def _parts(self) -> _BCStyleActor:
        """The actor's normaliser, encoder and head (checked present in ``__init__``)."""
        # nn.Module types attributes it does not know as ``Tensor | Module``. __init__ checked
        # that the actor has these parts; the ``bc``-style policies build them with these types.
        return cast(_BCStyleActor, self.actor)

    def _init_weights(self) -> None:
        # PPO practice (Andrychowicz et al. 2021): orthogonal hidden layers, and a near-zero
        # policy output layer so that the first actions are close to uniform / zero-mean.
        for net, out_gain in ((self._parts.head, 0.01), (self.value_net, 1.0)):
            linears = [m for m in net.modules() if isinstance(m, nn.Linear)]
            for i, layer in enumerate(linears):
                last = i == len(linears) - 1
                nn.init.orthogonal_(layer.weight, out_gain if last else math.sqrt(2))
                nn.init.zeros_(layer.bias)

    def features(self, obs: ObsDict) -> Tensor:
        """Raw observations ``{key: (B, D_key)}`` -> actor features ``(B, F)``."""
        parts = self._parts
        return parts.encoder(parts.normalizer.normalize_obs(_with_history(obs)))

    def distribution(self, obs: ObsDict) -> Distribution:
        """Action distribution; discrete over classes, continuous over normalised actions.

        Args:
            obs: ``{key: (B, D_key)}`` raw observations.

        Returns:
            Categorical with batch shape ``(B,)`` or Independent Normal with event ``(A,)``.
        """
        out = self._parts.head(self.features(obs))
        if self.discrete:
            return Categorical(logits=out)
        return Independent(Normal(out, self.log_std.exp().expand_as(out)), 1)

    def log_prob_of_actions(self, obs: ObsDict, actions: Tensor) -> Tensor:
        """``log pi(a|s)`` of raw actions (e.g. the expert's), ``(B,)``.

        Args:
            obs: ``{key: (B, D_key)}`` raw observations.
            actions: ``(B,)`` classes or ``(B, A)`` raw continuous actions, normalised here
                to the space the distribution is over (what :meth:`act` samples in).
        """
        dist = self.distribution(obs)
        if self.discrete:
            return dist.log_prob(actions.long().reshape(-1))
        return dist.log_prob(self._parts.normalizer.normalize_action(actions.to(torch.float32)))

    def value(self, obs: ObsDict) -> Tensor:
        """``V(s)``, ``(B,)``, from raw observations ``{key: (B, D_key)}``."""
        return self.value_net(self.features(obs)).squeeze(-1)

    def env_action(self, sample: Tensor) -> Tensor:
        """A distribution sample -> raw action: class ``(B,)`` int64 or ``(B, A)`` in bounds."""
        if self.discrete:
            return sample
        raw = self._parts.normalizer.unnormalize_action(sample)
        a = self.spec.action
        if a.low is not None and a.high is not None:
            low = torch.as_tensor(a.low, dtype=raw.dtype)
            high = torch.as_tensor(a.high, dtype=raw.dtype)
            raw = torch.maximum(torch.minimum(raw, high), low)
        return raw

    @torch.no_grad()
    def act(self, obs: ObsDict) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Sample actions for a batch of observations.

        Returns:
            ``(sample, env_action, log_prob, value)``: the distribution sample (class
            ``(B,)`` or normalised ``(B, A)``; what log-probabilities are computed on),
            the raw action the env gets (:meth:`env_action`), ``(B,)`` and ``(B,)``.
        """
        dist = self.distribution(obs)
        sample = dist.sample()
        return sample, self.env_action(sample), dist.log_prob(sample), self.value(obs)


# --------------------------------------------------------------------------- envs


class PPOEnvPool:
    """N gymnasium envs stepped in lock-step, each reset as soon as its episode ends.

    Env ``i`` is first reset with ``seed + i``; later resets continue its own random stream,
    so a run is reproducible from ``seed``. Unlike gymnasium's vector envs (whose default
    autoreset delays the reset by a step), :meth:`step` returns the final observation of an
    ended episode beside the first observation of the next one.

    Args:
        env_id: Gymnasium id.
        num_envs: N.
        seed: Base seed.
        wrap: Applied to every env after it is made (e.g. a learned reward).

    Attributes:
        spec: The envs' :class:`DatasetSpec` (from :class:`GymAdapter`).
    """

    def __init__(
        self,
        env_id: str,
        num_envs: int,
        seed: int,
        wrap: Callable[[gym.Env], gym.Env] | None = None,
    ) -> None:
        if num_envs < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}")
        self.envs = [make_env(env_id) for _ in range(num_envs)]
        if wrap is not None:
            self.envs = [wrap(e) for e in self.envs]
        self.adapters = [GymAdapter(e) for e in self.envs]
        self.spec = self.adapters[0].spec
        self.keys = self.spec.vector_keys
        if self.spec.image_keys:
            self.close()
            raise ConfigError(
                f"{env_id}: observation {self.spec.image_keys[0]!r} is an image; PPO/GAIL "
                "here supports vector observations only"
            )
        self._seed = seed
        self._returns = np.zeros(num_envs)
        self._lengths = np.zeros(num_envs, dtype=np.int64)
        self.obs: dict[str, np.ndarray] = {}

    @property
    def num_envs(self) -> int:
        """N."""
        return len(self.envs)

    def _stack(self, dicts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
        return {k: np.stack([d[k] for d in dicts]) for k in self.keys}

    def reset(self) -> dict[str, np.ndarray]:
        """Reset every env with its seed; returns ``{key: (N, D_key)}`` float32."""
        obs = []
        for i, (env, ad) in enumerate(zip(self.envs, self.adapters, strict=True)):
            raw, _ = env.reset(seed=self._seed + i)
            obs.append(ad.obs_to_dict(raw))
        self._returns[:] = 0
        self._lengths[:] = 0
        self.obs = self._stack(obs)
        return self.obs

    def step(self, actions: np.ndarray) -> dict[str, Any]:
        """Step every env with its action; reset those whose episode ended.

        Args:
            actions: ``(N,)`` int classes or ``(N, A)`` raw continuous actions.

        Returns:
            ``obs`` (``{key: (N, D)}``, after any reset: what the next step acts on),
            ``next_obs`` (``{key: (N, D)}``, the observation the step led to: the final one
            where an episode ended), ``reward`` ``(N,)`` float32, ``terminated`` and
            ``truncated`` ``(N,)`` bool, and ``episodes``: ``[(return, length)]`` of the
            episodes that ended.
        """
        obs, next_obs, episodes = [], [], []
        n = self.num_envs
        reward = np.zeros(n, dtype=np.float32)
        terminated = np.zeros(n, dtype=bool)
        truncated = np.zeros(n, dtype=bool)
        for i, (env, ad) in enumerate(zip(self.envs, self.adapters, strict=True)):
            raw, r, term, trunc, _ = env.step(ad.action_to_env(actions[i]))
            reward[i], terminated[i], truncated[i] = r, term, trunc
            self._returns[i] += float(r)
            self._lengths[i] += 1
            o = ad.obs_to_dict(raw)
            next_obs.append(o)
            if term or trunc:
                episodes.append((float(self._returns[i]), int(self._lengths[i])))
                self._returns[i] = 0
                self._lengths[i] = 0
                raw, _ = env.reset()
                o = ad.obs_to_dict(raw)
            obs.append(o)
        self.obs = self._stack(obs)
        return {
            "obs": self.obs,
            "next_obs": self._stack(next_obs),
            "reward": reward,
            "terminated": terminated,
            "truncated": truncated,
            "episodes": episodes,
        }

    def close(self) -> None:
        """Close every env."""
        for env in self.envs:
            env.close()


# --------------------------------------------------------------------------- rollouts


@dataclass
class Rollout:
    """T steps of N envs, on-policy.

    Attributes:
        obs: ``{key: (T, N, D_key)}`` observations acted on.
        next_obs: ``{key: (T, N, D_key)}`` observations each step led to (final ones where
            an episode ended).
        samples: ``(T, N)`` classes or ``(T, N, A)`` normalised Gaussian samples.
        actions: ``(T, N)`` classes or ``(T, N, A)`` raw actions the envs executed.
        log_probs: ``(T, N)`` log-probabilities of ``samples`` when collected.
        values: ``(T, N)`` ``V(obs)`` when collected.
        env_rewards: ``(T, N)`` the envs' own rewards.
        terminated: ``(T, N)`` bool.
        ended: ``(T, N)`` bool, terminated or truncated.
        episodes: ``[(return, length)]`` of the episodes that ended (env reward).
    """

    obs: ObsDict
    next_obs: ObsDict
    samples: Tensor
    actions: Tensor
    log_probs: Tensor
    values: Tensor
    env_rewards: Tensor
    terminated: Tensor
    ended: Tensor
    episodes: list[tuple[float, int]]

    @property
    def num_steps(self) -> int:
        """Env steps in the rollout, ``T * N``."""
        return int(self.values.numel())

    def flat_obs(self) -> ObsDict:
        """``{key: (T * N, D_key)}``."""
        return {k: v.reshape(-1, v.shape[-1]) for k, v in self.obs.items()}

    def flat_actions(self) -> Tensor:
        """``(T * N,)`` classes or ``(T * N, A)`` raw actions."""
        t, n = self.values.shape
        return self.actions.reshape(t * n, *self.actions.shape[2:])


def ppo_collect(ac: ActorCritic, pool: PPOEnvPool, steps: int) -> Rollout:
    """Run ``steps`` lock-step steps of the stochastic actor in every env of ``pool``.

    Starts from ``pool.obs`` (call ``pool.reset()`` once before the first rollout).

    Returns:
        The :class:`Rollout`.
    """
    obs_l, next_l, samples, actions, logps, values = [], [], [], [], [], []
    rewards, terms, ends, episodes = [], [], [], []
    obs = pool.obs
    for _ in range(steps):
        obs_t = {k: torch.from_numpy(v) for k, v in obs.items()}
        sample, env_action, logp, value = ac.act(obs_t)
        out = pool.step(env_action.numpy())
        obs_l.append(obs_t)
        next_l.append({k: torch.from_numpy(v) for k, v in out["next_obs"].items()})
        samples.append(sample)
        actions.append(env_action)
        logps.append(logp)
        values.append(value)
        rewards.append(torch.from_numpy(out["reward"]))
        terms.append(torch.from_numpy(out["terminated"]))
        ends.append(torch.from_numpy(out["terminated"] | out["truncated"]))
        episodes += out["episodes"]
        obs = out["obs"]
    keys = list(obs_l[0])
    return Rollout(
        obs={k: torch.stack([o[k] for o in obs_l]) for k in keys},
        next_obs={k: torch.stack([o[k] for o in next_l]) for k in keys},
        samples=torch.stack(samples),
        actions=torch.stack(actions),
        log_probs=torch.stack(logps),
        values=torch.stack(values),
        env_rewards=torch.stack(rewards),
        terminated=torch.stack(terms),
        ended=torch.stack(ends),
        episodes=episodes,
    )


# --------------------------------------------------------------------------- learner


class PPOLearner:
    """PPO updates of an :class:`ActorCritic` (Adam over actor, critic and log std).

    Args:
        ac: The actor-critic.
        config: Hyper-parameters.
        total_updates: Number of :meth:`update` calls planned (for learning-rate annealing).
        generator: Torch generator for the minibatch shuffles (seeded by the caller).
    """

    def __init__(
        self,
        ac: ActorCritic,
        config: PPOConfig,
        total_updates: int,
        generator: torch.Generator | None = None,
    ) -> None:
        self.ac = ac
        self.config = config
        self.total_updates = max(1, int(total_updates))
        self.updates = 0
        self.optimizer = torch.optim.Adam(ac.parameters(), lr=config.lr, eps=1e-5)
        self.generator = generator

    def update(self, rollout: Rollout, rewards: Tensor) -> dict[str, float]:
        """One PPO update on a rollout scored with ``rewards``.

        Args:
            rollout: From :func:`ppo_collect` with the current actor.
            rewards: ``(T, N)`` rewards to optimise (the env's, or GAIL's).

        Returns:
            Logs of the last epoch's mean losses, ``approx_kl``, ``clip_fraction``,
            ``entropy``, ``explained_variance`` and ``lr``.
        """
        cfg = self.config
        if rewards.shape != rollout.values.shape:
            raise ValueError(
                f"rewards have shape {tuple(rewards.shape)}, the rollout "
                f"{tuple(rollout.values.shape)}"
            )
        if cfg.anneal_lr:
            frac = 1.0 - self.updates / self.total_updates
            for group in self.optimizer.param_groups:
                group["lr"] = cfg.lr * max(frac, 0.0)
        t, n = rollout.values.shape
        with torch.no_grad():
            next_flat = {k: v.reshape(t * n, -1) for k, v in rollout.next_obs.items()}
            next_values = self.ac.value(next_flat).reshape(t, n)
            adv, ret = ppo_gae(
                rewards.float(),
                rollout.values,
                next_values,
                rollout.terminated,
                rollout.ended,
                cfg.gamma,
                cfg.gae_lambda,
            )
        obs = rollout.flat_obs()
        samples = rollout.samples.reshape(t * n, *rollout.samples.shape[2:])
        old_logp = rollout.log_probs.reshape(-1)
        adv, ret = adv.reshape(-1), ret.reshape(-1)
        total = t * n
        logs: dict[str, list[float]] = {}
        stop = False
        for _ in range(cfg.epochs):
            perm = torch.randperm(total, generator=self.generator)
            epoch_logs: dict[str, list[float]] = {}
            for lo in range(0, total - cfg.minibatch_size + 1, cfg.minibatch_size):
                mb = perm[lo : lo + cfg.minibatch_size]
                mb_obs = {k: v[mb] for k, v in obs.items()}
                dist = self.ac.distribution(mb_obs)
                logp = dist.log_prob(samples[mb])
                mb_adv = adv[mb]
                if cfg.normalize_advantages and mb_adv.numel() > 1:
                    mb_adv = (mb_adv - mb_adv.mean()) / (mb_adv.std() + 1e-8)
                pg_loss, pg_logs = ppo_policy_loss(logp, old_logp[mb], mb_adv, cfg.clip_coef)
                v_loss = ppo_value_loss(self.ac.value(mb_obs), ret[mb])
                entropy = dist.entropy().mean()
                loss = pg_loss + cfg.vf_coef * v_loss - cfg.ent_coef * entropy
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if cfg.max_grad_norm > 0:
                    nn.utils.clip_grad_norm_(self.ac.parameters(), cfg.max_grad_norm)
                self.optimizer.step()
                for k, v in (
                    ("policy_loss", float(pg_loss.detach())),
                    ("value_loss", float(v_loss.detach())),
                    ("entropy", float(entropy.detach())),
                    *pg_logs.items(),
                ):
                    epoch_logs.setdefault(k, []).append(v)
                if cfg.target_kl is not None and pg_logs["approx_kl"] > cfg.target_kl:
                    stop = True
                    break
            logs = epoch_logs
            if stop:
                break
        self.updates += 1
        out = {k: float(np.mean(v)) for k, v in logs.items()}
        with torch.no_grad():
            var = float(ret.var())
            out["explained_variance"] = (
                float("nan")
                if var == 0
                else 1.0 - float((ret - rollout.values.reshape(-1)).var()) / var
            )
        out["lr"] = float(self.optimizer.param_groups[0]["lr"])
        return out


#: Scores a rollout: ``(T, N)`` rewards to optimise (the env's own, or a discriminator's).
RewardFn = Callable[[Rollout], Tensor]
#: Called after every update with ``(iteration, env_steps, rollout, logs)``; returning True
#: stops training early.
IterationFn = Callable[[int, int, Rollout, dict[str, float]], bool | None]


def ppo_run(
    ac: ActorCritic,
    pool: PPOEnvPool,
    config: PPOConfig,
    total_env_steps: int,
    reward_fn: RewardFn | None = None,
    on_iteration: IterationFn | None = None,
    generator: torch.Generator | None = None,
) -> int:
    """The PPO loop: collect, score, update, until ``total_env_steps`` env steps.

    Args:
        ac: Actor-critic to train in place.
        pool: Envs (reset here).
        config: Hyper-parameters (``num_envs`` must equal ``pool.num_envs``).
        total_env_steps: Interaction budget; rounded up to whole rollouts.
        reward_fn: Rewards of a rollout; None uses the envs' own rewards.
        on_iteration: Callback after every update (logging, evaluation, early stop).
        generator: Torch generator for minibatch shuffles.

    Returns:
        Env steps taken.
    """
    if pool.num_envs != config.num_envs:
        raise ConfigError(f"num_envs is {config.num_envs} but the pool has {pool.num_envs} envs")
    if total_env_steps < 1:
        raise ConfigError(f"total_env_steps must be >= 1, got {total_env_steps}")
    iterations = math.ceil(total_env_steps / config.batch_size)
    learner = PPOLearner(ac, config, iterations, generator)
    pool.reset()
    steps = 0
    for it in range(1, iterations + 1):
        rollout = ppo_collect(ac, pool, config.rollout_steps)
        steps += rollout.num_steps
        rewards = rollout.env_rewards if reward_fn is None else reward_fn(rollout)
        logs = learner.update(rollout, rewards)
        if on_iteration is not None and on_iteration(it, steps, rollout, logs):
            break
    return steps
