"""ArmReach: a 6-DoF UR5-like arm reaching a point goal, the simulated robot arm of the ROS loop.

Kinematic only and numpy only (pendulum-sized): the nodes under test are a leader-arm teleop
and the arm observations (joint states, end-effector pose, a wrist force/torque sensor), so
the sim gives each of those streams a physically meaningful value without any dynamics.

Kinematics: standard Denavit-Hartenberg parameters of the Universal Robots UR5 (UR's published
values; link ``i`` is ``Rz(theta_i) Tz(d_i) Tx(a_i) Rx(alpha_i)``)::

    joint  name              d (m)      a (m)      alpha (rad)
    1      shoulder_pan      0.089159   0          pi/2
    2      shoulder_lift     0          -0.425     0
    3      elbow             0          -0.39225   0
    4      wrist_1           0.10915    0          pi/2
    5      wrist_2           0.09465    0          -pi/2
    6      wrist_3           0.0823     0          0

The end effector is the flange (DH frame 6). At ``q = 0`` the arm is stretched along -x and
the flange is at ``(-0.81725, -0.19145, -0.005491)`` m. Joint limits are ``[-pi, pi]`` on
every joint: narrower than the real UR5's +-2 pi on five joints, so that a joint angle has one
meaning (no wrap-around) when a leader arm is mapped onto it. There is no collision model.

- Observation (``Dict``):

  - ``joints`` (6,) float32: joint positions (rad), within the limits.
  - ``ee_pose`` (7,) float32: flange position ``x, y, z`` (m, base frame), then its
    orientation as a unit quaternion ``x, y, z, w``, of the two signs the one closer to
    :data:`HOME_QUATERNION` (``w`` is 0 at home, so ``w >= 0`` would flip it there).
  - ``wrench`` (6,) float32: wrist force/torque sensor in the flange frame, force ``x, y, z``
    (N) then torque ``x, y, z`` (N m): the static load of a tool of mass ``tool_mass`` whose
    centre of mass is at ``tool_com`` in the flange frame, ``F = R^T (0, 0, -m g)`` and
    ``tau = r x F`` (``R`` the flange orientation in the base frame), so it changes with the
    orientation and ``|F| = m g``. Optional Gaussian sensor noise, seeded by ``reset``;
    readings saturate at :data:`WRENCH_RANGE`. No dynamic (acceleration) load: the arm is
    kinematic.
  - ``goal`` (3,) float32: target position of the flange (m, base frame).

- Action: ``control="position"`` (default): absolute joint targets (6,) rad within the
  limits, what a leader arm commands. The servo is first order per joint with a rate limit:
  each step a joint moves ``dt / servo_time_constant`` of the way to its target (all the way
  when the constant is at most ``dt``), but by at most ``max_joint_speed * dt``. The default
  1 s is a soft, compliant servo on purpose: a target then leads the joints by one second
  of motion (``target - q`` is the joint velocity in rad/s), so an error ``e`` in a learned
  absolute target moves the arm by only ``e * dt / 1 s`` per step. With a stiff servo
  (``servo_time_constant=0``, the target reached within one step) the motion is the small
  difference of two large numbers and BC from 30 demonstrations succeeds on 30-40% of
  episodes instead of 87-97% (``tests/test_arm_sim.py``).
  ``control="velocity"``: joint velocities (6,) rad/s in ``[-max_joint_speed,
  max_joint_speed]``, integrated over ``dt``. Actions out of bounds are clipped, and the
  joints always stay within the limits.
- Episodes: the start is the home pose (tool pointing down) plus a uniform perturbation of
  +-``start_noise`` rad per joint; the goal is the flange position of another configuration,
  home plus +-``goal_range`` rad per joint, at least :data:`MIN_GOAL_DISTANCE` from the start
  and :data:`MIN_GOAL_HEIGHT` above the base plane, so it is always reachable.
  With the defaults the goal is 0.15-0.35 m from the start: a small workspace on purpose,
  so that behaviour cloning from about 30 demonstrations generalises to new goals (see
  ``tests/test_arm_sim.py``). Wider ranges need more: from 30 demonstrations BC reached
  83-90% with ``goal_range=0.3`` and under 50% with ``0.6`` (150 demonstrations: 96%).
- Reward: minus the flange-to-goal distance. Success (``info["is_success"]``, terminates):
  within ``goal_tolerance`` of the goal. Time limit: ``max_steps`` (truncation). ``info``
  also reports ``distance`` (m).

:class:`ArmIKExpert` is the scripted expert (damped-least-squares inverse kinematics).
"""

