"""gymnasium's pendulum with changed dynamics, for reward-transfer experiments.

A learned reward that is disentangled from the dynamics (AIRL's state-only ``g(s)``,
:mod:`il_core.algos.airl`) should still mean the same task when the robot's body changes,
while a cloned policy encodes the old body's torques. ``il_ros/PendulumHeavy-v1`` keeps the
observation, action space and time limit of ``Pendulum-v1`` and makes the bob heavier, 1.0
-> 1.3 kg: the gravity torque grows by 30% against the same 2 N m torque limit, so a
swing-up needs other pumps and a balance more torque. (A heavier, longer CartPole pole was
tried too: every policy still balances it, so it tells nothing.)
"""

from __future__ import annotations

from typing import Any

from gymnasium.envs.classic_control.pendulum import PendulumEnv

__all__ = ["HeavyPendulumEnv"]


class HeavyPendulumEnv(PendulumEnv):
    """``Pendulum-v1`` with a heavier bob (``mass`` kg, gymnasium's is 1.0)."""

    def __init__(self, render_mode: str | None = None, mass: float = 1.3, **kwargs: Any) -> None:
        super().__init__(render_mode=render_mode, **kwargs)
        self.m = float(mass)  # read by PendulumEnv.step's dynamics
