"""DriftCorridor: a compounding-error simulator where behaviour cloning from a clean expert fails.

A vehicle travels along a winding corridor and commands only its lateral velocity. The
corridor's centreline moves sideways at a seeded, smoothly varying rate ``r(t)``, so staying
centred needs a feed-forward command ``u = r``; deviations are amplified by a cross slope
(the further off the crown, the faster the vehicle slides outwards), and, in the windy
variant, a crosswind pushes it sideways (a constant bias with a random sign per episode plus
gusts). Lateral offset ``e`` evolves as::

    e[t+1] = e[t] + dt * (u[t] - r[t] + slope * e[t] + wind[t])

- Observation: ``(2,)`` float32 ``[lateral offset e (m), corridor rate r (m/s)]``.
- Action: ``(1,)`` lateral velocity command (m/s), clipped to ``[-max_command, max_command]``.
- Reward: ``1 - |e| / half_width`` per step. The episode terminates (failure) when
  ``|e| > half_width``; it is truncated (success, ``info["is_success"]``) after ``max_steps``.
- Seeded through ``reset(seed=...)``: the corridor's profile, the start offset and the wind.

Why it compounds: the clean expert (:class:`DriftCorridorExpert` in ``il_ros/DriftCorridor-v0``,
no wind, start on the centreline) drives with ``e == 0`` throughout, so its demonstrations
show only the feed-forward ``u = r`` and never a correction. A cloned policy has no data on
what to do off the centreline; in ``il_ros/DriftCorridorWindy-v0`` the wind moves it there,
the slope amplifies the offset and it leaves the corridor, whatever the number of clean
demonstrations. DAgger's rollouts visit those off-centre states and the expert labels them.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces


class DriftCorridorEnv(gym.Env):
    """Lateral tracking of a winding corridor with an unstable cross slope and crosswind.

    Args:
        control_rate_hz: Steps per simulated second (``dt = 1 / rate``).
        max_steps: Steps of a successful episode (truncation).
        half_width: Half the corridor width (m); leaving it ends the episode as a failure.
        slope: Cross-slope instability (1/s): an offset ``e`` drifts outwards at ``slope * e``.
        corridor_rate: Peak amplitude (m/s) of each of the three sinusoids of ``r(t)``.
        max_command: Bound of the lateral velocity command (m/s).
        wind_bias: Constant crosswind (m/s); its sign is drawn per episode.
        wind_noise: Standard deviation of the per-step gusts (m/s).
        initial_offset: Start offset drawn uniformly in ``[-initial_offset, initial_offset]`` m.
        render_mode: ``"rgb_array"`` or ``None``.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}

    def __init__(
        self,
        control_rate_hz: float = 10.0,
        max_steps: int = 150,
        half_width: float = 1.0,
        slope: float = 0.15,
        corridor_rate: float = 0.4,
        max_command: float = 3.0,
        wind_bias: float = 0.0,
        wind_noise: float = 0.0,
        initial_offset: float = 0.0,
        render_mode: str | None = None,
    ) -> None:
        checks = {
            "control_rate_hz": control_rate_hz > 0,
            "max_steps": max_steps >= 1,
            "half_width": half_width > 0,
            "slope": slope >= 0,
            "corridor_rate": corridor_rate >= 0,
            "max_command": max_command > 0,
            "wind_bias": wind_bias >= 0,
            "wind_noise": wind_noise >= 0,
            "initial_offset": 0 <= initial_offset < half_width,
        }
        bad = [k for k, ok in checks.items() if not ok]
        if bad:
            raise ValueError(f"DriftCorridorEnv: invalid {', '.join(bad)}")
        self.dt = 1.0 / control_rate_hz
        self.max_steps = int(max_steps)
        self.half_width = float(half_width)
        self.slope = float(slope)
        self.corridor_rate = float(corridor_rate)
        self.max_command = float(max_command)
        self.wind_bias = float(wind_bias)
        self.wind_noise = float(wind_noise)
        self.initial_offset = float(initial_offset)
        self.render_mode = render_mode
        self.metadata = {**self.metadata, "render_fps": control_rate_hz}
        high = np.array([2 * half_width, 4 * corridor_rate + 1.0], np.float32)
        self.observation_space = spaces.Box(-high, high, (2,), np.float32)
        self.action_space = spaces.Box(-self.max_command, self.max_command, (1,), np.float32)
        self._e = 0.0
        self._t = 0
        self._bias = 0.0
        # Corridor profile r(t) = sum_i a_i sin(w_i t + p_i), drawn in reset.
        self._amp = np.zeros(3)
        self._freq = np.ones(3)
        self._phase = np.zeros(3)
        self._trace: list[float] = []

    def corridor_rate_at(self, step: int) -> float:
        """The centreline's lateral velocity ``r`` (m/s) at step ``step``."""
        time = step * self.dt
        return float(np.sum(self._amp * np.sin(self._freq * time + self._phase)))

    def _obs(self) -> np.ndarray:
        return np.array([self._e, self.corridor_rate_at(self._t)], np.float32)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Draw a corridor profile, a start offset and the wind's sign (seeded)."""
        super().reset(seed=seed)
        rng = self.np_random
        self._amp = rng.uniform(0.3, 1.0, 3) * self.corridor_rate
        self._freq = rng.uniform(0.2, 1.2, 3)  # rad/s: bends every few seconds
        self._phase = rng.uniform(0, 2 * np.pi, 3)
        self._bias = self.wind_bias * (1.0 if rng.random() < 0.5 else -1.0)
        self._e = float(rng.uniform(-self.initial_offset, self.initial_offset))
        self._t = 0
        self._trace = [self._e]
        return self._obs(), {"offset": self._e, "is_success": False}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Apply the lateral velocity ``action`` ``(1,)`` for one ``dt``."""
        u = float(np.asarray(action, np.float64).reshape(-1)[0])
        u = float(np.clip(u, -self.max_command, self.max_command))
        gust = (
            self.wind_noise * float(self.np_random.standard_normal()) if self.wind_noise else 0.0
        )
        r = self.corridor_rate_at(self._t)
        self._e += self.dt * (u - r + self.slope * self._e + self._bias + gust)
        self._t += 1
        self._trace.append(self._e)
        left = abs(self._e) > self.half_width
        truncated = not left and self._t >= self.max_steps
        reward = max(0.0, 1.0 - abs(self._e) / self.half_width)
        info = {"offset": self._e, "is_success": bool(truncated)}
        return self._obs(), reward, left, truncated, info

    def render(self) -> np.ndarray | None:
        """Offset over time as a 200x300 RGB strip chart (corridor walls in grey)."""
        if self.render_mode != "rgb_array":
            return None
        h, w = 200, 300
        img = np.full((h, w, 3), 255, np.uint8)
        img[[h // 10, h - 1 - h // 10], :] = 128
        scale = (h * 0.4) / self.half_width
        for i, e in enumerate(self._trace):
            x = min(w - 1, int(i * (w - 1) / max(1, self.max_steps)))
            y = int(np.clip(h / 2 - e * scale, 0, h - 1))
            img[max(0, y - 1) : y + 2, max(0, x - 1) : x + 2] = (30, 60, 220)
        return img


class DriftCorridorExpert:
    """Feed-forward plus proportional correction: ``u = r - gain * e``, clipped.

    It reads only the observation. With the default gain (3/s against a slope of 0.15/s) an
    offset decays by about 30% per step at 10 Hz; the wind's bias leaves a steady offset of
    ``wind_bias / (gain - slope)`` (about 0.1 m in the windy variant, on a 1 m half-width).
    """

    def __init__(self, env: gym.Env | None = None, gain: float = 3.0) -> None:
        """Build the expert; ``env`` (a DriftCorridorEnv) only provides the command bound."""
        base = env.unwrapped if env is not None else None
        if base is not None and not isinstance(base, DriftCorridorEnv):
            from sim.experts import ExpertError

            raise ExpertError(
                f"expert 'drift_corridor' needs sim.drift.DriftCorridorEnv, got {type(base)}"
            )
        self.gain = float(gain)
        self.max_command = float(getattr(base, "max_command", 3.0))

    def reset(self, seed: int | None = None) -> None:
        """Stateless and deterministic: nothing to reset."""

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        """``(1,)`` float32 lateral velocity for the observation ``(2,)`` ``[e, r]``."""
        e, r = float(obs[0]), float(obs[1])
        u = np.clip(r - self.gain * e, -self.max_command, self.max_command)
        return np.array([u], np.float32)