from __future__ import annotations

from typing import Any, Literal

import cv2
import gymnasium as gym
import numpy as np
from gymnasium import spaces

from sim.experts import ExpertError

__all__ = [
    "DH_A",
    "DH_ALPHA",
    "DH_D",
    "HOME",
    "HOME_QUATERNION",
    "JOINT_LIMITS",
    "JOINT_NAMES",
    "WRENCH_RANGE",
    "ArmIKExpert",
    "ArmReachEnv",
    "forward_kinematics",
    "joint_frames",
    "position_jacobian",
    "rotation_to_quaternion",
    "tool_wrench",
]

#: Standard DH parameters of the UR5 (m, m, rad), one entry per joint.
DH_D = np.array([0.089159, 0.0, 0.0, 0.10915, 0.09465, 0.0823])
DH_A = np.array([0.0, -0.425, -0.39225, 0.0, 0.0, 0.0])
DH_ALPHA = np.array([np.pi / 2, 0.0, 0.0, np.pi / 2, -np.pi / 2, 0.0])

#: The UR joint names, in order (for the ``name`` field of a ``sensor_msgs/JointState``).
JOINT_NAMES = (
    "shoulder_pan",
    "shoulder_lift",
    "elbow",
    "wrist_1",
    "wrist_2",
    "wrist_3",
)

#: ``(2, 6)`` lower and upper joint limits (rad).
JOINT_LIMITS = np.array([[-np.pi] * 6, [np.pi] * 6])

#: Home configuration (rad): upper arm vertical, forearm horizontal, tool pointing straight
#: down, flange at about
#: ``(-0.487, -0.109, 0.432)`` m. Away from the wrist (``q5 = 0``), elbow (``q3 = 0``) and
#: shoulder (wrist centre on the base axis) singularities, so nearby starts are well
#: conditioned.
HOME = np.array([0.0, -np.pi / 2, np.pi / 2, -np.pi / 2, -np.pi / 2, 0.0])

#: Flange orientation at :data:`HOME`, ``(x, y, z, w) = (1, 1, 0, 0) / sqrt(2)``: a half
#: turn, so ``w = 0`` there and a ``w >= 0`` convention would flip the sign of the observed
#: quaternion back and forth around home. Observations take the sign closest to this one
#: instead; the flip then only happens half a turn away from the home orientation, which
#: episodes (within about 0.35 rad of home per joint) never reach; a teleoperator can.
HOME_QUATERNION = np.array([np.sqrt(0.5), np.sqrt(0.5), 0.0, 0.0])

#: Minimum start-to-goal distance of the flange (m).
MIN_GOAL_DISTANCE = 0.15
#: Minimum goal height above the base plane (m): keeps goals off the table the base sits on.
MIN_GOAL_HEIGHT = 0.05
#: Standard gravity (m/s^2).
GRAVITY = 9.81
#: ``(6,)`` rated range of the wrist sensor, ``+-300 N`` and ``+-30 N m`` per axis (that of a
#: common UR wrist sensor, the Robotiq FT 300); readings saturate there.
WRENCH_RANGE = np.array([300.0] * 3 + [30.0] * 3, np.float32)
#: Half-width of the position part of the ``ee_pose`` and ``goal`` boxes (m): more than the
#: UR5's reach (sum of the DH lengths, 1.19 m).
WORKSPACE_BOUND = 1.25


def joint_frames(q: np.ndarray) -> np.ndarray:
    """Base-frame poses of the DH frames 0..6 for joint positions ``q``.

    Args:
        q: ``(6,)`` joint positions (rad).

    Returns:
        ``(7, 4, 4)`` float64 homogeneous transforms; ``[0]`` is the base (identity) and
        ``[6]`` the flange.
    """
    q = np.asarray(q, dtype=np.float64).reshape(6)
    frames = np.empty((7, 4, 4))
    frames[0] = np.eye(4)
    ca, sa = np.cos(DH_ALPHA), np.sin(DH_ALPHA)
    for i in range(6):
        ct, st = np.cos(q[i]), np.sin(q[i])
        link = np.array(
            [
                [ct, -st * ca[i], st * sa[i], DH_A[i] * ct],
                [st, ct * ca[i], -ct * sa[i], DH_A[i] * st],
                [0.0, sa[i], ca[i], DH_D[i]],
                [0.0, 0.0, 0.0, 1.0],
            ]
        )
        frames[i + 1] = frames[i] @ link
    return frames


