"""PointReach: a holonomic point robot driving to a goal, the simulated robot of the ROS loop.

Small on purpose (pendulum-sized): the ROS nodes, not the task, are under test. The robot
is commanded in velocity (what a ``geometry_msgs/Twist`` carries), sees its position (what
odometry gives) and the goal, and optionally a small top-down camera image, so every kind of
stream the nodes handle is exercised.

- Observation (``Dict``): ``position`` (2,) m, ``goal`` (2,) m, and with ``camera=True``
  ``camera`` (H, W, 3) uint8 rendered top-down with OpenCV.
- Action: velocity ``(vx, vy)`` in m/s, clipped to ``[-max_speed, max_speed]``.
- Reward: minus the distance to the goal per step. Success (``info["is_success"]``): within
  ``goal_tolerance`` of the goal; the episode then terminates. Time limit: ``max_steps``.
- Seeded through ``reset(seed=...)``; start and goal are at least 0.5 m apart.
"""

from __future__ import annotations

from typing import Any

import cv2
import gymnasium as gym
import numpy as np
from gymnasium import spaces


class PointReachEnv(gym.Env):
    """Point robot reaching a goal in the square ``[-1, 1]^2``.

    Args:
        control_rate_hz: Steps per simulated second (``dt = 1 / rate``).
        max_speed: Velocity limit per axis (m/s).
        goal_tolerance: Success radius (m).
        max_steps: Episode length limit (truncation).
        camera: Add a top-down ``camera`` image to the observation.
        image_size: Camera image side in pixels.
        render_mode: ``"rgb_array"`` or ``None``.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 20}

    def __init__(
        self,
        control_rate_hz: float = 20.0,
        max_speed: float = 1.0,
        goal_tolerance: float = 0.05,
        max_steps: int = 200,
        camera: bool = False,
        image_size: int = 64,
        render_mode: str | None = None,
    ) -> None:
        self.dt = 1.0 / control_rate_hz
        self.max_speed = float(max_speed)
        self.goal_tolerance = float(goal_tolerance)
        self.max_steps = int(max_steps)
        self.camera = camera
        self.image_size = int(image_size)
        self.render_mode = render_mode
        self.metadata = {**self.metadata, "render_fps": control_rate_hz}
        box = spaces.Box(-1.0, 1.0, (2,), np.float32)
        obs: dict[str, spaces.Space] = {"position": box, "goal": box}
        if camera:
            obs["camera"] = spaces.Box(0, 255, (image_size, image_size, 3), np.uint8)
        self.observation_space = spaces.Dict(obs)
        self.action_space = spaces.Box(-self.max_speed, self.max_speed, (2,), np.float32)
        self._pos = np.zeros(2, np.float32)
        self._goal = np.zeros(2, np.float32)
        self._steps = 0

    def _obs(self) -> dict[str, np.ndarray]:
        obs = {"position": self._pos.copy(), "goal": self._goal.copy()}
        if self.camera:
            obs["camera"] = self._draw(self.image_size)
        return obs

    def _draw(self, size: int) -> np.ndarray:
        """Top-down view: grey floor, green goal disc, blue robot disc. ``(size, size, 3)``."""
        img = np.full((size, size, 3), 200, np.uint8)

        def px(p: np.ndarray) -> tuple[int, int]:
            return (
                int(round((p[0] + 1) / 2 * (size - 1))),
                int(round((1 - p[1]) / 2 * (size - 1))),
            )

        r = max(2, size // 16)
        cv2.circle(img, px(self._goal), r, (0, 170, 0), -1, lineType=cv2.LINE_AA)
        cv2.circle(img, px(self._pos), r, (30, 60, 220), -1, lineType=cv2.LINE_AA)
        return img

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Start a new episode with a random start and goal (seeded)."""
        super().reset(seed=seed)
        while True:
            pos = self.np_random.uniform(-0.9, 0.9, 2).astype(np.float32)
            goal = self.np_random.uniform(-0.9, 0.9, 2).astype(np.float32)
            if np.linalg.norm(goal - pos) >= 0.5:
                break
        self._pos, self._goal, self._steps = pos, goal, 0
        return self._obs(), {"distance": float(np.linalg.norm(goal - pos)), "is_success": False}

    def step(
        self, action: np.ndarray
    ) -> tuple[dict[str, np.ndarray], float, bool, bool, dict[str, Any]]:
        """Move with velocity ``action`` for one ``dt``."""
        a = np.clip(np.asarray(action, np.float32), -self.max_speed, self.max_speed)
        self._pos = np.clip(self._pos + a * self.dt, -1.0, 1.0).astype(np.float32)
        self._steps += 1
        dist = float(np.linalg.norm(self._goal - self._pos))
        success = dist <= self.goal_tolerance
        truncated = not success and self._steps >= self.max_steps
        info = {"distance": dist, "is_success": success}
        return self._obs(), -dist, success, truncated, info

    def render(self) -> np.ndarray | None:
        """An RGB frame (256x256) in ``rgb_array`` mode."""
        return self._draw(256) if self.render_mode == "rgb_array" else None


class PointReachExpert:
    """Privileged expert: proportional velocity towards the goal, saturated.

    ``v = clip(gain * (goal - position), -max_speed, max_speed)``; with gain 3 at 20 Hz it
    reaches the 5 cm tolerance in about 30-50 steps from 0.5-2.5 m away.
    """

    def __init__(self, env: gym.Env | None = None, gain: float = 3.0) -> None:
        self.gain = gain
        base = env.unwrapped if env is not None else None
        self.max_speed = float(getattr(base, "max_speed", 1.0))

    def reset(self, seed: int | None = None) -> None:
        """Stateless; nothing to reset."""

    def __call__(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        """Velocity command ``(2,)`` for the raw observation dict."""
        err = np.asarray(obs["goal"], np.float32) - np.asarray(obs["position"], np.float32)
        return np.clip(self.gain * err, -self.max_speed, self.max_speed).astype(np.float32)
