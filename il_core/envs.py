"""Gymnasium adapter: env spaces to a :class:`~il_core.spec.DatasetSpec` and back.

:func:`spec_from_env` describes a gymnasium env as a dataset spec; :class:`GymAdapter` converts
raw observations into the il_core observation dict (``{key: np.ndarray}``) and il_core action
arrays into raw env actions, so that the rollout loop, the collector and evaluation never
touch gymnasium spaces themselves.

Mapping:

- 1-D ``Box`` observation -> one vector key ``"state"`` (float32), with per-element names
  and units for known envs (CartPole ``x, x_dot, theta, theta_dot``).
- ``Box`` of shape ``(H, W, C)``, dtype uint8, ``C`` in 1|3 -> one image key ``"image"``.
- ``Dict`` observation -> one key per entry (each a 1-D Box or an image Box), in the space's
  key order (gymnasium sorts plain-dict keys).
- ``Discrete(n, start)`` action -> discrete :class:`~il_core.spec.ActionSpec` with
  ``num_classes = n``; class ``i`` is env action ``start + i``.
- 1-D ``Box`` action -> continuous with the space's ``low``/``high`` bounds.

This module imports gymnasium but no simulator package: :func:`make_env` loads the installed
il_core plugins (:mod:`il_core.plugins`; this repository's ``sim`` is one) so that the ids
they register (``il_ros/...``) resolve.
"""

from __future__ import annotations

import difflib
from typing import Any, TypeGuard

import gymnasium as gym
import numpy as np

from il_core.plugins import load_plugins
from il_core.spec import ActionSpec, DatasetSpec, FeatureSpec, SpecError

__all__ = [
    "DEFAULT_CONTROL_RATE_HZ",
    "IMAGE_KEY",
    "STATE_KEY",
    "GymAdapter",
    "UnknownEnvError",
    "env_id_of",
    "episode_success",
    "make_env",
    "spec_from_env",
]

#: Observation key of a flat (1-D Box) observation.
STATE_KEY = "state"
#: Observation key of an image (H, W, C uint8 Box) observation.
IMAGE_KEY = "image"
#: Control rate used when neither the caller, ``render_fps`` nor ``dt`` gives one.
DEFAULT_CONTROL_RATE_HZ = 10.0

# Per-element names and units of the flat state of known envs, keyed by full env id.
_STATE_NAMES: dict[str, tuple[tuple[str, ...], tuple[str, ...] | None]] = {
    "CartPole-v0": (("x", "x_dot", "theta", "theta_dot"), ("m", "m/s", "rad", "rad/s")),
    "CartPole-v1": (("x", "x_dot", "theta", "theta_dot"), ("m", "m/s", "rad", "rad/s")),
    # MountainCar's position and velocity are in arbitrary units (velocity per step).
    "MountainCar-v0": (("position", "velocity"), None),
    "MountainCarContinuous-v0": (("position", "velocity"), None),
    "Pendulum-v1": (("cos_theta", "sin_theta", "theta_dot"), ("", "", "rad/s")),
}

# Class names of discrete actions, and dimension names/units of continuous ones.
_ACTION_NAMES: dict[str, tuple[tuple[str, ...], tuple[str, ...] | None]] = {
    "CartPole-v0": (("left", "right"), None),
    "CartPole-v1": (("left", "right"), None),
    "MountainCar-v0": (("left", "none", "right"), None),
    "MountainCarContinuous-v0": (("force",), None),
    "Pendulum-v1": (("torque",), ("N*m",)),
}

# Success criteria of known envs (used when the env does not report ``info["is_success"]``).
_SUCCESS_ON_TERMINATION = frozenset({"MountainCar-v0", "MountainCarContinuous-v0"})
_SUCCESS_ON_SURVIVAL = frozenset({"CartPole-v0", "CartPole-v1"})


class UnknownEnvError(ValueError):
    """``make_env`` was given an id that gymnasium (and the plugins) do not register."""


def env_id_of(env: gym.Env) -> str | None:
    """The registered id of ``env`` (``env.spec.id``), or None for an unregistered env."""
    spec = getattr(env, "spec", None)
    return spec.id if spec is not None else None


def _is_image_box(space: gym.spaces.Space) -> TypeGuard[gym.spaces.Box]:
    return (
        isinstance(space, gym.spaces.Box)
        and len(space.shape) == 3
        and space.shape[2] in (1, 3)
        and space.dtype == np.uint8
    )


