"""Noisy, non-expert play data for goal-conditioned cloning: wander between random waypoints.

The play policy of :class:`PlayActor` ignores the env's goal. It drives a point robot
(observation key ``position``, velocity actions, like ``il_ros/PointReach-v0``) towards a
random waypoint at a random speed with Gaussian velocity noise, and picks a new waypoint when
it gets there or after a random number of steps. Its trajectories reach many states but no
task is demonstrated: only hindsight relabelling turns them into goal-reaching examples.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from il_core.config import ConfigError

__all__ = ["PlayActor", "PlayConfig", "collect_play"]


@dataclass
class PlayConfig:
    """How the play policy wanders.

    Attributes:
        position_key: Observation key of the robot's position ``(2,)``.
        arena: Waypoints are drawn uniformly in ``[-arena, arena]^2``.
        speed_min: Slowest commanded speed per segment (m/s).
        speed_max: Fastest commanded speed per segment (m/s).
        noise_std: Standard deviation of the Gaussian noise added to every velocity
            command (m/s), per axis.
        segment_steps_max: A waypoint is abandoned after a uniform 1..this many steps.
        reach_tolerance: A waypoint is reached within this distance (m).
    """

    position_key: str = field(default="position", metadata={"help": "position observation"})
    arena: float = field(default=0.95, metadata={"help": "waypoint range, m"})
    speed_min: float = field(default=0.2, metadata={"help": "slowest segment speed"})
    speed_max: float = field(default=1.0, metadata={"help": "fastest segment speed"})
    noise_std: float = field(default=0.3, metadata={"help": "velocity noise std per axis"})
    segment_steps_max: int = field(default=60, metadata={"help": "longest segment, steps"})
    reach_tolerance: float = field(default=0.05, metadata={"help": "waypoint reached, m"})

    def __post_init__(self) -> None:
        if not (0 < self.speed_min <= self.speed_max):
            raise ConfigError(
                f"need 0 < speed_min <= speed_max, got {self.speed_min}, {self.speed_max}"
            )
        if self.arena <= 0 or self.noise_std < 0 or self.reach_tolerance <= 0:
            raise ConfigError("arena and reach_tolerance must be > 0, noise_std >= 0")
        if self.segment_steps_max < 1:
            raise ConfigError(f"segment_steps_max must be >= 1, got {self.segment_steps_max}")


class PlayActor:
    """Random-waypoint wandering with noise (see the module docstring).

    Args:
        config: The play settings.
        rng: Injected generator, the only source of randomness.
        max_speed: The env's velocity limit per axis; commands are clipped to it.
    """

    def __init__(self, config: PlayConfig, rng: np.random.Generator, max_speed: float = 1.0):
        self.config, self.rng, self.max_speed = config, rng, float(max_speed)
        self._waypoint = np.zeros(2)
        self._speed = 0.0
        self._left = 0

    def reset(self) -> None:
        """Pick a new waypoint at the next step."""
        self._left = 0

    def _new_segment(self) -> None:
        c = self.config
        self._waypoint = self.rng.uniform(-c.arena, c.arena, 2)
        self._speed = float(self.rng.uniform(c.speed_min, c.speed_max))
        self._left = int(self.rng.integers(1, c.segment_steps_max + 1))

    def __call__(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        """Velocity ``(2,)`` float32 for the observation dict."""
        pos = np.asarray(obs[self.config.position_key], dtype=np.float64)
        if self._left == 0 or np.linalg.norm(self._waypoint - pos) < self.config.reach_tolerance:
            self._new_segment()
        self._left -= 1
        err = self._waypoint - pos
        dist = float(np.linalg.norm(err))
        v = err / max(dist, 1e-9) * min(self._speed, dist * 20.0)  # slow down on arrival
        v = v + self.rng.normal(0.0, self.config.noise_std, 2)
        return np.clip(v, -self.max_speed, self.max_speed).astype(np.float32)


def collect_play(
    env_id: str,
    episodes: int,
    seed: int,
    out: str | Path,
    config: PlayConfig | None = None,
) -> dict[str, Any]:
    """Record ``episodes`` play episodes (episode ``i`` reset with ``seed + i``) at ``out``.

    Args:
        env_id: A point-robot env with a ``position`` observation and velocity actions
            (``il_ros/PointReach-v0``).
        episodes: Number of episodes, >= 1.
        seed: Seeds the env resets and the play policy.
        out: Dataset directory (created, or appended to with a matching spec).
        config: Play settings (defaults if None).

    Returns:
        ``{"episodes", "steps", "env_goal_success_rate", "out"}``: how often play reached the
        env's own goal by chance.

    Raises:
        ConfigError: ``episodes < 1``, or the env lacks the position key (naming it).
    """
    from il_core.data import DatasetWriter
    from il_core.envs import GymAdapter, make_env
    from il_core.rollout import run_episode, step_timestamp

    if episodes < 1:
        raise ConfigError(f"episodes must be >= 1, got {episodes}")
    cfg = config or PlayConfig()
    env = make_env(env_id)
    try:
        adapter = GymAdapter(env)
        if cfg.position_key not in adapter.spec.vector_keys:
            raise ConfigError(
                f"play needs a vector observation {cfg.position_key!r} (position_key); "
                f"{env_id} has {list(adapter.spec.observations)}"
            )
        high = adapter.spec.action.high
        actor = PlayActor(cfg, np.random.default_rng(seed), high[0] if high else 1.0)
        rate = adapter.control_rate_hz
        steps = 0
        reached = []
        with DatasetWriter(out, adapter.spec, flush_every=1000, fsync=False) as writer:

            def on_step(obs: dict[str, np.ndarray], action: np.ndarray, t: int) -> None:
                writer.add_step(obs, action, step_timestamp(t, rate))

            for i in range(episodes):
                actor.reset()
                writer.start_episode(metadata={"env_id": env_id, "seed": seed + i, "play": True})
                result = run_episode(env, adapter, actor, seed + i, on_step=on_step)
                # Success here means the env's goal, which play ignores: not a demonstration.
                writer.end_episode(success=None, metadata={"env_goal_reached": result.success})
                reached.append(bool(result.success))
                steps += result.length
    finally:
        env.close()
    return {
        "episodes": episodes,
        "steps": steps,
        "env_goal_success_rate": float(np.mean(reached)),
        "out": str(out),
    }
