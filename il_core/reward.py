"""Learned rewards: a file that holds a reward function, and a gymnasium wrapper that uses it.

Inverse reinforcement learning (``il-core airl``, :mod:`il_core.algos.airl`) recovers the
reward the expert optimises, not only a policy. It is saved as ``reward.pt``, a
self-contained file like a policy checkpoint (weights, normaliser, spec, settings) that
loads with ``torch.load(weights_only=True)``:

- :func:`save_learned_reward` / :func:`load_learned_reward` write and read it, with clear
  errors naming the file;
- :class:`LearnedReward` is the reward ``r(s)`` (or ``r(s, a)``) as a torch module over raw
  observations, batched;
- :class:`LearnedRewardWrapper` replaces a gymnasium env's reward with it, keeping the env's
  own reward in ``info["env_reward"]`` (for evaluation only), so any RL learner can optimise
  the learned reward again, in the same env or one with changed dynamics::

    env = LearnedRewardWrapper(gym.make("CartPole-v1"), load_learned_reward("reward.pt"))

The reward is affine-calibrated when it is saved (:attr:`LearnedReward.offset`,
:attr:`LearnedReward.scale`): AIRL identifies a reward only up to a constant and a positive
factor, and in an env that ends episodes on failure the constant decides whether a learner
prefers to live (a positive reward pays for survival) or to die. The calibration maps the
mean over the expert's states to +1 and the mean over the states of the untrained learner
(random actions) to -1, so "like the expert" is positive and "like a beginner" negative,
whatever constant the discriminator happened to settle on; it does not look at the env's
reward.

Shapes: B samples, D_key observation size, A action dimension, C classes.
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import Any, SupportsFloat

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

import il_core
from il_core.checkpoint import atomic_torch_save
from il_core.normalize import Normalizer
from il_core.policies.encoders import mlp
from il_core.spec import DatasetSpec, SpecError

__all__ = [
    "LearnedReward",
    "LearnedRewardError",
    "LearnedRewardWrapper",
    "HiddenRewardWrapper",
    "load_learned_reward",
    "save_learned_reward",
]

FORMAT_NAME = "il_core.learned_reward"
FORMAT_VERSION = 1


class LearnedRewardError(ValueError):
    """A reward file is missing, corrupt, not a learned reward, or does not fit the env."""


class LearnedReward(nn.Module):
    """A learned reward ``r(s)`` (state-only) or ``r(s, a)`` over raw observations.

    ``r = (g(x) - offset) / scale`` with ``g`` an MLP over the normalised observation (and
    the one-hot class or normalised action when ``use_action``).

    Args:
        spec: The observation and action spec (vector observations only).
        stats: ``EpisodeDataset.stats()`` of the data the reward is learned on (the
            normaliser's statistics); None when weights are loaded afterwards.
        hidden_dims: Hidden sizes of ``g``.
        use_action: ``r(s, a)`` rather than ``r(s)``. A state-only reward is the one AIRL
            disentangles from the dynamics, so it is the one to transfer.

    Attributes:
        offset: Subtracted from ``g`` (a buffer, set by the calibration).
        scale: ``g - offset`` is divided by it (a buffer, > 0).
    """

    offset: Tensor
    scale: Tensor

    def __init__(
        self,
        spec: DatasetSpec,
        stats: dict[str, dict[str, np.ndarray]] | None,
        hidden_dims: tuple[int, ...],
        use_action: bool = False,
    ) -> None:
        super().__init__()
        if spec.image_keys:
            raise LearnedRewardError(
                f"observation {spec.image_keys[0]!r} is an image; learned rewards support "
                "vector observations only"
            )
        self.spec = spec
        self.stats = stats
        self.keys = spec.vector_keys
        self.hidden_dims = tuple(int(h) for h in hidden_dims)
        self.use_action = bool(use_action)
        self.discrete = spec.action.kind == "discrete"
        self.num_classes = int(spec.action.num_classes or 0) if self.discrete else 0
        self.normalizer = Normalizer(spec, stats)
        obs_dim = sum(spec.observations[k].shape[0] for k in self.keys)
        act_dim = (self.num_classes if self.discrete else int(spec.action.dim)) * use_action
        self.g = mlp(obs_dim + act_dim, self.hidden_dims, 1)
        self.register_buffer("offset", torch.zeros(()))
        self.register_buffer("scale", torch.ones(()))
        #: Provenance stored with the file (algorithm, env, seed, gamma, ...).
        self.meta: dict[str, Any] = {}

    def raw(self, obs: dict[str, Tensor], actions: Tensor | None = None) -> Tensor:
        """``g`` before calibration, ``(B,)``: what the discriminator trains.

        Args:
            obs: ``{key: (B, D_key)}`` raw observations.
            actions: ``(B,)`` classes or ``(B, A)`` raw actions; needed when ``use_action``.
        """
        norm = self.normalizer.normalize_obs(obs)
        parts = [norm[k] for k in self.keys]
        if self.use_action:
            if actions is None:
                raise LearnedRewardError("this reward is r(s, a): pass the actions")
            if self.discrete:
                a = F.one_hot(actions.long().reshape(-1), self.num_classes).to(torch.float32)
            else:
                a = self.normalizer.normalize_action(actions.to(torch.float32))
            parts.append(a)
        return self.g(torch.cat(parts, dim=-1)).squeeze(-1)

    def forward(self, obs: dict[str, Tensor], actions: Tensor | None = None) -> Tensor:
        """The calibrated reward ``(B,)`` of raw observations ``{key: (B, D_key)}``."""
        return (self.raw(obs, actions) - self.offset) / self.scale

    @torch.no_grad()
    def calibrate(self, expert_obs: dict[str, Tensor], novice_obs: dict[str, Tensor]) -> None:
        """Set ``offset``/``scale`` so the expert's states average +1, the novice's -1.

        Args:
            expert_obs: ``{key: (B_e, D_key)}`` states of the expert.
            novice_obs: ``{key: (B_n, D_key)}`` states of an untrained learner.

        Raises:
            LearnedRewardError: if ``g`` does not rank the expert's states above the
                novice's on average (the reward learned nothing usable).
        """
        if self.use_action:
            raise LearnedRewardError("calibration is defined for state-only rewards")
        e, n = float(self.raw(expert_obs).mean()), float(self.raw(novice_obs).mean())
        if not e > n:
            raise LearnedRewardError(
                f"the learned reward does not prefer the expert's states (mean {e:.4g}) to "
                f"an untrained learner's ({n:.4g}); train longer or check the data"
            )
        self.offset.fill_((e + n) / 2)
        self.scale.fill_((e - n) / 2)

    def numpy(self, obs: dict[str, np.ndarray], actions: np.ndarray | None = None) -> np.ndarray:
        """The reward of numpy observations ``{key: (B, D_key)}``, ``(B,)`` float32."""
        with torch.inference_mode():
            t = {k: torch.as_tensor(np.asarray(v, np.float32)) for k, v in obs.items()}
            a = None if actions is None else torch.as_tensor(np.asarray(actions))
            return self(t, a).numpy().astype(np.float32)


def save_learned_reward(
    path: str | Path, reward: LearnedReward, meta: dict[str, Any] | None = None
) -> Path:
    """Atomically write ``reward`` to ``path`` (conventionally ``reward.pt``).

    Args:
        path: Destination file.
        reward: The reward module.
        meta: Plain-data provenance (algorithm, env, seed, gamma, ...), stored as ``meta``.

    Returns:
        The path written.
    """
    data = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "il_core_version": il_core.__version__,
        "spec": reward.spec.to_dict(),
        "hidden_dims": list(reward.hidden_dims),
        "use_action": reward.use_action,
        "state_dict": {k: v.detach().cpu() for k, v in reward.state_dict().items()},
        "meta": dict(meta or {}),
    }
    return atomic_torch_save(path, data)


def load_learned_reward(path: str | Path) -> LearnedReward:
    """Load a reward saved by :func:`save_learned_reward`, in eval mode.

    Raises:
        LearnedRewardError: naming the file, for a missing, corrupt or foreign file, a
            newer format, or weights that do not match the stored settings.
    """
    path = Path(path)
    if not path.is_file():
        raise LearnedRewardError(f"{path}: reward file not found")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, zipfile.BadZipFile, pickle.UnpicklingError, OSError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise LearnedRewardError(f"{path}: not a readable reward file: {first}") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT_NAME:
        raise LearnedRewardError(
            f"{path}: not a learned reward (no 'format: {FORMAT_NAME}' tag; a policy "
            "checkpoint is policy.pt, the reward of il-core airl is reward.pt)"
        )
    version = data.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise LearnedRewardError(
            f"{path}: reward format version {version!r} is newer than this il_core "
            f"understands ({FORMAT_VERSION}); upgrade il_ros"
        )
    try:
        spec = DatasetSpec.from_dict(data["spec"], f"{path}: spec")
        reward = LearnedReward(spec, None, tuple(data["hidden_dims"]), bool(data["use_action"]))
        reward.load_state_dict(data["state_dict"])
    except (KeyError, TypeError, SpecError, RuntimeError) as e:
        raise LearnedRewardError(f"{path}: invalid reward file contents: {e}") from None
    reward.meta = dict(data.get("meta") or {})
    return reward.eval()


class LearnedRewardWrapper(gym.Wrapper):
    """Replace an env's reward with a learned one; the env's own goes to ``info``.

    The reward of a step is the learned ``r`` of the observation the step was taken from
    (and of its action, for an ``r(s, a)``): AIRL's ``g(s)`` scores the state an action
    is taken in. The env's reward is kept as ``info["env_reward"]`` for evaluation; a
    learner that reads only the returned reward never sees it.

    Args:
        env: The env; its observations must match the reward's spec.
        reward: The learned reward.

    Raises:
        LearnedRewardError: if the env's observations or actions do not match the spec.
    """

    def __init__(self, env: gym.Env, reward: LearnedReward) -> None:
        super().__init__(env)
        from il_core.envs import GymAdapter

        self.adapter = GymAdapter(env)
        problems = reward.spec.compatible_with(self.adapter.spec)
        if problems:
            env_id = env.spec.id if env.spec is not None else type(env.unwrapped).__name__
            raise LearnedRewardError(
                f"the learned reward does not fit env {env_id}: " + "; ".join(problems)
            )
        self.reward_model = reward
        self._last: dict[str, np.ndarray] | None = None

    def reset(self, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
        """Reset the env and remember the first observation."""
        obs, info = self.env.reset(**kwargs)
        self._last = self.adapter.obs_to_dict(obs)
        return obs, info

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        """Step the env; the reward is the learned one of the state acted in."""
        if self._last is None:
            raise gym.error.ResetNeeded("call reset() before step()")
        obs, env_reward, terminated, truncated, info = self.env.step(action)
        batch = {k: v[None] for k, v in self._last.items()}
        act = np.asarray(action)[None] if self.reward_model.use_action else None
        r = float(self.reward_model.numpy(batch, act)[0])
        self._last = self.adapter.obs_to_dict(obs)
        info = {**info, "env_reward": float(env_reward)}
        return obs, r, terminated, truncated, info


class HiddenRewardWrapper(gym.Wrapper):
    """Hide an env's reward: every step returns 0, the env's own goes to ``info``.

    For a learner that scores its rollouts itself with a learned reward in one batched call
    (``il-core ppo --reward``: faster than :class:`LearnedRewardWrapper`'s one forward pass
    per step, and the same values), this makes sure the env's reward cannot leak into
    training.
    """

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        """Step the env; the reward is 0 and ``info["env_reward"]`` the env's."""
        obs, env_reward, terminated, truncated, info = self.env.step(action)
        return obs, 0.0, terminated, truncated, {**info, "env_reward": float(env_reward)}
