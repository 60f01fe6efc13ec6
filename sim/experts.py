"""Scripted experts of this package's simulators, of gymnasium's classics and of MetaWorld.

The expert protocol, the registry and the resolver live in :mod:`il_core.experts`; importing
this module registers :data:`SIM_EXPERTS` there (names) with :data:`SIM_DEFAULT_EXPERTS`
(the ``"auto"`` expert of each env id). il_core imports this package only as a plugin (the
``il_core.plugins`` entry point in ``setup.py``), never by name. :data:`EXPERTS`,
:func:`load_expert` and friends are re-exported from il_core for convenience.

Measured on gymnasium 1.4 (see ``tests/test_sim_experts.py``):

- ``mountaincar_velocity`` on ``MountainCar-v0``: 100/100 seeded episodes (seeds 0..99) reach
  the goal, 120 steps on average and at most 124 of the 200 allowed.
- ``cartpole_linear`` on ``CartPole-v1``: return 500 on 100/100 seeded episodes (seeds
  0..99) and on 1000/1000, with ``|x| <= 0.71`` (the bound is 2.4) and ``|theta| <= 0.051``.
- ``pendulum_swing_up`` on ``Pendulum-v1``: mean return about -140 on seeds 0..49 (uniformly
  random torques: about -1200); every episode ends balanced upright.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from il_core.experts import (
    DEFAULT_EXPERTS,
    EXPERTS,
    Expert,
    ExpertError,
    ExpertFactory,
    FunctionExpert,
    load_expert,
    register_expert,
)
from sim.metaworld_envs import TASKS as METAWORLD_TASKS
from sim.metaworld_envs import pixels_id, state_id
from sim.reach import PointReachExpert

__all__ = [
    "DEFAULT_EXPERTS",
    "EXPERTS",
    "CarRacingPursuitExpert",
    "CartPoleLinearExpert",
    "Expert",
    "ExpertError",
    "FunctionExpert",
    "LanePurePursuitExpert",
    "MountainCarVelocityExpert",
    "PendulumSwingUpExpert",
    "SIM_DEFAULT_EXPERTS",
    "SIM_EXPERTS",
    "load_expert",
]


def _check_spaces(
    env: gym.Env, name: str, obs_shape: tuple[int, ...], num_actions: int | None
) -> None:
    """Raise :class:`ExpertError` unless ``env`` has a Box obs of ``obs_shape``.

    Also checks for a Discrete action space with ``num_actions`` actions when one is given,
    so that ``load_expert("cartpole_linear", mountain_car_env)`` fails at load time with a
    clear message instead of producing garbage actions.
    """
    obs_space, act_space = env.observation_space, env.action_space
    ok = isinstance(obs_space, gym.spaces.Box) and obs_space.shape == obs_shape
    if num_actions is not None:
        ok = ok and isinstance(act_space, gym.spaces.Discrete) and int(act_space.n) == num_actions
    if not ok:
        env_id = env.spec.id if env.spec is not None else type(env.unwrapped).__name__
        wanted = f"a Box{obs_shape} observation"
        if num_actions is not None:
            wanted += f" and Discrete({num_actions}) action"
        raise ExpertError(
            f"expert {name!r} expects {wanted}, but {env_id} has observation space "
            f"{obs_space} and action space {act_space}"
        )


class MountainCarVelocityExpert:
    """MountainCar-v0: push in the direction of the velocity (energy pumping).

    Observation ``[position, velocity]``; actions ``0`` push left, ``1`` no push, ``2`` push
    right. Pushing along the velocity adds mechanical energy on every step, so the swing
    grows until the car clears the right hill; at ``v == 0`` (the start state) it pushes
    right. This is the classic rule; over a dense sweep of the whole start range
    (``position`` in [-0.6, -0.4], ``velocity`` 0) it reaches the goal in at most 125 steps,
    well inside the 200-step limit, so no refinement was needed.
    """

    def __init__(self, env: gym.Env | None = None) -> None:
        """Build the expert, checking the spaces of ``env`` when one is given."""
        if env is not None:
            _check_spaces(env, "mountaincar_velocity", (2,), 3)

    def reset(self, seed: int | None = None) -> None:
        """Stateless and deterministic: nothing to reset."""

    def __call__(self, obs: Any) -> int:
        """Map ``obs`` ``(2,)`` = ``[position, velocity]`` to a Discrete(3) action."""
        return 2 if float(obs[1]) >= 0.0 else 0


class CartPoleLinearExpert:
    """CartPole-v1: bang-bang linear state feedback, push right iff ``k . s > 0``.

    ``s = [x, x_dot, theta, theta_dot]``. The gains are the discrete-time LQR gains (``u =
    k . s``) of gymnasium's CartPole linearised about upright (cart 1.0 kg, pole 0.1 kg,
    half-length 0.5 m, g = 9.8, Euler step 0.02 s) with ``Q = diag(1, 1, 10, 1)`` and ``R =
    1``, rounded to three decimals. The env only has a fixed +-10 N push, so only the sign of
    ``u`` is used; the LQR direction is still the right one because it weighs the cart terms
    (which bring the cart back to the centre and keep it inside the +-2.4 m bounds) against
    the pole terms with the plant's own coupling. A hand-tuned ``[1, 1, 10, 1]`` also works
    (tighter ``|x|``) but has no derivation; ``[0, 0, 1, 1]`` (pole only) drifts out of
    bounds on some seeds.
    """

    #: ``k`` in ``push right iff k . [x, x_dot, theta, theta_dot] > 0``.
    GAINS: tuple[float, float, float, float] = (0.910, 2.143, 30.856, 7.879)

    def __init__(self, env: gym.Env | None = None, gains: tuple[float, ...] | None = None) -> None:
        """Build the expert, checking the spaces of ``env`` when one is given.

        Args:
            env: The CartPole env (optional; only used to check its spaces).
            gains: ``(4,)`` feedback gains overriding :attr:`GAINS`.
        """
        if env is not None:
            _check_spaces(env, "cartpole_linear", (4,), 2)
        self.gains = np.asarray(self.GAINS if gains is None else gains, dtype=np.float64)
        if self.gains.shape != (4,):
            raise ExpertError(f"cartpole_linear needs 4 gains, got shape {self.gains.shape}")

    def reset(self, seed: int | None = None) -> None:
        """Stateless and deterministic: nothing to reset."""

    def __call__(self, obs: Any) -> int:
        """Map ``obs`` ``(4,)`` = ``[x, x_dot, theta, theta_dot]`` to 1 (right) or 0 (left)."""
        return int(float(np.dot(self.gains, np.asarray(obs, dtype=np.float64))) > 0.0)


class PendulumSwingUpExpert:
    """Pendulum-v1: energy-pumping swing-up, then PD balance near upright.

    Observation ``[cos theta, sin theta, theta_dot]`` (theta 0 is upright), action the torque
    in ``[-2, 2]``. gymnasium's pendulum (m = l = 1, g = 10) has ``theta_ddot = 15 sin theta
    + 3 u``; its energy relative to upright is ``E = theta_dot^2 / 6 + 5 (cos theta - 1)``
    (0 when balanced at rest). Far from upright the torque pushes along the velocity with a
    gain on the missing energy (``u = clip(-2 E sign(theta_dot))``), which adds energy until
    the pendulum swings up; within ``capture`` rad of upright a PD law ``u = -(kp theta +
    kd theta_dot)`` balances it. The torque limit (2) is below ``m g l / 2`` (5), so a swing
    from rest takes a few pumps. Mean return about -140 on seeds 0..49, against about -1200
    for uniformly random torques (``tests/test_sim_experts.py``).
    """

    def __init__(
        self,
        env: gym.Env | None = None,
        capture: float = 0.6,
        kp: float = 10.0,
        kd: float = 2.0,
    ) -> None:
        """Build the expert, checking the spaces of ``env`` when one is given.

        Args:
            env: The Pendulum env (optional; only used to check its spaces).
            capture: Angle from upright (rad) below which the PD law takes over.
            kp: Proportional gain on the angle (N m / rad).
            kd: Derivative gain on the angular velocity (N m s / rad).
        """
        if env is not None:
            space = env.action_space
            _check_spaces(env, "pendulum_swing_up", (3,), None)
            if not (isinstance(space, gym.spaces.Box) and space.shape == (1,)):
                raise ExpertError(
                    f"expert 'pendulum_swing_up' needs a Box(1,) torque, got {space}"
                )
        self.cos_capture, self.kp, self.kd = float(np.cos(capture)), float(kp), float(kd)

    def reset(self, seed: int | None = None) -> None:
        """Stateless and deterministic: nothing to reset."""

    def __call__(self, obs: Any) -> np.ndarray:
        """Map ``obs`` ``(3,)`` to a ``(1,)`` float32 torque in ``[-2, 2]``."""
        cos_t, sin_t, vel = (float(v) for v in np.asarray(obs, dtype=np.float64)[:3])
        if cos_t > self.cos_capture:
            u = -(self.kp * np.arctan2(sin_t, cos_t) + self.kd * vel)
        else:
            energy = vel * vel / 6.0 + 5.0 * (cos_t - 1.0)
            # At rest (vel == 0, the usual start) push one way: sign(0) would never start.
            u = -2.0 * energy * (1.0 if vel >= 0.0 else -1.0)
        return np.array([np.clip(u, -2.0, 2.0)], dtype=np.float32)


class LanePurePursuitExpert:
    """``il_ros/LaneFollow-v0``: privileged pure pursuit of the centreline at constant speed.

    It reads the car's true pose and the track from the env (not the camera images), so it
    drives on the centreline and never has to recover: its demonstrations contain no
    off-centre frames, which is the point of the side-view augmentation experiment.
    Measured on seeds 0..49 (``tests/test_lane.py``): every lap completed, mean absolute
    lateral error about 9 mm on a road 1 m wide.
    """

    def __init__(self, env: gym.Env, lookahead: float = 0.8, speed: float | None = None) -> None:
        """Build the expert for ``env``.

        Args:
            env: A (wrapped) :class:`sim.lane.LaneFollowEnv`.
            lookahead: Look-ahead distance along the centreline (m).
            speed: Commanded speed (m/s); default: the env's ``expert_speed``.
        """
        from sim.lane import LaneFollowEnv

        base = env.unwrapped
        if not isinstance(base, LaneFollowEnv):
            raise ExpertError(
                f"expert 'lane_pure_pursuit' needs sim.lane.LaneFollowEnv, got {type(base)}"
            )
        self._env, self.lookahead, self.speed = base, float(lookahead), speed

    def reset(self, seed: int | None = None) -> None:
        """Stateless and deterministic: nothing to reset."""

    def __call__(self, obs: Any) -> np.ndarray:
        """``(2,)`` float32 ``[steering rad, speed m/s]``; ``obs`` is not used (privileged)."""
        return self._env.pure_pursuit_action(self.lookahead, self.speed)


class CarRacingPursuitExpert:
    """gymnasium ``CarRacing-v3`` (continuous): privileged pursuit of the track centreline.

    Reads the track points and the car's Box2D body from the env (needs ``gymnasium[box2d]``
    only to make the env). Steering: ``-gain * bearing`` of the centreline point
    ``lookahead`` segments ahead (CarRacing's steering is + = right, hence the sign); gas
    and brake hold a target speed that drops from ``speed`` to ``slow`` when the track
    turns by 0.6..1.6 rad over the next 20 segments. Tuned by a small sweep. Mean return 837
    on seeds 0..9 and 640 on seeds 1000..1009 (900 counts as solved): it spins out on a few
    sharp tracks (see ``examples/carracing/README.md``).
    """

    def __init__(
        self,
        env: gym.Env,
        lookahead: int = 5,
        gain: float = 2.5,
        speed: float = 90.0,
        slow: float = 40.0,
    ) -> None:
        """Build the expert for a (wrapped) ``CarRacing`` env with continuous actions."""
        base = env.unwrapped
        space = env.action_space
        if not (
            hasattr(base, "car") and isinstance(space, gym.spaces.Box) and space.shape == (3,)
        ):
            raise ExpertError(
                "expert 'carracing_pursuit' needs CarRacing-v3 with continuous=True, got "
                f"{type(base).__name__} with action space {space}"
            )
        # Duck-typed CarRacing: its class is only importable with Box2D, and its ``track`` and
        # ``car`` (Optional until reset) are read at every call, after the env was reset.
        self._env: Any = base
        self.lookahead, self.gain, self.speed, self.slow = lookahead, gain, speed, slow

    def reset(self, seed: int | None = None) -> None:
        """Stateless: the track is read from the env at every call."""

    def __call__(self, obs: Any) -> np.ndarray:
        """``(3,)`` float32 ``[steer, gas, brake]``; ``obs`` is not used (privileged)."""
        u = self._env
        track = np.array([(t[2], t[3]) for t in u.track])
        beta = np.array([t[1] for t in u.track])
        pos = np.array(u.car.hull.position)
        angle = float(u.car.hull.angle)
        i = int(np.argmin(((track - pos) ** 2).sum(1)))
        n = len(track)
        to_target = track[(i + self.lookahead) % n] - pos
        fwd = np.array([-np.sin(angle), np.cos(angle)])  # Box2D body: forward is local +y
        bearing = np.arctan2(fwd[0] * to_target[1] - fwd[1] * to_target[0], float(fwd @ to_target))
        steer = float(np.clip(-self.gain * bearing, -1.0, 1.0))
        speed = float(np.hypot(*u.car.hull.linearVelocity))
        turn = max(
            abs(float(np.remainder(beta[(i + k) % n] - beta[i] + np.pi, 2 * np.pi) - np.pi))
            for k in range(0, 20, 2)
        )
        target = float(np.interp(turn, [0.6, 1.6], [self.speed, self.slow]))
        gas = 0.4 if speed < target else 0.0
        brake = 0.6 if speed > target + 5.0 else 0.0
        return np.array([steer, gas, brake], dtype=np.float32)


def _multimodal_reach_expert(env: gym.Env) -> Expert:
    """Factory of :class:`sim.multimodal.MultimodalReachExpert` (imported when first used)."""
    from sim.multimodal import MultimodalReachExpert

    return MultimodalReachExpert(env)


def _arm_ik_expert(env: gym.Env) -> Expert:
    """Factory of :class:`sim.arm.ArmIKExpert` (imported when first used)."""
    from sim.arm import ArmIKExpert

    return ArmIKExpert(env)


def _drift_corridor_expert(env: gym.Env) -> Expert:
    """Factory of :class:`sim.drift.DriftCorridorExpert` (imported when first used)."""
    from sim.drift import DriftCorridorExpert

    return DriftCorridorExpert(env)


def _metaworld_expert(env: gym.Env) -> Expert:
    """Factory of :class:`sim.metaworld_envs.MetaWorldExpert` (metaworld imported on use)."""
    from sim.metaworld_envs import MetaWorldExpert

    return MetaWorldExpert(env)


#: This package's expert factories by name; each is called with the env and returns an
#: :class:`Expert`. Registered into :data:`il_core.experts.EXPERTS` on import.
SIM_EXPERTS: dict[str, ExpertFactory] = {
    "mountaincar_velocity": MountainCarVelocityExpert,
    "pendulum_swing_up": PendulumSwingUpExpert,
    "cartpole_linear": CartPoleLinearExpert,
    "point_reach": PointReachExpert,
    # Left or right of the obstacle with equal probability, seeded by reset(seed).
    "multimodal_reach": _multimodal_reach_expert,
    "lane_pure_pursuit": LanePurePursuitExpert,
    "carracing_pursuit": CarRacingPursuitExpert,
    # Feed-forward + proportional correction of the lateral offset (issue 6, DAgger).
    "drift_corridor": _drift_corridor_expert,
    # Damped-least-squares IK on the flange position, in the env's control mode.
    "arm_ik": _arm_ik_expert,
    # MetaWorld's scripted policy of the task; privileged (full state) on the pixel envs.
    "metaworld": _metaworld_expert,
}

#: The expert name ``"auto"`` resolves to, by gymnasium env id (into
#: :data:`il_core.experts.DEFAULT_EXPERTS` on import).
SIM_DEFAULT_EXPERTS: dict[str, str] = {
    "il_ros/PointReach-v0": "point_reach",
    "il_ros/PointReachCamera-v0": "point_reach",
    "MountainCar-v0": "mountaincar_velocity",
    "CartPole-v1": "cartpole_linear",
    "Pendulum-v1": "pendulum_swing_up",
    "il_ros/PendulumHeavy-v1": "pendulum_swing_up",
    "il_ros/MultimodalReach-v0": "multimodal_reach",
    "il_ros/MultimodalReachImage-v0": "multimodal_reach",
    "il_ros/LaneFollow-v0": "lane_pure_pursuit",
    "il_ros/LaneFollowNoisy-v0": "lane_pure_pursuit",
    "il_ros/DriftCorridor-v0": "drift_corridor",
    "il_ros/DriftCorridorWindy-v0": "drift_corridor",
    "il_ros/ArmReach-v0": "arm_ik",
    "il_ros/ArmReachVelocity-v0": "arm_ik",
    **{state_id(t): "metaworld" for t in METAWORLD_TASKS},
    **{pixels_id(t): "metaworld" for t in METAWORLD_TASKS},
    # CarRacing-v3 has no default: gymnasium[box2d] is optional, and collecting its
    # demonstrations names the driver explicitly (--expert carracing_pursuit).
}


for _name, _factory in SIM_EXPERTS.items():
    register_expert(
        _name,
        _factory,
        default_for=[i for i, n in SIM_DEFAULT_EXPERTS.items() if n == _name],
    )
