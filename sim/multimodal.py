"""A point robot that must go around an obstacle to reach a goal: the multimodal benchmark.

The robot starts below a round obstacle and the goal lies above it. A scripted expert
(:class:`MultimodalReachExpert`) passes the obstacle on the left or on the right with equal
probability, chosen per episode from the seed given to ``expert.reset(seed)``. The side is
independent of the start state, so the demonstrations are genuinely bimodal: behaviour
cloning with a mean-squared-error loss averages the two sides and drives straight into the
obstacle, while a policy that models the action distribution picks a side and commits to it.

Geometry (world units; the arena is the square ``[-1.25, 1.25]^2``)::

            goal (x in [-0.15, 0.15], y in [0.9, 1.1])
                 .
      (-0.65, 0) o    ( O )    o (0.65, 0)     obstacle: disc of radius 0.3 at the origin
                 .                             expert waypoints on either side
            start (x in [-0.15, 0.15], y = -1)

Every start is within the obstacle's shadow (``|x| < 0.3``), so going straight up always
collides.

- Observation ``"state"`` (``il_ros/MultimodalReach-v0``): ``(4,)`` float32
  ``[x, y, goal_x - x, goal_y - y]``: the robot's position and the goal relative to it (what
  a robot measures with its own sensors). Observation ``"image"``
  (``il_ros/MultimodalReachImage-v0``): a top-down ``(32, 32, 3)`` uint8 camera image
  (white floor, grey obstacle, green goal, red robot); positions are only visible in it.
- Action: ``(2,)`` float32 velocity command in ``[-1, 1]``, scaled by :data:`MAX_STEP` (world
  units per step).
- Termination: goal reached (distance below :data:`GOAL_TOLERANCE`; success) or collision
  with the obstacle, checked along the whole segment travelled in the step (failure). The
  registered envs truncate at 60 steps; the expert needs 23 on average, at most 26.
- ``info``: ``is_success`` (bool, read by :func:`il_core.envs.episode_success`),
  ``collision`` (bool), ``side`` (``-1`` passed left of the obstacle, ``+1`` right, ``0`` not
  yet past it: the side is fixed when the robot first crosses ``y = 0``) and ``distance``
  to the goal.
- Reward: progress towards the goal per step, +1 on success, -1 on collision.
"""

from __future__ import annotations

from typing import Any, Literal, SupportsFloat

import gymnasium as gym
import numpy as np

__all__ = [
    "GOAL_TOLERANCE",
    "MAX_STEP",
    "OBSTACLE_RADIUS",
    "MultimodalReachEnv",
    "MultimodalReachExpert",
    "evaluate_modes",
    "mode_summary",
]

#: Half-width of the square arena; positions are clamped to it.
ARENA = 1.25
#: Obstacle radius (disc at the origin).
OBSTACLE_RADIUS = 0.3
#: World units travelled per step for an action component of 1.
MAX_STEP = 0.1
#: Distance to the goal that counts as reached.
GOAL_TOLERANCE = 0.15
#: Start and goal ranges.
START_Y = -1.0
START_X_RANGE = 0.15
GOAL_X_RANGE = 0.15
GOAL_Y_RANGE = (0.9, 1.1)
#: The expert's waypoint beside the obstacle is at ``(side * WAYPOINT_X, WAYPOINT_Y)``.
WAYPOINT_X = 0.65
WAYPOINT_Y = 0.0
#: Drawn radii (world units) of the robot and the goal in images.
_ROBOT_DRAW_RADIUS = 0.12
_GOAL_DRAW_RADIUS = 0.12


def _segment_distance(p: np.ndarray, q: np.ndarray, c: np.ndarray) -> float:
    """Smallest distance from point ``c`` to the segment ``p``-``q`` (all ``(2,)``)."""
    d = q - p
    denom = float(d @ d)
    t = 0.0 if denom == 0.0 else float(np.clip((c - p) @ d / denom, 0.0, 1.0))
    return float(np.linalg.norm(p + t * d - c))


