"""ROS messages <-> numpy, driven by an :class:`il_core.mapping.RobotMapping`.

The decoders (message -> numpy) live in :mod:`il_core.messages`, because they only read
fields and so also serve the bag import; they are re-exported here. This module adds what
needs the ROS message classes: the encoders that build the messages the simulated robot
publishes and the commands the inference and DAgger nodes send, from the same field table
(:data:`il_core.mapping.OBSERVATION_FIELDS`).

Large uint8 payloads are assigned from ``bytes`` (a buffer), which rclpy copies in C; filling
them element by element from Python is what makes naive image publishing slow
(ros2/rclpy#763).
"""

from __future__ import annotations

import importlib
import math
from operator import attrgetter
from typing import Any

import cv2
import numpy as np

from il_core.mapping import (
    EULER_ANGLES,
    MULTI_ARRAY_TYPES,
    OBSERVATION_FIELDS,
    SCALAR_TYPES,
    CommandSink,
    ObservationSource,
)
from il_core.messages import (  # noqa: F401  (re-exported: the decoders' public home for nodes)
    ConversionError,
    decode_command,
    decode_compressed,
    decode_image,
    euler_from_quaternion,
    make_observation_decoder,
    stamp_to_sec,
)

_CLASSES: dict[str, type] = {}


def message_class(type_name: str) -> type:
    """Resolve ``pkg/msg/Type`` to the generated Python class."""
    cls = _CLASSES.get(type_name)
    if cls is None:
        pkg, _, name = type_name.split("/")
        cls = getattr(importlib.import_module(f"{pkg}.msg"), name)
        _CLASSES[type_name] = cls
    return cls


def sec_to_stamp(t: float, stamp: Any) -> Any:
    """Fill a ``builtin_interfaces/Time`` from seconds."""
    sec = math.floor(t)
    stamp.sec = int(sec)
    stamp.nanosec = min(int(round((t - sec) * 1e9)), 999_999_999)
    return stamp


def quaternion_from_euler(
    roll: float, pitch: float, yaw: float
) -> tuple[float, float, float, float]:
    """Unit quaternion ``(x, y, z, w)`` of ZYX angles; inverse of :func:`euler_from_quaternion`."""
    cr, sr = math.cos(roll / 2), math.sin(roll / 2)
    cp, sp = math.cos(pitch / 2), math.sin(pitch / 2)
    cy, sy = math.cos(yaw / 2), math.sin(yaw / 2)
    return (
        sr * cp * cy - cr * sp * sy,
        cr * sp * cy + sr * cp * sy,
        cr * cp * sy - sr * sp * cy,
        cr * cp * cy + sr * sp * sy,
    )


def _encode_fields(src: ObservationSource, msg: Any, value: np.ndarray) -> None:
    """Set the table fields of ``src`` in ``msg`` from ``value`` ``(D,)``.

    Derived angles build their quaternion (angles not listed are 0); explicit quaternion
    components are set afterwards, directly, so a source listing both keeps what it was given
    (the two agree when the vector came from one decoded message).
    """
    table = OBSERVATION_FIELDS[src.type]
    v = value.reshape(-1)
    if v.shape != (len(src.fields),):
        raise ConversionError(f"{src.key}: {v.size} values for fields {list(src.fields)}")
    angles: dict[str, list[float]] = {}
    explicit = []
    for f, x in zip(src.fields, v, strict=True):
        entry = table[f]
        if entry.angle is None:
            explicit.append((entry.path, float(x)))
        else:
            rpy = angles.setdefault(entry.path, [0.0, 0.0, 0.0])
            rpy[EULER_ANGLES.index(entry.angle)] = float(x)
    for path, (roll, pitch, yaw) in angles.items():
        q = attrgetter(path)(msg)
        q.x, q.y, q.z, q.w = quaternion_from_euler(roll, pitch, yaw)
    for path, x in explicit:
        parent, _, name = path.rpartition(".")
        setattr(attrgetter(parent)(msg), name, x)