def _feature_from_space(
    space: gym.spaces.Space,
    key: str,
    names: tuple[tuple[str, ...], tuple[str, ...] | None] | None,
) -> FeatureSpec:
    """One observation entry: a 1-D Box -> vector, an (H, W, C) uint8 Box -> image."""
    if _is_image_box(space):
        return FeatureSpec(kind="image", shape=space.shape)
    if isinstance(space, gym.spaces.Box) and len(space.shape) == 1:
        if names is not None and len(names[0]) != space.shape[0]:
            names = None  # A table entry for a differently shaped variant: drop, don't fail.
        return FeatureSpec(
            kind="vector",
            shape=space.shape,
            names=None if names is None else names[0],
            units=None if names is None else names[1],
        )
    raise SpecError(
        f"observation {key!r}: unsupported space {space}; supported are 1-D Box (vector) "
        "and (H, W, C) uint8 Box with C in 1|3 (image)"
    )


def _control_rate(env: gym.Env) -> float:
    """Nominal rate: ``render_fps`` (the env's real-time step rate), else ``1 / dt``."""
    fps = (getattr(env, "metadata", None) or {}).get("render_fps")
    if fps is not None and float(fps) > 0:
        return float(fps)
    dt = getattr(env.unwrapped, "dt", None)
    if isinstance(dt, int | float) and dt > 0:
        return 1.0 / float(dt)
    return DEFAULT_CONTROL_RATE_HZ


def spec_from_env(env: gym.Env, control_rate_hz: float | None = None) -> DatasetSpec:
    """Describe a gymnasium env's observation and action spaces as a :class:`DatasetSpec`.

    Args:
        env: The env (wrapped or not); ``env.spec.id`` selects the known-env name tables.
        control_rate_hz: Nominal control rate; defaults to ``env.metadata["render_fps"]``
            (CartPole 50, MountainCar 30, Pendulum 30), else ``1 / env.unwrapped.dt`` when the
            env defines ``dt``, else :data:`DEFAULT_CONTROL_RATE_HZ`.

    Returns:
        The spec, with ``metadata == {"env_id": id}`` (None for an unregistered env).

    Raises:
        SpecError: for spaces that have no il_core equivalent (naming the key and space).
    """
    env_id = env_id_of(env)
    obs_space = env.observation_space
    if isinstance(obs_space, gym.spaces.Dict):
        observations = {
            str(k): _feature_from_space(sub, str(k), None) for k, sub in obs_space.spaces.items()
        }
    elif _is_image_box(obs_space):
        observations = {IMAGE_KEY: _feature_from_space(obs_space, IMAGE_KEY, None)}
    else:
        observations = {
            STATE_KEY: _feature_from_space(obs_space, STATE_KEY, _STATE_NAMES.get(env_id or ""))
        }

    act_space = env.action_space
    names, units = _ACTION_NAMES.get(env_id or "", (None, None))
    if isinstance(act_space, gym.spaces.Discrete):
        n = int(act_space.n)
        action = ActionSpec(
            kind="discrete",
            num_classes=n,
            names=names if names is not None and len(names) == n else None,
        )
    elif isinstance(act_space, gym.spaces.Box) and len(act_space.shape) == 1:
        dim = int(act_space.shape[0])
        ok = names is not None and len(names) == dim
        action = ActionSpec(
            kind="continuous",
            dim=dim,
            names=names if ok else None,
            units=units if ok and units is not None else None,
            low=tuple(float(x) for x in act_space.low),
            high=tuple(float(x) for x in act_space.high),
        )
    else:
        raise SpecError(
            f"action: unsupported space {act_space}; supported are Discrete and 1-D Box"
        )
    rate = _control_rate(env) if control_rate_hz is None else float(control_rate_hz)
    return DatasetSpec(
        observations=observations,
        action=action,
        control_rate_hz=rate,
        metadata={"env_id": env_id},
    )


