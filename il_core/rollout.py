"""The one rollout loop, shared by demo collection and policy evaluation.

:func:`run_episode` resets a gymnasium env with a seed, asks ``act`` for an il_core action on
every il_core observation dict, steps the env and reports the return, length and success.
Collection records steps through ``on_step``; evaluation just reads the result. Keeping one
loop means a recorded demonstration and an evaluated policy see exactly the same
observation conversion, action conversion and success definition.

Time: in simulation a step's timestamp is simulated time, ``step_index / control_rate_hz``
(:func:`step_timestamp`), so datasets from gymnasium are exactly periodic whatever the wall
clock did. On a robot the recorder stamps steps with real (message or clock) time instead,
and the measured rate is stored per episode.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import gymnasium as gym
import numpy as np

from il_core.envs import GymAdapter, episode_success

__all__ = ["EpisodeResult", "OnStep", "run_episode", "step_timestamp"]

#: ``on_step(obs_dict, action, t)``: called before ``env.step`` with the observation the
#: action was chosen from, the checked il_core action and the step index ``t`` (0-based).
OnStep = Callable[[dict[str, np.ndarray], np.ndarray, int], None]


@dataclass(frozen=True)
class EpisodeResult:
    """Outcome of one episode.

    Attributes:
        ret: Undiscounted sum of rewards.
        length: Number of ``env.step`` calls.
        success: :func:`~il_core.envs.episode_success` of the final step (None if the env
            has no success definition).
        frames: With ``render=True``, ``length + 1`` RGB frames ``(H, W, 3)`` uint8: after
            the reset and after every step. None otherwise.
        terminated: The final step's ``terminated``.
        truncated: The final step's ``truncated``, or True when ``max_steps`` cut the episode.
    """

    ret: float
    length: int
    success: bool | None
    frames: list[np.ndarray] | None = None
    terminated: bool = False
    truncated: bool = False


def step_timestamp(step_index: int, control_rate_hz: float) -> float:
    """Simulated time of step ``step_index`` (seconds since the episode start)."""
    return step_index / control_rate_hz


def _frame(env: gym.Env) -> np.ndarray:
    frame = env.render()
    if not isinstance(frame, np.ndarray):
        raise ValueError(f"env.render() returned {type(frame).__name__}, expected an RGB array")
    return np.array(frame, dtype=np.uint8, copy=True)


def run_episode(
    env: gym.Env,
    adapter: GymAdapter,
    act: Callable[[dict[str, np.ndarray]], np.ndarray],
    seed: int,
    *,
    on_step: OnStep | None = None,
    render: bool = False,
    max_steps: int | None = None,
) -> EpisodeResult:
    """Run one seeded episode of ``act`` in ``env``.

    Per step ``t``: ``obs = adapter.obs_to_dict(raw)``, ``action = act(obs)`` (checked and
    converted with ``adapter.spec.check_action``), ``on_step(obs, action, t)``, then
    ``env.step(adapter.action_to_env(action))``. So ``on_step`` sees each action with the
    observation it was chosen from; the observation after the final step is not reported
    (no action pairs with it).

    Args:
        env: The gymnasium env (made with ``render_mode="rgb_array"`` if ``render``).
        adapter: The :class:`GymAdapter` of ``env``.
        act: Policy: il_core observation dict -> il_core action (discrete: an integer
            class, shape ``()``; continuous: ``(D,)``). Reset any policy state before
            calling; this loop does not know about it.
        seed: Passed to ``env.reset(seed=seed)``; the episode is deterministic given it (and
            a deterministic ``act``).
        on_step: Optional callback, see above. Timestamps for a dataset are
            ``step_timestamp(t, adapter.control_rate_hz)``.
        render: Collect RGB frames into :attr:`EpisodeResult.frames`.
        max_steps: Stop after this many steps even if the env did not end the episode; this
            counts as a truncation (a time limit), also for the success definition.

    Returns:
        The :class:`EpisodeResult`.

    Raises:
        SpecError: ``act`` returned an action that does not match ``adapter.spec``.
        ValueError: ``render=True`` on an env without ``rgb_array`` rendering, or
            ``max_steps < 1``.
    """
    if max_steps is not None and max_steps < 1:
        raise ValueError(f"max_steps must be >= 1, got {max_steps}")
    if render and getattr(env, "render_mode", None) != "rgb_array":
        raise ValueError(
            "render=True needs an env made with render_mode='rgb_array', "
            f"got render_mode={getattr(env, 'render_mode', None)!r}"
        )
    raw, info = env.reset(seed=seed)
    frames = [_frame(env)] if render else None
    ret = 0.0
    t = 0
    terminated = truncated = False
    while True:
        obs = adapter.obs_to_dict(raw)
        action = adapter.spec.check_action(act(obs), where=f"step {t}: action")
        if on_step is not None:
            on_step(obs, action, t)
        raw, reward, terminated, truncated, info = env.step(adapter.action_to_env(action))
        ret += float(reward)
        t += 1
        if frames is not None:
            frames.append(_frame(env))
        if terminated or truncated:
            break
        if max_steps is not None and t >= max_steps:
            truncated = True
            break
    return EpisodeResult(
        ret=ret,
        length=t,
        success=episode_success(adapter.env_id, bool(terminated), bool(truncated), info),
        frames=frames,
        terminated=bool(terminated),
        truncated=bool(truncated),
    )
