"""Simulators and scripted experts for il_ros.

Importing :mod:`sim` registers this package's own gymnasium environments (ids under the
``il_ros/`` namespace) through :func:`register_envs`, and its scripted experts with
:func:`il_core.experts.register_expert`, so ``gymnasium.make("il_ros/...")``,
:func:`il_core.envs.make_env` and ``--expert auto`` resolve them. ``il_core`` never imports
:mod:`sim`: it loads it as a plugin (the ``il_core.plugins`` entry point in ``setup.py``,
see :mod:`il_core.plugins`).

To add an environment, append an :class:`EnvRegistration` to :data:`ENV_REGISTRATIONS`
(``entry_point`` as a ``"module:Class"`` string, so the module is only imported when the env
is made).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym

from sim.experts import (
    DEFAULT_EXPERTS,
    EXPERTS,
    CartPoleLinearExpert,
    Expert,
    ExpertError,
    FunctionExpert,
    MountainCarVelocityExpert,
    load_expert,
)
from sim.metaworld_envs import MAX_PATH_LENGTH as _METAWORLD_STEPS
from sim.metaworld_envs import TASKS as METAWORLD_TASKS
from sim.metaworld_envs import pixels_id, state_id

__all__ = [
    "DEFAULT_EXPERTS",
    "DRIFT_WIND",
    "ENV_NAMESPACE",
    "ENV_REGISTRATIONS",
    "METAWORLD_TASKS",
    "EXPERTS",
    "CartPoleLinearExpert",
    "EnvRegistration",
    "Expert",
    "ExpertError",
    "FunctionExpert",
    "MountainCarVelocityExpert",
    "load_expert",
    "register_envs",
]

#: Namespace of the env ids this package registers (``"il_ros/Name-v0"``).
ENV_NAMESPACE = "il_ros"


@dataclass(frozen=True)
class EnvRegistration:
    """Arguments of one :func:`gymnasium.register` call.

    Attributes:
        id: Full env id, ``"il_ros/Name-vN"``.
        entry_point: ``"module:Class"`` string, imported lazily by gymnasium on ``make``.
        max_episode_steps: Time limit applied by gymnasium's ``TimeLimit`` wrapper.
        kwargs: Default constructor keyword arguments.
    """

    id: str
    entry_point: str
    max_episode_steps: int | None = None
    kwargs: dict[str, Any] = field(default_factory=dict)


#: Evaluation noise of ``il_ros/LaneFollowNoisy-v0`` (issue 4): a steering bias with a random
#: sign per episode plus Gaussian steering noise per step (see :mod:`sim.lane`).
LANE_EVAL_NOISE: dict[str, Any] = {
    "steering_bias": 0.25,
    "random_bias_sign": True,
    "steering_noise": 0.03,
}

#: Deployment disturbances of ``il_ros/DriftCorridorWindy-v0`` (issue 6): a crosswind with a
#: random sign per episode, gusts, and a start off the centreline (see :mod:`sim.drift`).
DRIFT_WIND: dict[str, Any] = {"wind_bias": 0.3, "wind_noise": 0.3, "initial_offset": 0.3}

#: Entry point of the ``il_ros/MetaWorld*`` envs (metaworld is imported when one is made).
_METAWORLD_ENTRY = "sim.metaworld_envs:MetaWorldEnv"

#: The envs :func:`register_envs` registers.
ENV_REGISTRATIONS: tuple[EnvRegistration, ...] = (
    # The simulated robot of the ROS loop (issue 3); a camera variant for image streams.
    EnvRegistration("il_ros/PointReach-v0", "sim.reach:PointReachEnv"),
    EnvRegistration(
        "il_ros/PointReachCamera-v0", "sim.reach:PointReachEnv", None, {"camera": True}
    ),
    # Multimodal demonstrations (issue 5): reach a goal behind an obstacle, left or right;
    # and the same task seen only through a 32x32 top-down camera.
    EnvRegistration("il_ros/MultimodalReach-v0", "sim.multimodal:MultimodalReachEnv", 60),
    EnvRegistration(
        "il_ros/MultimodalReachImage-v0",
        "sim.multimodal:MultimodalReachEnv",
        60,
        {"observation": "image"},
    ),
    # Camera-based lane following (issue 4): clean, for demonstrations, and with the
    # evaluation noise of LANE_EVAL_NOISE, for measuring drift.
    EnvRegistration("il_ros/LaneFollow-v0", "sim.lane:LaneFollowEnv"),
    EnvRegistration("il_ros/LaneFollowNoisy-v0", "sim.lane:LaneFollowEnv", None, LANE_EVAL_NOISE),
    # Compounding errors (issue 6, DAgger): the clean corridor for expert demonstrations, and
    # the windy one (DRIFT_WIND) where the learner is deployed and evaluated.
    EnvRegistration("il_ros/DriftCorridor-v0", "sim.drift:DriftCorridorEnv"),
    EnvRegistration(
        "il_ros/DriftCorridorWindy-v0", "sim.drift:DriftCorridorEnv", None, DRIFT_WIND
    ),
    # A UR5-like 6-DoF arm reaching a point (joint states, flange pose, wrist wrench): joint
    # position targets to a soft servo, what a leader arm sends; and joint velocities. BC
    # learns both from 30 demonstrations, velocities slightly better (tests/test_arm_sim.py).
    EnvRegistration("il_ros/ArmReach-v0", "sim.arm:ArmReachEnv"),
    EnvRegistration(
        "il_ros/ArmReachVelocity-v0", "sim.arm:ArmReachEnv", None, {"control": "velocity"}
    ),
    # Changed dynamics for reward transfer (issue 12, AIRL): same spaces and time limit as
    # gymnasium's Pendulum-v1, a heavier bob (sim/dynamics.py).
    EnvRegistration("il_ros/PendulumHeavy-v1", "sim.dynamics:HeavyPendulumEnv", 200),
    # MetaWorld v3 (issue 11, optional `metaworld`): every MT50 task, with the 39-d state
    # and with one 84x84 camera plus hand position and gripper opening.
    *(
        EnvRegistration(state_id(t), _METAWORLD_ENTRY, _METAWORLD_STEPS, {"task": t})
        for t in METAWORLD_TASKS
    ),
    *(
        EnvRegistration(
            pixels_id(t),
            _METAWORLD_ENTRY,
            _METAWORLD_STEPS,
            {"task": t, "observation": "pixels"},
        )
        for t in METAWORLD_TASKS
    ),
)


def register_envs() -> list[str]:
    """Register this package's gymnasium envs; safe to call any number of times.

    An id that is already in :data:`gymnasium.registry` is skipped (gymnasium would only warn
    and overwrite, but re-registering on every import of a reloaded module is noise).

    Returns:
        The ids registered by this call (empty when all were registered already).
    """
    added: list[str] = []
    for reg in ENV_REGISTRATIONS:
        if reg.id in gym.registry:
            continue
        gym.register(
            id=reg.id,
            entry_point=reg.entry_point,
            max_episode_steps=reg.max_episode_steps,
            kwargs=dict(reg.kwargs),
        )
        added.append(reg.id)
    return added


register_envs()
