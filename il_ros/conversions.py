"""ROS messages <-> numpy, driven by an :class:`il_core.mapping.RobotMapping`.

Every decoder validates what it reads and raises :class:`ConversionError` with the reason
(wrong encoding, wrong size, NaN, missing joint); nodes count and log those and never crash.
Encoders build the messages the simulated robot publishes and the commands the inference
and DAgger nodes send.

Large uint8 payloads are assigned from ``bytes`` (a buffer), which rclpy copies in C; filling
them element by element from Python is what makes naive image publishing slow
(ros2/rclpy#763).
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable
from typing import Any

import cv2
import numpy as np

from il_core.mapping import CommandSink, ObservationSource


class ConversionError(ValueError):
    """A message could not be converted; the message says why."""


_CLASSES: dict[str, type] = {}


def message_class(type_name: str) -> type:
    """Resolve ``pkg/msg/Type`` to the generated Python class."""
    cls = _CLASSES.get(type_name)
    if cls is None:
        pkg, _, name = type_name.split("/")
        cls = getattr(importlib.import_module(f"{pkg}.msg"), name)
        _CLASSES[type_name] = cls
    return cls


def stamp_to_sec(stamp: Any) -> float | None:
    """``builtin_interfaces/Time`` to seconds; ``None`` for an unset (zero) stamp."""
    if stamp.sec == 0 and stamp.nanosec == 0:
        return None
    return stamp.sec + stamp.nanosec * 1e-9


def sec_to_stamp(t: float, stamp: Any) -> Any:
    """Fill a ``builtin_interfaces/Time`` from seconds."""
    sec = math.floor(t)
    stamp.sec = int(sec)
    stamp.nanosec = min(int(round((t - sec) * 1e9)), 999_999_999)
    return stamp


def _finite(values: np.ndarray, what: str) -> np.ndarray:
    if not np.all(np.isfinite(values)):
        raise ConversionError(f"{what} contains NaN or infinity")
    return values


def _yaw(q: Any) -> float:
    return math.atan2(2.0 * (q.w * q.z + q.x * q.y), 1.0 - 2.0 * (q.y * q.y + q.z * q.z))


def _odom_value(msg: Any, name: str) -> float:
    if name == "pose.yaw":
        return _yaw(msg.pose.pose.orientation)
    if name.startswith("pose."):
        return float(getattr(msg.pose.pose.position, name[5:]))
    _, part, axis = name.split(".")
    return float(getattr(getattr(msg.twist.twist, part), axis))


_ENCODINGS = {"rgb8": 3, "bgr8": 3, "rgba8": 4, "bgra8": 4, "mono8": 1, "8UC1": 1, "8UC3": 3}


def _fit_image(img: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Resize (area interpolation) and convert channels to ``shape`` ``(H, W, C)``, RGB."""
    h, w, c = shape
    if img.ndim == 2:
        img = img[:, :, None]
    if img.shape[2] == 1 and c == 3:
        img = np.repeat(img, 3, axis=2)
    elif img.shape[2] == 3 and c == 1:
        img = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)[:, :, None]
    if img.shape[:2] != (h, w):
        img = cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA)
        if img.ndim == 2:
            img = img[:, :, None]
    return np.ascontiguousarray(img, dtype=np.uint8)


def decode_image(msg: Any, shape: tuple[int, ...]) -> np.ndarray:
    """``sensor_msgs/Image`` -> ``(H, W, C)`` uint8 RGB resized to ``shape``."""
    enc = msg.encoding
    ch = _ENCODINGS.get(enc)
    if ch is None:
        raise ConversionError(f"unsupported image encoding {enc!r}; use one of {list(_ENCODINGS)}")
    h, w, step = int(msg.height), int(msg.width), int(msg.step)
    if h < 1 or w < 1 or step < w * ch:
        raise ConversionError(f"bad image geometry {w}x{h} step {step} for {enc}")
    data = np.frombuffer(bytes(msg.data), np.uint8)
    if data.size != h * step:
        raise ConversionError(
            f"image data has {data.size} bytes, expected {h * step} ({w}x{h} {enc}, step {step})"
        )
    img = data.reshape(h, step)[:, : w * ch].reshape(h, w, ch)
    if enc in ("bgr8", "bgra8"):
        img = img[:, :, 2::-1]
    elif ch == 4:
        img = img[:, :, :3]
    return _fit_image(img, shape)


def decode_compressed(msg: Any, shape: tuple[int, ...]) -> np.ndarray:
    """``sensor_msgs/CompressedImage`` (JPEG/PNG) -> ``(H, W, C)`` uint8 RGB."""
    buf = np.frombuffer(bytes(msg.data), np.uint8)
    flag = cv2.IMREAD_GRAYSCALE if shape[2] == 1 else cv2.IMREAD_COLOR
    img = cv2.imdecode(buf, flag) if buf.size else None
    if img is None:
        raise ConversionError(
            f"cannot decode compressed image (format {msg.format!r}, {buf.size} bytes)"
        )
    if img.ndim == 3:
        img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    return _fit_image(img, shape)