class MultimodalReachEnv(gym.Env):
    """Reach a goal behind an obstacle (see the module docstring for the geometry).

    Args:
        render_mode: ``None`` or ``"rgb_array"`` (a ``render_size`` square top-down image).
        observation: ``"state"`` for the ``(4,)`` vector, ``"image"`` for a camera image.
        image_size: Side of the observation image in pixels (``observation="image"``).
        render_size: Side of the image :meth:`render` returns.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}

    def __init__(
        self,
        render_mode: str | None = None,
        observation: Literal["state", "image"] = "state",
        image_size: int = 32,
        render_size: int = 128,
    ) -> None:
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")
        if observation not in ("state", "image"):
            raise ValueError(f"observation must be 'state' or 'image', got {observation!r}")
        self.render_mode = render_mode
        self.observation = observation
        self.image_size = int(image_size)
        self.render_size = int(render_size)
        if observation == "state":
            bound = np.array([ARENA, ARENA, 2 * ARENA, 2 * ARENA], np.float32)
            self.observation_space = gym.spaces.Box(-bound, bound, (4,), np.float32)
        else:
            s = self.image_size
            self.observation_space = gym.spaces.Box(0, 255, (s, s, 3), np.uint8)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
        self.pos = np.array([0.0, START_Y])
        self.goal = np.array([0.0, 1.0])
        self.side = 0
        self._grids: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    # -- gymnasium API -------------------------------------------------------------------

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Draw a start and a goal position from ``seed``; returns ``(obs, info)``."""
        super().reset(seed=seed)
        rng = self.np_random
        self.pos = np.array([rng.uniform(-START_X_RANGE, START_X_RANGE), START_Y])
        self.goal = np.array(
            [rng.uniform(-GOAL_X_RANGE, GOAL_X_RANGE), rng.uniform(*GOAL_Y_RANGE)]
        )
        self.side = 0
        return self._obs(), self._info(False, False)

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Move by ``clip(action, -1, 1) * MAX_STEP``; see the module docstring."""
        a = np.clip(np.asarray(action, dtype=np.float64).reshape(2), -1.0, 1.0)
        old = self.pos
        new = np.clip(old + a * MAX_STEP, -ARENA, ARENA)
        if self.side == 0 and old[1] < WAYPOINT_Y <= new[1]:
            # The side is where the path crosses the obstacle's centre line.
            t = (WAYPOINT_Y - old[1]) / (new[1] - old[1])
            self.side = -1 if old[0] + t * (new[0] - old[0]) < 0.0 else 1
        collision = _segment_distance(old, new, np.zeros(2)) < OBSTACLE_RADIUS
        d_old = float(np.linalg.norm(old - self.goal))
        self.pos = new
        d_new = float(np.linalg.norm(new - self.goal))
        success = (not collision) and d_new < GOAL_TOLERANCE
        reward = d_old - d_new + (1.0 if success else 0.0) - (1.0 if collision else 0.0)
        return (
            self._obs(),
            reward,
            bool(success or collision),
            False,
            self._info(success, collision),
        )

    def render(self) -> np.ndarray | None:
        """Top-down RGB image ``(render_size, render_size, 3)`` uint8 (``rgb_array`` mode)."""
        if self.render_mode != "rgb_array":
            return None
        return self.draw(self.render_size)

    # -- helpers -------------------------------------------------------------------------

    def draw(self, size: int) -> np.ndarray:
        """Draw the scene as a ``(size, size, 3)`` uint8 image (row 0 is the top, ``y = ARENA``).

        Shapes are anti-aliased discs (coverage ramps over one pixel), so small images still
        move smoothly with the robot.
        """
        if size not in self._grids:
            centres = (np.arange(size) + 0.5) / size * 2 * ARENA - ARENA
            self._grids[size] = np.meshgrid(centres, centres[::-1])
        xs, ys = self._grids[size]
        px = 2 * ARENA / size  # world units per pixel

        def disc(c: np.ndarray, r: float) -> np.ndarray:
            d = np.hypot(xs - c[0], ys - c[1])
            return np.clip((r - d) / px + 0.5, 0.0, 1.0)[..., None]

        img = np.ones((size, size, 3))
        for cover, color in (
            (disc(np.zeros(2), OBSTACLE_RADIUS), (0.45, 0.45, 0.45)),
            (disc(self.goal, _GOAL_DRAW_RADIUS), (0.1, 0.7, 0.1)),
            (disc(self.pos, _ROBOT_DRAW_RADIUS), (0.85, 0.1, 0.1)),
        ):
            img = img * (1 - cover) + cover * np.asarray(color)
        return (img * 255 + 0.5).astype(np.uint8)

    def _obs(self) -> np.ndarray:
        if self.observation == "image":
            return self.draw(self.image_size)
        return np.concatenate([self.pos, self.goal - self.pos]).astype(np.float32)

    def _info(self, success: bool, collision: bool) -> dict[str, Any]:
        return {
            "is_success": bool(success),
            "collision": bool(collision),
            "side": int(self.side),
            "distance": float(np.linalg.norm(self.pos - self.goal)),
        }


class MultimodalReachExpert:
    """Scripted demonstrator: via a waypoint left or right of the obstacle, then to the goal.

    The side is drawn with equal probability at every ``reset(seed)``, from a random stream
    separate from the env's (gymnasium seeds the env with the same seed; sharing its stream
    would tie the side to the start position and make the data unimodal given the state).
    The action is a unit-norm direction: towards the waypoint while ``y < WAYPOINT_Y - 0.05``,
    then towards the goal, slowing down to land on it.

    For the image variant the expert reads the robot and goal positions from the env (a
    privileged expert, as in most simulated imitation benchmarks); for the state variant
    it uses the observation it is given.

    Args:
        env: The env (wrapped or not).
    """

    def __init__(self, env: gym.Env | None = None) -> None:
        base = env.unwrapped if env is not None else None
        if base is not None and not isinstance(base, MultimodalReachEnv):
            from sim.experts import ExpertError

            raise ExpertError(
                f"expert 'multimodal_reach' needs a MultimodalReachEnv, got {type(base).__name__}"
            )
        self._env: MultimodalReachEnv | None = base
        self.side = 1
        self.reset()

    def reset(self, seed: int | None = None) -> None:
        """Draw the side (-1 left, +1 right) for the next episode."""
        rng = np.random.default_rng(None if seed is None else [int(seed), 0x51DE])
        self.side = -1 if rng.random() < 0.5 else 1

    def __call__(self, obs: Any) -> np.ndarray:
        """Raw observation -> ``(2,)`` float32 action with norm at most 1."""
        arr = np.asarray(obs)
        if arr.shape == (4,):
            pos = arr[:2].astype(np.float64)
            goal = pos + arr[2:].astype(np.float64)
        elif self._env is not None:
            pos, goal = self._env.pos, self._env.goal
        else:
            raise ValueError("image observations need the env: build the expert with env=")
        if pos[1] < WAYPOINT_Y - 0.05:
            target = np.array([self.side * WAYPOINT_X, WAYPOINT_Y])
            speed = 1.0
        else:
            target = goal
            speed = min(1.0, float(np.linalg.norm(goal - pos)) / MAX_STEP)
        d = target - pos
        n = float(np.linalg.norm(d))
        if n < 1e-9:
            return np.zeros(2, np.float32)
        return (d / n * speed).astype(np.float32)


def mode_summary(successes: list[bool], sides: list[int]) -> dict[str, Any]:
    """Success rate and how the successful episodes split between the two sides.

    Args:
        successes: Per-episode success.
        sides: Per-episode ``info["side"]`` of the final step.

    Returns:
        ``success_rate``, ``left``/``right`` (counts of successful episodes per side) and
        ``min_side_share`` (the smaller side's share of successes, 0 when none succeeded).
    """
    ok = [s for s, good in zip(sides, successes, strict=True) if good]
    left, right = sum(1 for s in ok if s < 0), sum(1 for s in ok if s > 0)
    n = len(successes)
    return {
        "episodes": n,
        "success_rate": sum(successes) / n if n else 0.0,
        "left": left,
        "right": right,
        "min_side_share": min(left, right) / len(ok) if ok else 0.0,
    }


class _LastInfo(gym.Wrapper):
    """Keeps the ``info`` of the latest ``step`` (the rollout loop does not return it)."""

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        out = self.env.step(action)
        self.last_info = out[4]
        return out


def evaluate_modes(
    policy: Any,
    episodes: int,
    seed: int,
    env_id: str = "il_ros/MultimodalReach-v0",
    **executor_kwargs: Any,
) -> dict[str, Any]:
    """Roll a policy out and report success and which side each success took.

    Runs through the same pieces as ``il-core eval`` (:class:`il_core.envs.GymAdapter`,
    :class:`il_core.execution.PolicyExecutor`, :func:`il_core.rollout.run_episode`); episode
    i is reset with ``seed + i``. Seed torch first for a reproducible stochastic policy.

    Args:
        policy: A loaded policy (or anything the executor accepts).
        episodes: Number of episodes.
        seed: Base seed.
        env_id: A multimodal-reach env id.
        **executor_kwargs: Passed to :class:`~il_core.execution.PolicyExecutor`.

    Returns:
        :func:`mode_summary` of the episodes, plus ``env`` and ``seed``.
    """
    from il_core.envs import GymAdapter, make_env
    from il_core.execution import PolicyExecutor
    from il_core.rollout import run_episode
    from il_core.spec import SpecError

    env = _LastInfo(make_env(env_id))
    adapter = GymAdapter(env)
    executor = PolicyExecutor(policy, **executor_kwargs)

    def act(obs: dict[str, np.ndarray]) -> np.ndarray:
        action = executor.step(obs)
        if action is None:  # Only an asynchronous executor starves (no action planned yet).
            raise SpecError(
                "evaluate_modes: the executor planned no action for this tick (asynchronous "
                "executors can starve; evaluate with a synchronous one)"
            )
        return action

    successes: list[bool] = []
    sides: list[int] = []
    try:
        for i in range(episodes):
            executor.reset()
            res = run_episode(env, adapter, act, seed + i)
            successes.append(bool(res.success))
            sides.append(int(env.last_info["side"]))
    finally:
        env.close()
        close = getattr(executor, "close", None)
        if close is not None:
            close()
    return {"env": env_id, "seed": seed, **mode_summary(successes, sides)}