def encode_observation(src: ObservationSource, value: np.ndarray, stamp: float) -> Any:
    """Encode an observation message from numpy (what a simulated robot publishes)."""
    cls = message_class(src.type)
    msg = cls()
    if hasattr(msg, "header"):
        sec_to_stamp(stamp, msg.header.stamp)
    t = src.type
    v = np.asarray(value)
    if t == "sensor_msgs/msg/JointState":
        msg.name = list(src.joints)
        n = len(src.joints)
        for i, f in enumerate(src.fields):
            setattr(msg, f, [float(x) for x in v[i * n : (i + 1) * n]])
    elif t in MULTI_ARRAY_TYPES:
        msg.data = [float(x) for x in v]
    elif t in SCALAR_TYPES:
        if v.size != 1:
            raise ConversionError(f"{src.key}: {t} holds one value, got {v.size}")
        msg.data = float(v.reshape(-1)[0])
    elif t in OBSERVATION_FIELDS:
        _encode_fields(src, msg, v)
    elif t == "sensor_msgs/msg/Joy":
        na = len(src.axes)
        msg.axes = [float(x) for x in v[:na]]
        msg.buttons = [int(x) for x in v[na:]]
    elif t == "sensor_msgs/msg/Image":
        img = np.ascontiguousarray(v, np.uint8)
        msg.height, msg.width = int(img.shape[0]), int(img.shape[1])
        msg.encoding = "rgb8" if img.shape[2] == 3 else "mono8"
        msg.step = int(img.shape[1] * img.shape[2])
        msg.data = img.tobytes()
    elif t == "sensor_msgs/msg/CompressedImage":
        img = np.ascontiguousarray(v, np.uint8)
        bgr = cv2.cvtColor(img, cv2.COLOR_RGB2BGR) if img.shape[2] == 3 else img
        if src.codec == "png":
            ok, buf = cv2.imencode(".png", bgr)
            msg.format = "png"
        else:
            ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, src.quality])
            msg.format = "jpeg"
        if not ok:
            raise ConversionError("image encoding failed")
        msg.data = buf.tobytes()
    return msg


def encode_command(
    sink: CommandSink, action: np.ndarray, stamp: float, dt: float | None = None
) -> Any:
    """Encode a command message from numpy.

    Args:
        sink: The mapping's command definition.
        action: ``(D,)`` action, or for ``JointTrajectory`` a chunk ``(h, D)`` (a single
            action is sent as one point).
        stamp: Time the (first) action is meant for; stamped messages carry it.
        dt: Control period, spacing the points of a trajectory.
    """
    msg = message_class(sink.type)()
    a = np.asarray(action, np.float64)
    t = sink.type
    if t in ("geometry_msgs/msg/Twist", "geometry_msgs/msg/TwistStamped"):
        twist = msg if t == "geometry_msgs/msg/Twist" else msg.twist
        if t == "geometry_msgs/msg/TwistStamped":
            sec_to_stamp(stamp, msg.header.stamp)
            msg.header.frame_id = sink.frame_id
        for f, x in zip(sink.fields, a.reshape(-1), strict=True):
            part, axis = f.split(".")
            setattr(getattr(twist, part), axis, float(x))
    elif t == "std_msgs/msg/Float64MultiArray":
        msg.data = [float(x) for x in a.reshape(-1)]
    elif t == "sensor_msgs/msg/JointState":
        sec_to_stamp(stamp, msg.header.stamp)
        msg.name = list(sink.joints)
        msg.position = [float(x) for x in a.reshape(-1)]
    elif t == "trajectory_msgs/msg/JointTrajectory":
        from trajectory_msgs.msg import JointTrajectoryPoint

        sec_to_stamp(stamp, msg.header.stamp)
        msg.header.frame_id = sink.frame_id
        msg.joint_names = list(sink.joints)
        chunk = a.reshape(-1, len(sink.joints))
        step = dt or 0.0
        points = []
        for i, row in enumerate(chunk):
            p = JointTrajectoryPoint(positions=[float(x) for x in row])
            sec_to_stamp(i * step, p.time_from_start)
            points.append(p)
        msg.points = points
    return msg