def make_observation_decoder(
    src: ObservationSource,
) -> Callable[[Any], tuple[np.ndarray, float | None]]:
    """A function ``msg -> (value, header stamp or None)`` for one observation source.

    The value is float32 ``(D,)`` for vectors and uint8 ``(H, W, C)`` for images.
    """
    t = src.type
    if t == "sensor_msgs/msg/JointState":
        joints, fields = src.joints, src.fields

        def joint_state(msg: Any) -> tuple[np.ndarray, float | None]:
            index = {n: i for i, n in enumerate(msg.name)}
            missing = [j for j in joints if j not in index]
            if missing:
                raise ConversionError(f"JointState lacks joints {missing}")
            out = []
            for f in fields:
                arr = getattr(msg, f)
                if len(arr) != len(msg.name):
                    raise ConversionError(
                        f"JointState has {len(msg.name)} names but {len(arr)} {f} values"
                    )
                out.extend(arr[index[j]] for j in joints)
            v = _finite(np.asarray(out, np.float32), "JointState")
            return v, stamp_to_sec(msg.header.stamp)

        return joint_state
    if t.startswith("std_msgs/msg/Float"):
        size = src.size

        def multi_array(msg: Any) -> tuple[np.ndarray, float | None]:
            v = np.asarray(msg.data, np.float32)
            if v.shape != (size,):
                raise ConversionError(f"expected {size} values, got {v.size}")
            return _finite(v, "array"), None

        return multi_array
    if t == "nav_msgs/msg/Odometry":
        fields = src.fields

        def odometry(msg: Any) -> tuple[np.ndarray, float | None]:
            v = np.array([_odom_value(msg, f) for f in fields], np.float32)
            return _finite(v, "Odometry"), stamp_to_sec(msg.header.stamp)

        return odometry
    if t == "sensor_msgs/msg/Joy":
        axes, buttons = src.axes, src.buttons

        def joy(msg: Any) -> tuple[np.ndarray, float | None]:
            if axes and max(axes) >= len(msg.axes):
                raise ConversionError(f"Joy has {len(msg.axes)} axes, need index {max(axes)}")
            if buttons and max(buttons) >= len(msg.buttons):
                raise ConversionError(
                    f"Joy has {len(msg.buttons)} buttons, need index {max(buttons)}"
                )
            v = [msg.axes[a] for a in axes] + [float(msg.buttons[b] != 0) for b in buttons]
            return _finite(np.asarray(v, np.float32), "Joy"), stamp_to_sec(msg.header.stamp)

        return joy
    if t == "sensor_msgs/msg/Image":
        return lambda msg: (decode_image(msg, src.shape), stamp_to_sec(msg.header.stamp))
    if t == "sensor_msgs/msg/CompressedImage":
        return lambda msg: (decode_compressed(msg, src.shape), stamp_to_sec(msg.header.stamp))
    raise ConversionError(f"no decoder for {t}")


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
    elif t.startswith("std_msgs/msg/Float"):
        msg.data = [float(x) for x in v]
    elif t == "nav_msgs/msg/Odometry":
        for f, x in zip(src.fields, v, strict=True):
            if f == "pose.yaw":
                msg.pose.pose.orientation.z = math.sin(float(x) / 2)
                msg.pose.pose.orientation.w = math.cos(float(x) / 2)
            elif f.startswith("pose."):
                setattr(msg.pose.pose.position, f[5:], float(x))
            else:
                _, part, axis = f.split(".")
                setattr(getattr(msg.twist.twist, part), axis, float(x))
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


def decode_command(sink: CommandSink, msg: Any) -> tuple[np.ndarray, float | None]:
    """Command message -> ``(D,)`` float32 action (the first point of a trajectory)."""
    t = sink.type
    if t in ("geometry_msgs/msg/Twist", "geometry_msgs/msg/TwistStamped"):
        twist = msg if t == "geometry_msgs/msg/Twist" else msg.twist
        vals = [getattr(getattr(twist, f.split(".")[0]), f.split(".")[1]) for f in sink.fields]
        stamp = stamp_to_sec(msg.header.stamp) if t.endswith("Stamped") else None
        return _finite(np.asarray(vals, np.float32), "command"), stamp
    if t == "std_msgs/msg/Float64MultiArray":
        v = np.asarray(msg.data, np.float32)
        if v.shape != (sink.size,):
            raise ConversionError(f"command has {v.size} values, expected {sink.size}")
        return _finite(v, "command"), None
    if t == "sensor_msgs/msg/JointState":
        index = {n: i for i, n in enumerate(msg.name)}
        missing = [j for j in sink.joints if j not in index]
        if missing or len(msg.position) != len(msg.name):
            raise ConversionError(f"command JointState lacks joints {missing} or positions")
        v = np.asarray([msg.position[index[j]] for j in sink.joints], np.float32)
        return _finite(v, "command"), stamp_to_sec(msg.header.stamp)
    if t == "trajectory_msgs/msg/JointTrajectory":
        if not msg.points:
            raise ConversionError("JointTrajectory has no points")
        index = {n: i for i, n in enumerate(msg.joint_names)}
        missing = [j for j in sink.joints if j not in index]
        if missing:
            raise ConversionError(f"JointTrajectory lacks joints {missing}")
        pos = msg.points[0].positions
        v = np.asarray([pos[index[j]] for j in sink.joints], np.float32)
        return _finite(v, "command"), stamp_to_sec(msg.header.stamp)
    raise ConversionError(f"no command decoder for {t}")
