"""The robot mapping: which ROS topic feeds which observation key, and where actions go.

One YAML file, shared by the recorder, inference and DAgger nodes, maps topics to the
observation keys of a :class:`~il_core.spec.DatasetSpec` and the action to a command topic.
It is pure data (message types are strings such as ``sensor_msgs/msg/JointState``), so it
lives in ``il_core`` and never imports ROS; the conversions themselves are in
``il_ros.conversions``. The mapping is stored in the spec's metadata (``ros_mapping``), hence
in every dataset and checkpoint, and the inference node refuses a checkpoint whose mapping
differs from its own in anything but topic names (see :func:`mapping_differences`).

Vector sources whose values are named message attributes (poses, twists, wrenches, IMUs,
odometry) are described by one table, :data:`OBSERVATION_FIELDS`: for each message type, the
``fields`` a mapping may select and where each lives in the message. Validation here and the
decoders and encoders in ``il_ros.conversions`` all read it, so adding a type is a table entry.

Example::

    control_rate_hz: 20.0
    observations:
      joints:
        topic: /joint_states
        type: sensor_msgs/msg/JointState
        joints: [shoulder, elbow]
        fields: [position, velocity]      # concatenated: 4 values
        max_age_s: 0.1
      front:
        topic: /camera/front/image_raw/compressed
        type: sensor_msgs/msg/CompressedImage
        shape: [64, 64, 3]                 # resized to this
        codec: jpeg                        # storage in the dataset: jpeg|png|h264|av1
        max_age_s: 0.15
      ee_pose:
        topic: /arm/ee_pose
        type: geometry_msgs/msg/PoseStamped
        fields: [position.x, position.y, position.z, yaw]   # yaw derived from the quaternion
        max_age_s: 0.05
      ee_wrench:
        topic: /arm/ft_sensor
        type: geometry_msgs/msg/WrenchStamped
        fields: [force.x, force.y, force.z]
        max_age_s: 0.05
    action:
      topic: /cmd_vel
      type: geometry_msgs/msg/Twist
      fields: [linear.x, angular.z]
      low: [-0.5, -1.0]
      high: [0.5, 1.0]
      safe_stop: zero
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal, NamedTuple

from il_core.config import ConfigError, load_yaml
from il_core.spec import DEFAULT_GOP, ActionSpec, DatasetSpec, FeatureSpec, SpecError

IMAGE_TYPES = ("sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage")
MULTI_ARRAY_TYPES = ("std_msgs/msg/Float32MultiArray", "std_msgs/msg/Float64MultiArray")
#: One number per message (``data``), dim 1, no ``fields``.
SCALAR_TYPES = ("std_msgs/msg/Float32", "std_msgs/msg/Float64")
COMMAND_TYPES = (
    "geometry_msgs/msg/Twist",
    "geometry_msgs/msg/TwistStamped",
    "std_msgs/msg/Float64MultiArray",
    "trajectory_msgs/msg/JointTrajectory",
    "sensor_msgs/msg/JointState",
)
JOINT_FIELDS = ("position", "velocity", "effort")
TWIST_FIELDS = tuple(f"{p}.{a}" for p in ("linear", "angular") for a in "xyz")
EulerAngle = Literal["roll", "pitch", "yaw"]
#: Angles derived from a quaternion: ZYX (yaw, then pitch, then roll) convention, radians.
EULER_ANGLES: tuple[EulerAngle, ...] = ("roll", "pitch", "yaw")


class MessageField(NamedTuple):
    """Where one selectable ``fields`` entry lives inside a message.

    Attributes:
        path: Dotted attribute path from the message to a float, e.g. ``pose.position.x``
            (``PoseStamped``). For a derived angle, the path of the quaternion it is
            computed from, e.g. ``pose.orientation``.
        angle: ``roll``, ``pitch`` or ``yaw`` when the value is derived from the quaternion
            at ``path`` (see :data:`EULER_ANGLES`); ``None`` for a plain attribute.
    """

    path: str
    angle: EulerAngle | None = None


def _xyz(name: str, path: str, axes: str = "xyz") -> dict[str, MessageField]:
    return {f"{name}.{a}": MessageField(f"{path}.{a}") for a in axes}


def _quaternion(name: str, path: str) -> dict[str, MessageField]:
    """The four components of a quaternion plus the angles derived from it."""
    return {**_xyz(name, path, "xyzw"), **{a: MessageField(path, a) for a in EULER_ANGLES}}


def _pose(path: str) -> dict[str, MessageField]:
    """A ``geometry_msgs/Pose`` at ``path`` (``""``: the message itself)."""
    prefix = f"{path}." if path else ""
    return {
        **_xyz("position", f"{prefix}position"),
        **_quaternion("orientation", f"{prefix}orientation"),
    }


_FIELDS: dict[str, dict[str, MessageField]] = {
    "geometry_msgs/msg/PoseStamped": _pose("pose"),
    "geometry_msgs/msg/Pose": _pose(""),
    "geometry_msgs/msg/TwistStamped": {f: MessageField(f"twist.{f}") for f in TWIST_FIELDS},
    "geometry_msgs/msg/WrenchStamped": {
        **_xyz("force", "wrench.force"),
        **_xyz("torque", "wrench.torque"),
    },
    "sensor_msgs/msg/Imu": {
        **_quaternion("orientation", "orientation"),
        **_xyz("angular_velocity", "angular_velocity"),
        **_xyz("linear_acceleration", "linear_acceleration"),
    },
    # These names predate the table and are stored in datasets and checkpoints
    # (mapping_differences compares them), so they stay as they were.
    "nav_msgs/msg/Odometry": {
        **{f"pose.{a}": MessageField(f"pose.pose.position.{a}") for a in "xyz"},
        "pose.yaw": MessageField("pose.pose.orientation", "yaw"),
        **{f"twist.{f}": MessageField(f"twist.twist.{f}") for f in TWIST_FIELDS},
    },
}
#: Message type -> ``{field name: where it lives}`` for the vector sources whose ``fields``
#: pick named attributes (read-only). A source's vector holds its ``fields`` in order: dim is
#: ``len(fields)`` and element names default to the field names.
OBSERVATION_FIELDS: Mapping[str, Mapping[str, MessageField]] = MappingProxyType(
    {t: MappingProxyType(f) for t, f in _FIELDS.items()}
)
ODOM_FIELDS = tuple(OBSERVATION_FIELDS["nav_msgs/msg/Odometry"])
POSE_FIELDS = tuple(OBSERVATION_FIELDS["geometry_msgs/msg/PoseStamped"])
WRENCH_FIELDS = tuple(OBSERVATION_FIELDS["geometry_msgs/msg/WrenchStamped"])
IMU_FIELDS = tuple(OBSERVATION_FIELDS["sensor_msgs/msg/Imu"])
VECTOR_TYPES = (
    "sensor_msgs/msg/JointState",
    *MULTI_ARRAY_TYPES,
    "sensor_msgs/msg/Joy",
    *SCALAR_TYPES,
    *OBSERVATION_FIELDS,
)
MAPPING_KEY = "ros_mapping"


def _short(msg_type: str) -> str:
    """Accept ``pkg/Type`` as shorthand for ``pkg/msg/Type``."""
    parts = msg_type.split("/")
    return f"{parts[0]}/msg/{parts[1]}" if len(parts) == 2 else msg_type


@dataclass(frozen=True)
class ObservationSource:
    """One observation key fed by one topic.

    Attributes:
        key: Observation key in the spec.
        topic: ROS topic name.
        type: Message type, e.g. ``sensor_msgs/msg/JointState``.
        max_age_s: A tick is recorded/acted on only if this stream's newest message at or
            before the tick is at most this old.
        joints: JointState: joint names to select, in this order.
        fields: JointState: ``position|velocity|effort`` (concatenated per field);
            types of :data:`OBSERVATION_FIELDS` (Odometry, PoseStamped, Pose, TwistStamped,
            WrenchStamped, Imu): the table's field names, one value each, in this order.
            Not allowed for the scalars of :data:`SCALAR_TYPES`.
        size: Float32/64MultiArray: expected number of values.
        axes: Joy: axis indices; ``buttons``: button indices (appended as 0/1).
        shape: Images: ``(H, W, C)`` the image is resized to.
        codec: Images: storage codec in datasets (``jpeg``, ``png``, or video ``h264`` /
            ``av1``; see :class:`il_core.spec.FeatureSpec`).
        quality: Images: JPEG quality.
        gop: Images stored as video: keyframe interval in frames.
        crf: Images stored as video: constant rate factor (None: the codec's default).
        names: Optional per-element names of a vector (defaults from joints/fields; the key
            for a scalar).
    """

    key: str
    topic: str
    type: str
    max_age_s: float = 0.1
    joints: tuple[str, ...] = ()
    fields: tuple[str, ...] = ()
    size: int = 0
    axes: tuple[int, ...] = ()
    buttons: tuple[int, ...] = ()
    shape: tuple[int, ...] = ()
    codec: Literal["jpeg", "png", "h264", "av1"] = "jpeg"
    quality: int = 90
    gop: int = DEFAULT_GOP
    crf: int | None = None
    names: tuple[str, ...] = ()

    @property
    def is_image(self) -> bool:
        """Whether this source is a camera."""
        return self.type in IMAGE_TYPES

    @property
    def dim(self) -> int:
        """Vector length (0 for images)."""
        t = self.type
        if t == "sensor_msgs/msg/JointState":
            return len(self.joints) * len(self.fields)
        if t in MULTI_ARRAY_TYPES:
            return self.size
        if t in OBSERVATION_FIELDS:
            return len(self.fields)
        if t in SCALAR_TYPES:
            return 1
        if t == "sensor_msgs/msg/Joy":
            return len(self.axes) + len(self.buttons)
        return 0

    def element_names(self) -> tuple[str, ...] | None:
        """Per-element names for the spec (explicit ``names`` win)."""
        if self.names:
            return self.names
        t = self.type
        if t == "sensor_msgs/msg/JointState":
            return tuple(f"{j}.{f}" for f in self.fields for j in self.joints)
        if t in OBSERVATION_FIELDS:
            return self.fields
        if t in SCALAR_TYPES:
            return (self.key,)
        if t == "sensor_msgs/msg/Joy":
            return tuple(f"axis{a}" for a in self.axes) + tuple(f"button{b}" for b in self.buttons)
        return None

    def to_feature(self) -> FeatureSpec:
        """The :class:`FeatureSpec` this source produces."""
        if self.is_image:
            return FeatureSpec(
                "image",
                self.shape,
                codec=self.codec,
                quality=self.quality,
                gop=self.gop,
                crf=self.crf,
            )
        return FeatureSpec("vector", (self.dim,), names=self.element_names())


@dataclass(frozen=True)
class CommandSink:
    """Where actions are published.

    Attributes:
        topic: Command topic.
        type: One of :data:`COMMAND_TYPES`.
        fields: Twist/TwistStamped: entries of :data:`TWIST_FIELDS`, one per action dim.
        joints: JointTrajectory/JointState: joint names, one per action dim.
        size: Float64MultiArray: number of values (= action dim).
        names: Action dimension names (default: fields or joints).
        units: Action units.
        low: Lower bounds (actions are clamped; ``null`` = unbounded).
        high: Upper bounds.
        safe_stop: ``zero`` publishes a zero command; ``hold`` repeats the last observed
            joint positions (joint commands only; needs ``hold_from``).
        hold_from: Observation key whose values are the positions to hold.
        frame_id: Header frame for stamped commands.
    """

    topic: str
    type: str
    fields: tuple[str, ...] = ()
    joints: tuple[str, ...] = ()
    size: int = 0
    names: tuple[str, ...] = ()
    units: tuple[str, ...] = ()
    low: tuple[float | None, ...] = ()
    high: tuple[float | None, ...] = ()
    safe_stop: Literal["zero", "hold"] = "zero"
    hold_from: str = ""
    frame_id: str = ""

    @property
    def dim(self) -> int:
        """Action dimension."""
        if self.type.startswith("geometry_msgs/msg/Twist"):
            return len(self.fields)
        if self.type == "std_msgs/msg/Float64MultiArray":
            return self.size
        return len(self.joints)

    def to_action_spec(self) -> ActionSpec:
        """The continuous :class:`ActionSpec` of this command."""

        def bounds(values: tuple[float | None, ...], sign: float) -> tuple[float, ...] | None:
            if not values:
                return None
            return tuple(sign * math.inf if v is None else float(v) for v in values)

        names = self.names or self.fields or self.joints or None
        return ActionSpec(
            "continuous",
            dim=self.dim,
            names=tuple(names) if names else None,
            units=self.units or None,
            low=bounds(self.low, -1.0),
            high=bounds(self.high, 1.0),
        )


@dataclass(frozen=True)
class RobotMapping:
    """Topics to observation keys and action to command topic, plus the control rate.

    Attributes:
        control_rate_hz: Recording and control rate.
        observations: Observation sources in key order.
        action: The command sink.
        extras: Per-step vector extras the nodes record (``obs_age`` etc.); set by nodes.
    """

    control_rate_hz: float
    observations: tuple[ObservationSource, ...]
    action: CommandSink
    extras: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        keys = [o.key for o in self.observations]
        if len(set(keys)) != len(keys):
            raise ConfigError(f"observation keys must be unique, got {keys}")

    def source(self, key: str) -> ObservationSource:
        """The source of observation ``key``."""
        for o in self.observations:
            if o.key == key:
                return o
        raise KeyError(key)

    def to_spec(self, extras: dict[str, int] | None = None) -> DatasetSpec:
        """The :class:`DatasetSpec` of data recorded with this mapping.

        Args:
            extras: Per-step vector extras ``{name: dim}`` to declare (recorder bookkeeping
                such as observation ages).
        """
        try:
            return DatasetSpec(
                observations={o.key: o.to_feature() for o in self.observations},
                action=self.action.to_action_spec(),
                control_rate_hz=self.control_rate_hz,
                extras={k: FeatureSpec("vector", (d,)) for k, d in (extras or {}).items()},
                metadata={MAPPING_KEY: self.to_dict()},
            )
        except SpecError as e:
            raise ConfigError(f"mapping does not give a valid spec: {e}") from None

    def to_dict(self) -> dict[str, Any]:
        """JSON/YAML-compatible dict (inverse of :func:`mapping_from_dict`)."""

        def clean(obj: Any) -> dict[str, Any]:
            out: dict[str, Any] = {}
            defaults = type(obj).__dataclass_fields__
            for name, f in defaults.items():
                if name == "key":
                    continue
                v = getattr(obj, name)
                if f.default is not v and v != f.default and v not in ((), ""):
                    out[name] = list(v) if isinstance(v, tuple) else v
            out.setdefault("topic", obj.topic)
            out.setdefault("type", obj.type)
            return out

        return {
            "control_rate_hz": self.control_rate_hz,
            "observations": {o.key: clean(o) for o in self.observations},
            "action": clean(self.action),
        }


def _check_source(src: ObservationSource, where: str) -> None:
    t = src.type
    if t not in IMAGE_TYPES + VECTOR_TYPES:
        raise ConfigError(
            f"{where}.type: unsupported {t!r}; supported: {list(IMAGE_TYPES + VECTOR_TYPES)}"
        )
    if not src.topic:
        raise ConfigError(f"{where}.topic: a topic name is required")
    if not src.max_age_s > 0:
        raise ConfigError(f"{where}.max_age_s must be > 0, got {src.max_age_s}")
    if src.is_image:
        if len(src.shape) != 3 or src.shape[2] not in (1, 3):
            raise ConfigError(f"{where}.shape: images need [H, W, C] with C 1 or 3")
        try:
            src.to_feature()  # codec, quality, gop and crf checked where the spec checks them
        except SpecError as e:
            raise ConfigError(f"{where}: {e}") from None
    elif t == "sensor_msgs/msg/JointState":
        if not src.joints:
            raise ConfigError(f"{where}.joints: list the joint names to select")
        bad = [f for f in src.fields if f not in JOINT_FIELDS]
        if not src.fields or bad:
            raise ConfigError(
                f"{where}.fields: choose from {list(JOINT_FIELDS)}, got {list(src.fields)}"
            )
    elif t in MULTI_ARRAY_TYPES:
        if src.size < 1:
            raise ConfigError(f"{where}.size: the number of values is required")
    elif t in SCALAR_TYPES:
        if src.fields:
            raise ConfigError(
                f"{where}.fields: {t} is a single value (dim 1) and takes no fields, "
                f"got {list(src.fields)}; remove 'fields'"
            )
        if src.size:
            raise ConfigError(
                f"{where}.size: {t} is a single value (dim 1); 'size' is only for "
                f"{list(MULTI_ARRAY_TYPES)}, got {src.size}"
            )
    elif t in OBSERVATION_FIELDS:
        allowed = list(OBSERVATION_FIELDS[t])
        bad = [f for f in src.fields if f not in allowed]
        if not src.fields or bad:
            why = f"unknown {bad}" if bad else "none given"
            raise ConfigError(
                f"{where}.fields: choose from {allowed} for {t}, got {list(src.fields)} ({why})"
            )
    elif t == "sensor_msgs/msg/Joy":
        if not src.axes and not src.buttons:
            raise ConfigError(f"{where}: list axes and/or buttons")
    if src.names and len(src.names) != src.dim:
        raise ConfigError(f"{where}.names: {len(src.names)} names for {src.dim} values")


def _check_sink(sink: CommandSink, where: str) -> None:
    t = sink.type
    if t not in COMMAND_TYPES:
        raise ConfigError(f"{where}.type: unsupported {t!r}; supported: {list(COMMAND_TYPES)}")
    if t.startswith("geometry_msgs/msg/Twist"):
        bad = [f for f in sink.fields if f not in TWIST_FIELDS]
        if not sink.fields or bad:
            raise ConfigError(
                f"{where}.fields: choose from {list(TWIST_FIELDS)}, got {list(sink.fields)}"
            )
    elif t == "std_msgs/msg/Float64MultiArray":
        if sink.size < 1:
            raise ConfigError(f"{where}.size: the number of values is required")
    elif not sink.joints:
        raise ConfigError(f"{where}.joints: list the commanded joint names")
    n = sink.dim
    for name in ("names", "units", "low", "high"):
        v = getattr(sink, name)
        if v and len(v) != n:
            raise ConfigError(f"{where}.{name}: {len(v)} values for an action of dim {n}")
    if sink.safe_stop == "hold":
        if t not in (
            "trajectory_msgs/msg/JointTrajectory",
            "sensor_msgs/msg/JointState",
            "std_msgs/msg/Float64MultiArray",
        ):
            raise ConfigError(f"{where}.safe_stop: 'hold' needs a joint command type, not {t}")
        if not sink.hold_from:
            raise ConfigError(f"{where}.hold_from: name the observation key to hold")


def mapping_from_dict(data: dict[str, Any], where: str = "mapping") -> RobotMapping:
    """Validate a mapping dict (from YAML or a spec's metadata).

    Raises:
        ConfigError: naming ``where`` and the offending key.
    """
    from il_core.config import from_dict

    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping")
    unknown = sorted(set(data) - {"control_rate_hz", "observations", "action"})
    if unknown:
        raise ConfigError(
            f"{where}: unknown keys {unknown}; allowed: control_rate_hz, observations, action"
        )
    for req in ("control_rate_hz", "observations", "action"):
        if req not in data:
            raise ConfigError(f"{where}: missing {req!r}")
    rate = data["control_rate_hz"]
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not rate > 0:
        raise ConfigError(f"{where}.control_rate_hz must be a positive number, got {rate!r}")
    obs_raw = data["observations"]
    if not isinstance(obs_raw, dict) or not obs_raw:
        raise ConfigError(f"{where}.observations: expected a non-empty mapping of keys")
    sources = []
    for key, raw in obs_raw.items():
        w = f"{where}.observations.{key}"
        if not isinstance(raw, dict):
            raise ConfigError(f"{w}: expected a mapping")
        raw = {**raw, "key": key, "type": _short(str(raw.get("type", "")))}
        src = from_dict(ObservationSource, raw, w)
        _check_source(src, w)
        sources.append(src)
    act_raw = data["action"]
    if not isinstance(act_raw, dict):
        raise ConfigError(f"{where}.action: expected a mapping")
    act_raw = {**act_raw, "type": _short(str(act_raw.get("type", "")))}
    sink = from_dict(CommandSink, act_raw, f"{where}.action")
    _check_sink(sink, f"{where}.action")
    if sink.safe_stop == "hold" and sink.hold_from not in obs_raw:
        raise ConfigError(f"{where}.action.hold_from: {sink.hold_from!r} is not an observation")
    return RobotMapping(float(rate), tuple(sources), sink)


def load_mapping(path: str | Path) -> RobotMapping:
    """Load and validate a mapping YAML file; errors name the file and key."""
    return mapping_from_dict(load_yaml(path), str(path))


def mapping_differences(expected: RobotMapping, actual: RobotMapping) -> list[str]:
    """What makes a policy trained with ``expected`` unusable with ``actual``.

    Topic names may differ (remapping is normal); keys, message types, selected joints and
    fields, sizes, image shapes and the command definition must match. The control rate
    must match too, since chunks and history are counted in ticks.
    """
    problems = []
    if not math.isclose(expected.control_rate_hz, actual.control_rate_hz, rel_tol=1e-6):
        problems.append(
            f"control_rate_hz: trained at {expected.control_rate_hz}, "
            f"configured {actual.control_rate_hz}"
        )
    # As sets: observations are stored and fed to policies by key, and a dataset's meta.json
    # keeps them in sorted order, so a checkpoint's mapping lists them sorted while the
    # robot's YAML lists them as written (an arm with keys joints, ee_pose, ... was refused).
    exp_keys = sorted(o.key for o in expected.observations)
    act_keys = sorted(o.key for o in actual.observations)
    if exp_keys != act_keys:
        problems.append(f"observation keys: trained with {exp_keys}, configured {act_keys}")
    semantic = ("type", "joints", "fields", "size", "axes", "buttons", "shape")
    for o in expected.observations:
        if o.key not in act_keys:
            continue
        a = actual.source(o.key)
        for attr in semantic:
            if getattr(o, attr) != getattr(a, attr):
                problems.append(
                    f"observation {o.key!r} {attr}: trained with "
                    f"{getattr(o, attr)!r}, configured {getattr(a, attr)!r}"
                )
    for attr in ("type", "fields", "joints", "size"):
        if getattr(expected.action, attr) != getattr(actual.action, attr):
            problems.append(
                f"action {attr}: trained with {getattr(expected.action, attr)!r}, "
                f"configured {getattr(actual.action, attr)!r}"
            )
    return problems


def mapping_of_spec(spec: DatasetSpec) -> RobotMapping | None:
    """The mapping stored in a spec's metadata, or ``None`` (data not recorded on ROS)."""
    raw = spec.metadata.get(MAPPING_KEY)
    return None if raw is None else mapping_from_dict(raw, f"spec metadata {MAPPING_KEY}")
