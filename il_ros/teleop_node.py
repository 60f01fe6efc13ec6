"""Human teleop: a gamepad, a Twist device or a leader arm drives the robot's command.

``source`` picks what produces the action (one value per command dimension of the mapping):

- ``joy``: ``sensor_msgs/Joy`` axes, ``action[i] = scales[i] * joy.axes[axes[i]] +
  offsets[i]`` after a deadzone (``axes`` entry -1: that dimension stays at its offset);
- ``twist``: a ``geometry_msgs/Twist`` (or ``TwistStamped``) from a spacemouse or keyboard
  teleop, the fields ``twist_fields`` scaled onto the command;
- ``leader``: a leader arm's ``sensor_msgs/JointState``, the positions of ``leader_joints``
  scaled and offset onto the follower's joint command.

Whatever the source, Joy buttons (``joy_topic``; empty = no Joy) give a deadman
(``deadman_button``): the command is the source's only while it is held, else zero (for
``safe_stop: zero`` commands) or nothing at all (``hold`` commands: publishing zeros to a
position controller would move the arm). Whether the operator's command passes (the button
held and the source's input fresh) is published as ``std_msgs/Bool`` on ``deadman_topic``
(latched, on change) for the recorder's labels and the DAgger gate: released before an idle
command, held after the operator's first. Buttons
publish ``start``, ``stop``, ``discard``, ``success`` and ``failure`` on
:data:`~il_ros.common.EPISODE_CONTROL_TOPIC` when pressed (edge-triggered). A source or Joy
message older than ``input_timeout_s`` counts as absent (deadman released). Malformed input
(too few axes or buttons, NaN, missing joints) is counted, logged (throttled) and commands
zero; it never stops the node.

The mapping from inputs to actions (:class:`AxesMapper`, :class:`TwistMapper`,
:class:`LeaderMapper`, :class:`JoyButtons`) is plain Python, tested without ROS in
``tests/test_teleop_mapping.py``.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from rclpy.node import Node
from rclpy.publisher import Publisher
from std_msgs.msg import Bool, String

from il_core.config import ConfigError
from il_core.mapping import TWIST_FIELDS
from il_ros.common import (
    COMMAND_QOS,
    CONTROL_QOS,
    EPISODE_COMMANDS,
    EPISODE_CONTROL_TOPIC,
    LATCHED_QOS,
    declare,
    load_node_mapping,
    publish_and_flush,
    sensor_qos,
    spin_node,
    stamp_now,
)
from il_ros.conversions import encode_command, message_class
from il_ros.wiring import Endpoint, TopicWatch

SOURCES = ("joy", "twist", "leader")


class MalformedInput(ValueError):
    """A teleop input message cannot be used; the message says why."""


def per_dim(values: Sequence[float], dim: int, name: str) -> np.ndarray:
    """``values`` as ``(dim,)`` float32: one value per dimension, or one for all.

    Raises:
        ConfigError: any other length.
    """
    v = np.asarray(list(values), np.float32).reshape(-1)
    if v.size == 1:
        return np.full(dim, v[0], np.float32)
    if v.size != dim:
        raise ConfigError(f"{name}: {v.size} values for a command of {dim}; give 1 or {dim}")
    return v


def _finite(v: np.ndarray, what: str) -> np.ndarray:
    if not np.all(np.isfinite(v)):
        raise MalformedInput(f"{what} contains NaN or infinity")
    return v


class AxesMapper:
    """Gamepad axes -> action: deadzone, then ``scale * axis + offset`` per dimension.

    Args:
        axes: Axis index per action dimension; -1 leaves that dimension at ``offset``.
        scales: ``(D,)`` (or one) scale, in action units per full stick deflection.
        offsets: ``(D,)`` (or one) offset added after scaling.
        deadzone: Axis magnitudes below this read 0; above it the range is rescaled so the
            output is continuous (``deadzone`` maps to 0, 1 maps to 1).
    """

    def __init__(
        self,
        axes: Sequence[int],
        scales: Sequence[float] = (1.0,),
        offsets: Sequence[float] = (0.0,),
        deadzone: float = 0.0,
    ) -> None:
        self.axes = tuple(int(a) for a in axes)
        if not self.axes:
            raise ConfigError("axes: give one axis index per command dimension")
        if any(a < -1 for a in self.axes):
            raise ConfigError(f"axes: indices must be >= 0 (or -1 for none), got {self.axes}")
        if not 0.0 <= deadzone < 1.0:
            raise ConfigError(f"deadzone must be in [0, 1), got {deadzone}")
        dim = len(self.axes)
        self.scales = per_dim(scales, dim, "scales")
        self.offsets = per_dim(offsets, dim, "offsets")
        self.deadzone = float(deadzone)
        self.required_axes = max(self.axes) + 1

    def __call__(self, axes: Sequence[float]) -> np.ndarray:
        """``(D,)`` float32 action for the Joy ``axes``.

        Raises:
            MalformedInput: too few axes, or NaN/infinite values.
        """
        if len(axes) < self.required_axes:
            raise MalformedInput(f"Joy has {len(axes)} axes, need {self.required_axes}")
        raw = np.array([axes[a] if a >= 0 else 0.0 for a in self.axes], np.float32)
        raw = _finite(raw, "Joy axes")
        mag = np.abs(raw)
        dz = self.deadzone
        shaped = np.where(mag < dz, 0.0, np.sign(raw) * (mag - dz) / (1.0 - dz))
        return (self.scales * shaped + self.offsets).astype(np.float32)


class TwistMapper:
    """Twist fields -> action: ``scale * twist.<field> + offset`` per dimension.

    Args:
        fields: One of :data:`~il_core.mapping.TWIST_FIELDS` per action dimension.
        scales: ``(D,)`` (or one) scale.
        offsets: ``(D,)`` (or one) offset.
    """

    def __init__(
        self,
        fields: Sequence[str],
        scales: Sequence[float] = (1.0,),
        offsets: Sequence[float] = (0.0,),
    ) -> None:
        bad = [f for f in fields if f not in TWIST_FIELDS]
        if not fields or bad:
            raise ConfigError(f"twist_fields: choose from {list(TWIST_FIELDS)}, got {fields}")
        self.fields = tuple(fields)
        self.scales = per_dim(scales, len(self.fields), "scales")
        self.offsets = per_dim(offsets, len(self.fields), "offsets")

    def __call__(self, twist: Mapping[str, float]) -> np.ndarray:
        """``(D,)`` float32 action from ``{"linear.x": ..., ...}`` (see :func:`twist_values`).

        Raises:
            MalformedInput: NaN or infinite values.
        """
        raw = _finite(np.array([twist[f] for f in self.fields], np.float32), "Twist")
        return (self.scales * raw + self.offsets).astype(np.float32)


def twist_values(twist: Any) -> dict[str, float]:
    """A ``geometry_msgs/Twist`` as ``{"linear.x": ..., "angular.z": ...}``."""
    return {
        f"{part}.{axis}": float(getattr(getattr(twist, part), axis))
        for part in ("linear", "angular")
        for axis in "xyz"
    }


class LeaderMapper:
    """Leader joint positions -> follower joint command: ``scale * q + offset`` per joint.

    Args:
        joints: Leader joint names, one per action dimension (in the command's order).
        scales: ``(D,)`` (or one) scale (e.g. -1 for a mirrored joint, a gear ratio).
        offsets: ``(D,)`` (or one) offset (calibration between leader and follower).
    """

    def __init__(
        self,
        joints: Sequence[str],
        scales: Sequence[float] = (1.0,),
        offsets: Sequence[float] = (0.0,),
    ) -> None:
        if not joints or any(not j for j in joints):
            raise ConfigError(f"leader_joints: list the leader's joint names, got {joints}")
        self.joints = tuple(joints)
        self.scales = per_dim(scales, len(self.joints), "scales")
        self.offsets = per_dim(offsets, len(self.joints), "offsets")

    def __call__(self, names: Sequence[str], positions: Sequence[float]) -> np.ndarray:
        """``(D,)`` float32 command from a JointState's ``name`` and ``position``.

        Raises:
            MalformedInput: missing joints, names/positions of different lengths, NaN.
        """
        if len(names) != len(positions):
            raise MalformedInput(f"JointState has {len(names)} names, {len(positions)} positions")
        index = {n: i for i, n in enumerate(names)}
        missing = [j for j in self.joints if j not in index]
        if missing:
            raise MalformedInput(f"leader JointState lacks joints {missing}")
        raw = np.array([positions[index[j]] for j in self.joints], np.float32)
        return (self.scales * _finite(raw, "leader positions") + self.offsets).astype(np.float32)


class JoyButtons:
    """Deadman state and edge-triggered episode commands from Joy buttons.

    Args:
        deadman_button: Button that must be held for commands to pass; -1 = no deadman
            (always enabled).
        command_buttons: Episode command (one of ``EPISODE_COMMANDS``) -> button index; -1
            disables a command.

    The first message only sets the reference state: a button already held when the teleop
    starts does not fire. A malformed message leaves the state unchanged.
    """

    def __init__(
        self, deadman_button: int = -1, command_buttons: Mapping[str, int] | None = None
    ) -> None:
        commands = dict(command_buttons or {})
        unknown = sorted(set(commands) - set(EPISODE_COMMANDS))
        if unknown:
            raise ConfigError(f"unknown episode commands {unknown}; use {list(EPISODE_COMMANDS)}")
        self.deadman_button = int(deadman_button)
        self.commands = {c: int(b) for c, b in commands.items() if int(b) >= 0}
        used = [self.deadman_button] if self.deadman_button >= 0 else []
        used += list(self.commands.values())
        if any(b < -1 for b in [self.deadman_button, *commands.values()]):
            raise ConfigError("button indices must be >= 0, or -1 to disable")
        if len(set(used)) != len(used):
            raise ConfigError(f"one button for two roles: deadman/commands use buttons {used}")
        self.required_buttons = max(used) + 1 if used else 0
        self._previous: dict[int, bool] | None = None

    @property
    def has_deadman(self) -> bool:
        """Whether a deadman button is configured."""
        return self.deadman_button >= 0

    def update(self, buttons: Sequence[int]) -> tuple[bool, tuple[str, ...]]:
        """Read one Joy ``buttons`` array.

        Returns:
            ``(deadman_held, events)``: events are the commands whose button went from
            released to pressed since the previous message, in ``EPISODE_COMMANDS`` order.

        Raises:
            MalformedInput: fewer buttons than the configured indices need.
        """
        if len(buttons) < self.required_buttons:
            raise MalformedInput(f"Joy has {len(buttons)} buttons, need {self.required_buttons}")
        pressed = {b: bool(buttons[b]) for b in self.commands.values()}
        previous, self._previous = self._previous, pressed
        events: tuple[str, ...] = ()
        if previous is not None:
            events = tuple(
                c
                for c in EPISODE_COMMANDS
                if c in self.commands
                and pressed[self.commands[c]]
                and not previous[self.commands[c]]
            )
        held = bool(buttons[self.deadman_button]) if self.has_deadman else True
        return held, events


class TeleopNode(Node):
    """Publishes the operator's command at the control rate, gated by the deadman."""

    def __init__(self, node_name: str = "teleop", **kwargs: Any) -> None:
        """Declare parameters, load the mapping, build the input mappers, subscribe.

        Raises:
            ConfigError: an unknown source, or axes/fields/joints/scales/buttons that do not
                fit the mapping's command.
        """
        super().__init__(node_name, **kwargs)
        p = self.params = self._declare_parameters()
        if not p["mapping_file"]:
            raise ConfigError(
                "parameter 'mapping_file' is required: the robot mapping YAML whose command "
                "this teleop drives (mapping_file:=/path/to/my_robot.yaml)"
            )
        self.mapping_path, self.mapping = load_node_mapping(p["mapping_file"])
        self.sink = self.mapping.action
        self.action_spec = self.sink.to_action_spec()
        # Everything is checked before any publisher exists: a teleop that cannot drive the
        # mapping's command refuses to start, saying which parameter to set.
        self._build_source(p)
        self.buttons = JoyButtons(
            p["deadman_button"] if p["joy_topic"] else -1,
            {c: p[f"{c}_button"] for c in EPISODE_COMMANDS} if p["joy_topic"] else {},
        )

        self.command_topic = p["command_topic"] or self.sink.topic
        self.cmd_pub: Publisher = self.create_publisher(
            message_class(self.sink.type), self.command_topic, COMMAND_QOS
        )
        self.deadman_pub = self.create_publisher(Bool, p["deadman_topic"], LATCHED_QOS)
        self.control_pub = self.create_publisher(String, EPISODE_CONTROL_TOPIC, CONTROL_QOS)
        self.watch = TopicWatch(self)
        self.watch.add(Endpoint(self.cmd_pub.topic_name, self.sink.type, "publish", "command"))
        inputs = []
        if p["joy_topic"]:
            from sensor_msgs.msg import Joy

            inputs.append((Joy, p["joy_topic"], self._on_joy, "gamepad (start joy_node)"))
        if self.source == "twist":
            from geometry_msgs.msg import Twist, TwistStamped

            twist_type = TwistStamped if p["twist_stamped"] else Twist
            inputs.append((twist_type, p["twist_topic"], self._on_twist, "twist input"))
        elif self.source == "leader":
            from sensor_msgs.msg import JointState

            inputs.append((JointState, p["leader_topic"], self._on_leader, "leader arm"))
        for cls, topic, callback, what in inputs:
            sub = self.create_subscription(cls, topic, callback, sensor_qos())
            msg_type = "{}/msg/{}".format(cls.__module__.split(".")[0], cls.__name__)
            self.watch.add(Endpoint(sub.topic_name, msg_type, "subscribe", what))

        self.action: tuple[np.ndarray, float] | None = None  # (action, monotonic receipt)
        self.joy_held: tuple[bool, float] | None = None  # (deadman held, monotonic receipt)
        self.deadman_state: bool | None = None
        self.bad_messages = 0
        self.commands_sent = 0
        self.zero = np.zeros(self.sink.dim, np.float32)
        rate = p["rate_hz"] or self.mapping.control_rate_hz
        self.period = 1.0 / rate
        self._publish_deadman(False)
        self.create_timer(self.period, self._tick)
        self.get_logger().info(
            f"source {self.source} -> {self.command_topic} ({self.sink.type}) at {rate:g} Hz; "
            f"joy {p['joy_topic'] or '(none)'}, deadman button "
            f"{self.buttons.deadman_button if self.buttons.has_deadman else '(none)'}"
        )

    def _build_source(self, p: dict[str, Any]) -> None:
        """The input mapper for ``source``; ConfigError naming what to set if it cannot fit.

        Raises:
            ConfigError: an unknown source, or axes/fields/joints/scales that do not give one
                value per dimension of the mapping's command.
        """
        sink, dim = self.sink, self.sink.dim
        command = f"the command {sink.topic} ({sink.type}) of {self.mapping_path} has {dim} values"
        source = p["source"]
        if source not in SOURCES:
            raise ConfigError(f"parameter 'source': {source!r} is not one of {list(SOURCES)}")
        self.source = source
        try:
            if source == "joy":
                if not p["joy_topic"]:
                    raise ConfigError("source 'joy' needs a joy_topic (sensor_msgs/Joy)")
                if len(p["axes"]) != dim:
                    raise ConfigError(
                        f"source 'joy' maps {len(p['axes'])} axes {list(p['axes'])} but {command}"
                        f": set parameter 'axes' to {dim} Joy axis indices (-1 leaves a "
                        f"dimension at its offset), and 'scales'/'offsets' to 1 or {dim} values"
                    )
                self.axes_mapper = AxesMapper(p["axes"], p["scales"], p["offsets"], p["deadzone"])
            elif source == "twist":
                fields = [f for f in p["twist_fields"] if f] or list(sink.fields)
                if len(fields) != dim:
                    raise ConfigError(
                        f"source 'twist' gives {len(fields)} values {fields} but {command}: set "
                        f"parameter 'twist_fields' to {dim} entries of {list(TWIST_FIELDS)}"
                    )
                self.twist_mapper = TwistMapper(fields, p["scales"], p["offsets"])
            else:
                joints = [j for j in p["leader_joints"] if j] or list(sink.joints)
                if len(joints) != dim:
                    raise ConfigError(
                        f"source 'leader' copies {len(joints)} joints {joints} but {command}: "
                        f"set parameter 'leader_joints' to the leader arm's {dim} joint names, "
                        "in the order of the command"
                    )
                self.leader_mapper = LeaderMapper(joints, p["scales"], p["offsets"])
        except ConfigError as e:
            raise ConfigError(f"teleop parameters: {e}") from None

    def _declare_parameters(self) -> dict[str, Any]:
        d = declare
        p = {
            "source": d(self, "source", "joy", f"What drives the command: one of {SOURCES}"),
            "mapping_file": d(
                self,
                "mapping_file",
                "",
                "Robot mapping YAML (the command this teleop drives); required",
            ),
            "command_topic": d(
                self, "command_topic", "", "Command topic; empty = the mapping's command topic"
            ),
            "rate_hz": d(
                self,
                "rate_hz",
                0.0,
                "Command rate (Hz); 0 = the mapping's control_rate_hz",
                valid_range=(0.0, 1000.0),
            ),
            "joy_topic": d(
                self,
                "joy_topic",
                "/joy",
                "sensor_msgs/Joy topic for axes (source joy), deadman and buttons; "
                "empty = none (no deadman: always enabled)",
            ),
            "twist_topic": d(
                self, "twist_topic", "/spacenav/twist", "Twist input topic (source twist)"
            ),
            "twist_stamped": d(
                self, "twist_stamped", False, "The twist input is geometry_msgs/TwistStamped"
            ),
            "leader_topic": d(
                self,
                "leader_topic",
                "/leader/joint_states",
                "Leader arm sensor_msgs/JointState topic (source leader)",
            ),
            "axes": d(
                self,
                "axes",
                [1, 0],
                "Joy axis index per command dimension (-1 = none); source joy",
            ),
            "scales": d(
                self,
                "scales",
                [1.0],
                "Scale per command dimension (one value = all): command units per unit input",
            ),
            "offsets": d(self, "offsets", [0.0], "Offset per command dimension (one value = all)"),
            "deadzone": d(
                self,
                "deadzone",
                0.05,
                "Joy axis magnitudes below this read 0 (range rescaled above it)",
                valid_range=(0.0, 0.99),
            ),
            "twist_fields": d(
                self,
                "twist_fields",
                [""],
                "Input twist field per command dimension (linear.x ... angular.z); "
                "[''] = the mapping's command fields",
            ),
            "leader_joints": d(
                self,
                "leader_joints",
                [""],
                "Leader joint name per command dimension; [''] = the mapping's joints",
            ),
            "deadman_button": d(
                self,
                "deadman_button",
                4,
                "Joy button that must be held for commands to pass (-1 = no deadman)",
                valid_range=(-1, 127),
            ),
            "deadman_topic": d(
                self,
                "deadman_topic",
                "/il_ros/deadman",
                "std_msgs/Bool deadman state (latched, published on change)",
            ),
            "input_timeout_s": d(
                self,
                "input_timeout_s",
                0.5,
                "Inputs (and Joy) older than this count as absent: zero command, deadman "
                "released (joy must autorepeat faster than this)",
                valid_range=(0.01, 60.0),
            ),
        }
        defaults = {"start": 7, "stop": 6, "discard": 3, "success": 0, "failure": 1}
        for c in EPISODE_COMMANDS:
            p[f"{c}_button"] = d(
                self,
                f"{c}_button",
                defaults[c],
                f"Joy button that publishes '{c}' on {EPISODE_CONTROL_TOPIC} (-1 = none)",
                valid_range=(-1, 127),
            )
        return p

    # Inputs --------------------------------------------------------------------------------

    def _bad(self, what: str, error: Exception) -> None:
        self.bad_messages += 1
        self.get_logger().warning(
            f"malformed {what} ({self.bad_messages} so far): {error}; commanding zero",
            throttle_duration_sec=2.0,
        )

    def _on_joy(self, msg: Any) -> None:
        now = time.monotonic()
        try:
            action = self.axes_mapper(msg.axes) if self.source == "joy" else None
            held, events = self.buttons.update(msg.buttons)
        except MalformedInput as e:
            self._bad("Joy", e)
            self.joy_held = (False, now)
            if self.source == "joy":
                self.action = (self.zero, now)
            return
        self.joy_held = (held, now)
        if action is not None:
            self.action = (action, now)
        for event in events:
            self.control_pub.publish(String(data=event))
            self.get_logger().info(f"episode control: {event}")

    def _on_twist(self, msg: Any) -> None:
        now = time.monotonic()
        twist = msg.twist if self.params["twist_stamped"] else msg
        try:
            self.action = (self.twist_mapper(twist_values(twist)), now)
        except MalformedInput as e:
            self._bad("Twist", e)
            self.action = None

    def _on_leader(self, msg: Any) -> None:
        now = time.monotonic()
        try:
            self.action = (self.leader_mapper(msg.name, msg.position), now)
        except MalformedInput as e:
            self._bad("leader JointState", e)
            self.action = None

    # Output --------------------------------------------------------------------------------

    def _publish_deadman(self, held: bool) -> None:
        if held != self.deadman_state:
            self.deadman_state = held
            self.deadman_pub.publish(Bool(data=held))

    def _enabled(self, now: float) -> bool:
        if not self.buttons.has_deadman:
            return True
        timeout = self.params["input_timeout_s"]
        return self.joy_held is not None and self.joy_held[0] and now - self.joy_held[1] <= timeout

    def _tick(self) -> None:
        now = time.monotonic()
        latest = self.action
        fresh = latest is not None and now - latest[1] <= self.params["input_timeout_s"]
        # The deadman topic says "the operator's command is passing": held and fresh input.
        # A held button over a stale source (the puck or leader arm went quiet) commands
        # zero, and a zero recorded as held would be a fabricated expert label.
        commanding = self._enabled(now) and latest is not None and fresh
        if not commanding:
            self._publish_deadman(False)  # released before the idle command goes out
        if commanding and latest is not None:
            action = self.action_spec.clip(latest[0])
        elif self.sink.safe_stop == "zero":
            action = self.zero
        else:
            return  # a position command holds by itself; zeros would move the arm
        self.cmd_pub.publish(encode_command(self.sink, action, stamp_now(self), self.period))
        self.commands_sent += 1
        if commanding:
            # Held only once the operator's command is out, so that a recorder never sees
            # "held" beside the idle command that preceded it.
            self._publish_deadman(True)

    def safe_stop(self) -> None:
        """Release: deadman false, and a zero command for ``safe_stop: zero`` commands."""
        self._publish_deadman(False)
        if self.sink.safe_stop == "zero":
            publish_and_flush(self.cmd_pub, encode_command(self.sink, self.zero, stamp_now(self)))


def main(args: Sequence[str] | None = None) -> int:
    """Run the teleop (``ros2 run il_ros teleop``)."""
    return spin_node(TeleopNode, args, on_exit=lambda node: node.safe_stop(), name="teleop")


if __name__ == "__main__":
    sys.exit(main())