class GymAdapter:
    """Converts between a gymnasium env's raw observations/actions and il_core arrays.

    Attributes:
        env: The adapted env.
        spec: The :class:`DatasetSpec` from :func:`spec_from_env`.
        env_id: ``env.spec.id`` (None for an unregistered env).
    """

    def __init__(self, env: gym.Env, control_rate_hz: float | None = None) -> None:
        """Adapt ``env``; ``control_rate_hz`` overrides the rate :func:`spec_from_env` picks."""
        self.env = env
        self.spec = spec_from_env(env, control_rate_hz)
        self.env_id = env_id_of(env)
        self._dict_obs = isinstance(env.observation_space, gym.spaces.Dict)
        act_space = env.action_space
        self._discrete_start = (
            int(act_space.start) if isinstance(act_space, gym.spaces.Discrete) else 0
        )

    @property
    def control_rate_hz(self) -> float:
        """Nominal control rate of the spec (Hz)."""
        return self.spec.control_rate_hz

    def _convert(self, key: str, value: Any) -> np.ndarray:
        f = self.spec.observations[key]
        # Copies, so a recorded observation never aliases a buffer the env reuses in place.
        arr = np.array(value, dtype=f.dtype, copy=True)
        return arr.reshape(f.shape)

    def obs_to_dict(self, obs: Any) -> dict[str, np.ndarray]:
        """Raw env observation -> il_core observation dict.

        Args:
            obs: What ``env.reset``/``env.step`` returned: an array (``(D,)`` or
                ``(H, W, C)``) or, for Dict spaces, a mapping of them.

        Returns:
            ``{key: array}``: vectors ``(D,)`` float32, images ``(H, W, C)`` uint8.
        """
        if self._dict_obs:
            return {k: self._convert(k, obs[k]) for k in self.spec.observations}
        (key,) = self.spec.observations
        return {key: self._convert(key, obs)}

    def obs_to_raw(self, obs: dict[str, np.ndarray]) -> Any:
        """il_core observation dict -> raw env observation (inverse of :meth:`obs_to_dict`).

        Used to feed scripted experts (which take raw observations) exactly the values that
        are recorded, so a stored action is a function of the stored observation. Values
        are cast to the env space's dtype.
        """
        space = self.env.observation_space
        if self._dict_obs:
            assert isinstance(space, gym.spaces.Dict)  # what _dict_obs means
            return {
                k: np.asarray(obs[k], dtype=space.spaces[k].dtype).reshape(space.spaces[k].shape)
                for k in self.spec.observations
            }
        (key,) = self.spec.observations
        return np.asarray(obs[key], dtype=space.dtype).reshape(space.shape)

    def action_to_env(self, action: np.ndarray) -> Any:
        """il_core action -> raw env action.

        Args:
            action: Discrete: one integer class index (shape ``()`` or ``(1,)``).
                Continuous: ``(D,)`` real values.

        Returns:
            ``int`` (``start + class``) for Discrete; for Box, an array of the space's dtype
            and shape, clipped to ``[low, high]`` (policies may overshoot the bounds).

        Raises:
            SpecError: wrong shape or dtype, class out of range, NaN or infinity.
        """
        a = self.spec.check_action(action)
        if self.spec.action.kind == "discrete":
            return self._discrete_start + int(a)
        space = self.env.action_space
        assert isinstance(space, gym.spaces.Box)  # continuous: the constructor checked
        clipped = np.clip(a, space.low, space.high)
        return clipped.astype(space.dtype, copy=False).reshape(space.shape)

    def action_from_env(self, env_action: Any) -> np.ndarray:
        """Raw env action -> il_core action, as :meth:`DatasetSpec.check_action` returns it.

        Returns:
            Discrete: int64 array of shape ``()``. Continuous: float32 ``(D,)``.
        """
        if self.spec.action.kind == "discrete":
            return self.spec.check_action(np.int64(int(env_action) - self._discrete_start))
        return self.spec.check_action(np.asarray(env_action).reshape(-1))


def episode_success(
    env_id: str | None, terminated: bool, truncated: bool, info: dict[str, Any]
) -> bool | None:
    """Whether an episode that ended with these flags succeeded, if the env defines it.

    Args:
        env_id: Gymnasium id of the env.
        terminated: The final step's ``terminated``.
        truncated: The final step's ``truncated`` (time limit reached).
        info: The final step's ``info``.

    Returns:
        ``bool(info["is_success"])`` when the env reports it; for MountainCar-v0 (and
        MountainCarContinuous-v0) ``terminated`` (the goal was reached); for CartPole
        ``truncated and not terminated`` (survived to the time limit); else None (unknown).
    """
    if info and "is_success" in info:
        return bool(np.asarray(info["is_success"]).item())
    if env_id in _SUCCESS_ON_TERMINATION:
        return bool(terminated)
    if env_id in _SUCCESS_ON_SURVIVAL:
        return bool(truncated and not terminated)
    return None


def make_env(env_id: str, render_mode: str | None = None, **kwargs: Any) -> gym.Env:
    """Create a gymnasium env by id, also resolving the ids that il_core plugins register.

    Args:
        env_id: Registered id (``"CartPole-v1"``, ``"il_ros/..."``) or gymnasium's
            ``"module:Env-v0"`` form.
        render_mode: ``None``, ``"rgb_array"`` or ``"human"``.
        **kwargs: Passed to the env constructor.

    Raises:
        UnknownEnvError: the id is not registered; the message names it and close matches.
        PluginError: an installed plugin failed to load.
    """
    load_plugins()  # Registers the plugins' envs (sim's il_ros/... ids); raises if one breaks.
    if render_mode is not None:
        # Only when asked for: gymnasium forwards an explicit render_mode=None to the env
        # constructor, which breaks envs whose __init__ has no render_mode parameter.
        kwargs["render_mode"] = render_mode
    try:
        return gym.make(env_id, **kwargs)
    except gym.error.UnregisteredEnv as e:
        close = difflib.get_close_matches(env_id, list(gym.registry), n=3, cutoff=0.6)
        hint = f"; did you mean {close}?" if close else ""
        raise UnknownEnvError(f"unknown gymnasium env id {env_id!r}{hint} ({e})") from e