def forward_kinematics(q: np.ndarray) -> np.ndarray:
    """Flange pose in the base frame.

    Args:
        q: ``(6,)`` joint positions (rad).

    Returns:
        ``(4, 4)`` float64 homogeneous transform.
    """
    return joint_frames(q)[6]


def position_jacobian(q: np.ndarray) -> np.ndarray:
    """Analytic Jacobian of the flange position with respect to the joints.

    For revolute joint ``i`` (axis ``z_{i-1}`` through ``p_{i-1}``, both of DH frame ``i-1``)
    the column is ``z_{i-1} x (p_flange - p_{i-1})``.

    Args:
        q: ``(6,)`` joint positions (rad).

    Returns:
        ``(3, 6)`` float64, m/rad.
    """
    frames = joint_frames(q)
    axes, origins = frames[:6, :3, 2], frames[:6, :3, 3]
    return np.cross(axes, frames[6, :3, 3] - origins).T


def rotation_to_quaternion(rot: np.ndarray, reference: np.ndarray | None = None) -> np.ndarray:
    """Rotation matrix to unit quaternion ``(x, y, z, w)``, sign fixed by a reference.

    Shepperd's method: branch on the largest of ``w, x, y, z`` so the square root is never
    taken of a number near zero (the naive trace formula loses precision near 180 degrees).

    Args:
        rot: ``(3, 3)`` rotation matrix.
        reference: ``(4,)`` quaternion; of the two equivalent signs ``q`` and ``-q`` the one
            with ``dot(q, reference) >= 0`` is returned. Default ``(0, 0, 0, 1)``: ``w >= 0``.

    Returns:
        ``(4,)`` float64 quaternion, unit norm.
    """
    m = np.asarray(rot, dtype=np.float64)
    trace = m[0, 0] + m[1, 1] + m[2, 2]
    diag = (trace, m[0, 0], m[1, 1], m[2, 2])
    k = int(np.argmax(diag))
    if k == 0:
        s = 2.0 * np.sqrt(1.0 + trace)
        quat = [(m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s, s / 4]
    elif k == 1:
        s = 2.0 * np.sqrt(1.0 + m[0, 0] - m[1, 1] - m[2, 2])
        quat = [s / 4, (m[0, 1] + m[1, 0]) / s, (m[0, 2] + m[2, 0]) / s, (m[2, 1] - m[1, 2]) / s]
    elif k == 2:
        s = 2.0 * np.sqrt(1.0 + m[1, 1] - m[0, 0] - m[2, 2])
        quat = [(m[0, 1] + m[1, 0]) / s, s / 4, (m[1, 2] + m[2, 1]) / s, (m[0, 2] - m[2, 0]) / s]
    else:
        s = 2.0 * np.sqrt(1.0 + m[2, 2] - m[0, 0] - m[1, 1])
        quat = [(m[0, 2] + m[2, 0]) / s, (m[1, 2] + m[2, 1]) / s, s / 4, (m[1, 0] - m[0, 1]) / s]
    q = np.asarray(quat)
    q /= np.linalg.norm(q)
    ref = np.array([0.0, 0.0, 0.0, 1.0]) if reference is None else np.asarray(reference)
    return -q if float(q @ ref) < 0 else q


def tool_wrench(rot: np.ndarray, mass: float, com: np.ndarray) -> np.ndarray:
    """Static wrench that a tool's weight puts on a wrist sensor, in the sensor frame.

    Args:
        rot: ``(3, 3)`` sensor (flange) orientation in the base frame, z up.
        mass: Tool mass (kg).
        com: ``(3,)`` tool centre of mass in the sensor frame (m).

    Returns:
        ``(6,)`` float64 ``[Fx, Fy, Fz, Tx, Ty, Tz]`` (N, N m): ``F = R^T (0, 0, -m g)`` and
        ``tau = com x F``.
    """
    force = np.asarray(rot).T @ np.array([0.0, 0.0, -mass * GRAVITY])
    return np.concatenate([force, np.cross(np.asarray(com, dtype=np.float64), force)])


class ArmReachEnv(gym.Env):
    """A UR5-like arm moving its flange to a goal position (see the module docstring).

    Args:
        control: ``"position"`` (absolute joint targets, rate-limited) or ``"velocity"``
            (joint velocities).
        servo_time_constant: Time constant of the first-order position servo (s); at most
            ``dt`` (0 included) reaches the target within one step, rate limit permitting.
        control_rate_hz: Steps per simulated second (``dt = 1 / rate``).
        max_joint_speed: Per-joint speed limit (rad/s) of both control modes.
        goal_tolerance: Success radius of the flange (m).
        max_steps: Episode length limit (truncation).
        start_noise: Half-width of the uniform per-joint perturbation of the start around
            :data:`HOME` (rad).
        goal_range: Half-width of the uniform per-joint perturbation around :data:`HOME` of
            the configuration whose flange position is the goal (rad).
        tool_mass: Mass of the tool on the wrist sensor (kg).
        tool_com: ``(3,)`` tool centre of mass in the flange frame (m).
        force_noise_std: Std of the Gaussian noise on each force reading (N).
        torque_noise_std: Std of the Gaussian noise on each torque reading (N m).
        render_mode: ``"rgb_array"`` or ``None``.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 20}

    def __init__(
        self,
        control: Literal["position", "velocity"] = "position",
        control_rate_hz: float = 20.0,
        max_joint_speed: float = 1.0,
        goal_tolerance: float = 0.02,
        max_steps: int = 150,
        servo_time_constant: float = 1.0,
        start_noise: float = 0.1,
        goal_range: float = 0.25,
        tool_mass: float = 1.0,
        tool_com: tuple[float, float, float] = (0.0, 0.0, 0.05),
        force_noise_std: float = 0.0,
        torque_noise_std: float = 0.0,
        render_mode: str | None = None,
    ) -> None:
        if control not in ("position", "velocity"):
            raise ValueError(f"control must be 'position' or 'velocity', got {control!r}")
        if control_rate_hz <= 0 or max_joint_speed <= 0 or goal_tolerance <= 0:
            raise ValueError("control_rate_hz, max_joint_speed and goal_tolerance must be > 0")
        if render_mode not in (None, *self.metadata["render_modes"]):
            raise ValueError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")
        self.control = control
        self.dt = 1.0 / float(control_rate_hz)
        self.max_joint_speed = float(max_joint_speed)
        self.goal_tolerance = float(goal_tolerance)
        self.max_steps = int(max_steps)
        if servo_time_constant < 0:
            raise ValueError(f"servo_time_constant must be >= 0, got {servo_time_constant}")
        self.servo_time_constant = float(servo_time_constant)
        self.start_noise = float(start_noise)
        self.goal_range = float(goal_range)
        self.tool_mass = float(tool_mass)
        self.tool_com = np.asarray(tool_com, dtype=np.float64).reshape(3)
        self.force_noise_std = float(force_noise_std)
        self.torque_noise_std = float(torque_noise_std)
        self.render_mode = render_mode
        self.metadata = {**self.metadata, "render_fps": float(control_rate_hz)}

        low, high = JOINT_LIMITS.astype(np.float32)
        pos_bound = np.full(3, WORKSPACE_BOUND, np.float32)
        pose_bound = np.concatenate([pos_bound, np.ones(4, np.float32)])
        self.observation_space = spaces.Dict(
            {
                "joints": spaces.Box(low, high, (6,), np.float32),
                "ee_pose": spaces.Box(-pose_bound, pose_bound, (7,), np.float32),
                "wrench": spaces.Box(-WRENCH_RANGE, WRENCH_RANGE, (6,), np.float32),
                "goal": spaces.Box(-pos_bound, pos_bound, (3,), np.float32),
            }
        )
        self.action_space: spaces.Box
        if control == "position":
            self.action_space = spaces.Box(low, high, (6,), np.float32)
        else:
            v = np.full(6, self.max_joint_speed, np.float32)
            self.action_space = spaces.Box(-v, v, (6,), np.float32)
        self.q = HOME.copy()
        self.goal = forward_kinematics(HOME)[:3, 3].copy()
        self._steps = 0

    # Helpers -----------------------------------------------------------------------------

    @property
    def servo_gain(self) -> float:
        """Fraction of the joint error to its target the position servo removes per step."""
        tau = self.servo_time_constant
        return 1.0 if tau <= self.dt else self.dt / tau

    def _clip_joints(self, q: np.ndarray) -> np.ndarray:
        return np.clip(q, JOINT_LIMITS[0], JOINT_LIMITS[1])

    def _distance(self) -> float:
        return float(np.linalg.norm(forward_kinematics(self.q)[:3, 3] - self.goal))

    def _obs(self) -> dict[str, np.ndarray]:
        pose = forward_kinematics(self.q)
        wrench = tool_wrench(pose[:3, :3], self.tool_mass, self.tool_com)
        if self.force_noise_std > 0 or self.torque_noise_std > 0:
            std = np.repeat([self.force_noise_std, self.torque_noise_std], 3)
            wrench = wrench + std * self.np_random.standard_normal(6)
        # A real sensor saturates at its rated range; with the default tool it never does.
        wrench = np.clip(wrench, -WRENCH_RANGE, WRENCH_RANGE)
        ee_pose = np.concatenate(
            [pose[:3, 3], rotation_to_quaternion(pose[:3, :3], HOME_QUATERNION)]
        )
        return {
            "joints": self.q.astype(np.float32),
            "ee_pose": ee_pose.astype(np.float32),
            "wrench": wrench.astype(np.float32),
            "goal": self.goal.astype(np.float32),
        }

    # Gymnasium API -----------------------------------------------------------------------

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Start a new episode with a random start near home and a reachable goal (seeded)."""
        super().reset(seed=seed)
        rng = self.np_random
        q = self._clip_joints(HOME + rng.uniform(-self.start_noise, self.start_noise, 6))
        start = forward_kinematics(q)[:3, 3]
        # Rejection sampling: about 1 draw in 3 is accepted with the default ranges.
        while True:
            q_goal = self._clip_joints(HOME + rng.uniform(-self.goal_range, self.goal_range, 6))
            goal = forward_kinematics(q_goal)[:3, 3]
            if goal[2] >= MIN_GOAL_HEIGHT and np.linalg.norm(goal - start) >= MIN_GOAL_DISTANCE:
                break
        self.q, self.goal, self._steps = q, goal, 0
        return self._obs(), {"distance": self._distance(), "is_success": False}

    def step(
        self, action: np.ndarray
    ) -> tuple[dict[str, np.ndarray], float, bool, bool, dict[str, Any]]:
        """Move the joints for one ``dt`` towards the target (position) or at ``action``."""
        a = np.clip(
            np.asarray(action, np.float64).reshape(6),
            self.action_space.low,
            self.action_space.high,
        )
        max_step = self.max_joint_speed * self.dt
        if self.control == "position":
            dq = np.clip(self.servo_gain * (a - self.q), -max_step, max_step)
        else:
            dq = a * self.dt
        self.q = self._clip_joints(self.q + dq)
        self._steps += 1
        dist = self._distance()
        success = dist <= self.goal_tolerance
        truncated = not success and self._steps >= self.max_steps
        info = {"distance": dist, "is_success": success}
        return self._obs(), -dist, success, truncated, info

    def render(self) -> np.ndarray | None:
        """A ``(160, 320, 3)`` RGB frame in ``rgb_array`` mode: top view left, side right."""
        if self.render_mode != "rgb_array":
            return None
        return self.draw(160)

    def draw(self, size: int) -> np.ndarray:
        """Top (x-y) and side (x-z) views of the links and the goal.

        Args:
            size: Side of each square view in pixels.

        Returns:
            ``(size, 2 * size, 3)`` uint8: light floor, grey links, blue joints, green goal.
        """
        img = np.full((size, 2 * size, 3), 235, np.uint8)
        points = joint_frames(self.q)[:, :3, 3]
        # +-0.9 m: the reachable region of the episodes with room to spare, larger on screen
        # than the full reach would be.
        half = 0.9
        scale = (size - 1) / (2 * half)

        def px(u: float, v: float, view: int) -> tuple[int, int]:
            return (
                int(round((u + half) * scale)) + view * size,
                int(round((half - v) * scale)),
            )

        for view, (iu, iv) in enumerate(((0, 1), (0, 2))):
            pts = [px(p[iu], p[iv], view) for p in points]
            for p0, p1 in zip(pts[:-1], pts[1:], strict=True):
                cv2.line(img, p0, p1, (110, 110, 110), max(1, size // 60), cv2.LINE_AA)
            for p in pts:
                cv2.circle(img, p, max(1, size // 64), (40, 70, 200), -1, cv2.LINE_AA)
            goal = px(self.goal[iu], self.goal[iv], view)
            cv2.circle(img, goal, max(2, size // 40), (0, 160, 0), -1, cv2.LINE_AA)
        cv2.line(img, (size, 0), (size, size - 1), (0, 0, 0), 1)
        return img


class ArmIKExpert:
    """Damped-least-squares inverse kinematics on the flange position, from the observation.

    It reads only ``joints`` and ``goal``, like a policy would, and each step:

    1. ``dx = gain * (goal - fk(q))``, its norm clipped to ``max_cartesian_step`` so that the
       first-order model stays valid for far goals (with the defaults it never binds: goals
       are at most about 0.35 m away);
    2. ``dq = J# dx + (I - J# J) posture_gain (HOME - q)``, ``J# = J^T (J J^T + damping^2
       I)^-1`` the damped pseudo-inverse of the ``(3, 6)`` position Jacobian: the
       minimum-norm joint step, bounded near singularities, plus a pull towards the home
       posture in the 3-D null space (the orientation) that does not disturb the flange;
    3. ``dq`` is scaled down (as a whole, keeping its Cartesian direction) until every joint
       step is within ``max_joint_speed * dt``, the env's own limit, so the env executes it.

    Output, for the env's control mode: position control, the target ``q + dq / g`` clipped
    to the joint limits, with ``g`` the env's :attr:`ArmReachEnv.servo_gain` (the fraction
    of the way to its target the servo moves per step), so the servo executes exactly
    ``dq``; velocity control, ``dq / dt``. Both modes give the same motion.

    The gains are chosen for behaviour cloning, not speed (``tests/test_arm_sim.py``): a low
    ``gain`` gives long, smooth, nearly linear approaches, and the posture term makes the
    joint configuration a function of the flange position, so the wrist does not wander in
    the null space where nothing in the demonstrations corrects it. Without the posture term
    BC from 30 demonstrations succeeds on 62-79% of held-out episodes instead of 96-98%.
    """

    def __init__(
        self,
        env: gym.Env,
        gain: float = 0.07,
        posture_gain: float = 0.2,
        damping: float = 0.05,
        max_cartesian_step: float = 0.05,
    ) -> None:
        """Build the expert for a (wrapped) :class:`ArmReachEnv`.

        Args:
            env: The env; its control mode, ``dt`` and joint speed limit are read once.
            gain: Fraction of the position error corrected per step (1/step).
            posture_gain: Fraction of the null-space distance to :data:`HOME` corrected per
                step (1/step).
            damping: DLS damping ``lambda`` (m).
            max_cartesian_step: Largest Cartesian step asked of the IK per step (m).

        Raises:
            ExpertError: ``env`` is not an :class:`ArmReachEnv`.
        """
        base = env.unwrapped
        if not isinstance(base, ArmReachEnv):
            raise ExpertError(f"expert 'arm_ik' needs sim.arm.ArmReachEnv, got {type(base)}")
        self.control = base.control
        self.dt = base.dt
        self.servo_gain = base.servo_gain
        self.max_joint_speed = base.max_joint_speed
        self.gain, self.posture_gain = float(gain), float(posture_gain)
        self.damping, self.max_cartesian_step = float(damping), float(max_cartesian_step)

    def reset(self, seed: int | None = None) -> None:
        """Stateless and deterministic: nothing to reset."""

    def joint_step(self, q: np.ndarray, goal: np.ndarray) -> np.ndarray:
        """The joint step towards a goal.

        Args:
            q: ``(6,)`` joint positions (rad).
            goal: ``(3,)`` goal position of the flange (m, base frame).

        Returns:
            ``(6,)`` float64 joint step (rad), each entry within ``max_joint_speed * dt``.
        """
        q = np.asarray(q, np.float64)
        dx = self.gain * (np.asarray(goal, np.float64) - forward_kinematics(q)[:3, 3])
        norm = float(np.linalg.norm(dx))
        if norm > self.max_cartesian_step:
            dx *= self.max_cartesian_step / norm
        jac = position_jacobian(q)
        pinv = jac.T @ np.linalg.inv(jac @ jac.T + self.damping**2 * np.eye(3))
        dq = pinv @ dx + (np.eye(6) - pinv @ jac) @ (self.posture_gain * (HOME - q))
        peak = float(np.max(np.abs(dq))) / (self.max_joint_speed * self.dt)
        return dq / peak if peak > 1.0 else dq

    def __call__(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        """``(6,)`` float32 action for the raw observation dict, in the env's control mode."""
        q = np.asarray(obs["joints"], np.float64)
        dq = self.joint_step(q, obs["goal"])
        if self.control == "position":
            action = np.clip(q + dq / self.servo_gain, JOINT_LIMITS[0], JOINT_LIMITS[1])
        else:
            action = np.clip(dq / self.dt, -self.max_joint_speed, self.max_joint_speed)
        return action.astype(np.float32)
