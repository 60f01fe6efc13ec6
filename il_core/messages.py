"""ROS messages -> numpy, for the observations and the command of a robot mapping.

The decoders read message *fields* only (``msg.header.stamp.sec``, ``msg.data``, ...), never
a ROS message class, so they take the generated rclpy messages of a live node and the
message objects that the ``rosbags`` library deserialises from a bag alike: the recorder
(:mod:`il_ros.recorder_node`) and the bag import (:mod:`il_core.bag_import`) convert through
the same code. :mod:`il_ros.conversions` adds the encoders, which need the ROS classes.

Every decoder validates what it reads and raises :class:`ConversionError` with the reason
(wrong encoding, wrong size, NaN, missing joint, a zero quaternion where angles are asked);
nodes count and log those and never crash. Poses, twists, wrenches, IMUs and odometry are
decoded from the field table :data:`il_core.mapping.OBSERVATION_FIELDS`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
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

#: Types without a header (their samples are stamped with the receive time).
UNSTAMPED_TYPES = frozenset(
    {"geometry_msgs/msg/Pose", "geometry_msgs/msg/Twist", *SCALAR_TYPES, *MULTI_ARRAY_TYPES}
)


class ConversionError(ValueError):
    """A message could not be converted; the message says why."""


def stamp_to_sec(stamp: Any) -> float | None:
    """``builtin_interfaces/Time`` to seconds; ``None`` for an unset (zero) stamp."""
    if stamp.sec == 0 and stamp.nanosec == 0:
        return None
    return stamp.sec + stamp.nanosec * 1e-9


def _finite(values: np.ndarray, what: str) -> np.ndarray:
    if not np.all(np.isfinite(values)):
        raise ConversionError(f"{what} contains NaN or infinity")
    return values


_F32_MAX = float(np.finfo(np.float32).max)
_NOT_FINITE = "NaN, infinite or beyond the float32 range"


def euler_from_quaternion(x: float, y: float, z: float, w: float) -> tuple[float, float, float]:
    """``(roll, pitch, yaw)`` in radians of a quaternion, ZYX convention (yaw applied first).

    The quaternion need not be unit: every term is divided by the squared norm, so a
    slightly denormalised orientation from a driver gives the angles of its direction. A NaN
    or infinite component gives NaN angles, left to the caller's finite check (which names
    the fields).

    Raises:
        ConversionError: if the quaternion has zero norm (it then has no orientation).
    """
    n2 = x * x + y * y + z * z + w * w
    if not math.isfinite(n2):
        return math.nan, math.nan, math.nan
    if n2 < 1e-12:
        raise ConversionError("quaternion has zero norm")
    roll = math.atan2(2.0 * (w * x + y * z), w * w - x * x - y * y + z * z)
    # Clipped: rounding can push |sin(pitch)| just past 1 at the gimbal-lock poles.
    pitch = math.asin(max(-1.0, min(1.0, 2.0 * (w * y - z * x) / n2)))
    yaw = math.atan2(2.0 * (w * z + x * y), w * w + x * x - y * y - z * z)
    return roll, pitch, yaw


def _tuple_getter(paths: list[str]) -> Callable[[Any], tuple[float, ...]]:
    """``msg -> tuple of the attributes at paths``, one C call (``attrgetter``) per message."""
    if len(paths) > 1:
        return attrgetter(*paths)
    if paths:
        get = attrgetter(paths[0])
        return lambda msg: (get(msg),)
    return lambda msg: ()


def _stamp_getter(type_name: str) -> Callable[[Any], float | None]:
    """``msg -> header stamp`` for stamped types, ``msg -> None`` for the others."""
    if type_name in UNSTAMPED_TYPES:
        return lambda msg: None
    return lambda msg: stamp_to_sec(msg.header.stamp)


def _field_decoder(src: ObservationSource) -> Callable[[Any], tuple[np.ndarray, float | None]]:
    """Decoder of a source whose type is in :data:`OBSERVATION_FIELDS`.

    Everything that depends only on the source (table look-ups, attribute getters, which
    quaternions to turn into angles, the field order) is resolved here, once; a message then
    costs one C-level ``attrgetter`` call for the plain fields, one conversion per quaternion
    whose angles are used, and a finite check on plain floats (numpy's ``isfinite().all()``
    costs more than the rest together on vectors this short).
    """
    label = src.type.rsplit("/", 1)[1]
    fields = src.fields
    entries = [OBSERVATION_FIELDS[src.type][f] for f in fields]
    plain = [i for i, e in enumerate(entries) if e.angle is None]
    get_plain = _tuple_getter([entries[i].path for i in plain])
    # Each quaternion is converted once per message, however many of its angles are used;
    # its (roll, pitch, yaw) are appended after the plain values, and `order` then puts every
    # value back at its field's position.
    quat_paths = list(dict.fromkeys(e.path for e in entries if e.angle is not None))
    quaternions = [(attrgetter(path), path) for path in quat_paths]
    order = [
        plain.index(i)
        if e.angle is None
        else len(plain) + 3 * quat_paths.index(e.path) + EULER_ANGLES.index(e.angle)
        for i, e in enumerate(entries)
    ]
    # Identity only when every computed value is used in place (no angle left unused).
    reorder = order != list(range(len(plain) + 3 * len(quat_paths)))
    stamp_of = _stamp_getter(src.type)
    # REP 145: an IMU without an orientation estimate says so with covariance[0] = -1; its
    # quaternion is then meaningless (often all zeros), not a pose to learn from.
    imu_orientation = [
        f
        for f, e in zip(fields, entries, strict=True)
        if src.type == "sensor_msgs/msg/Imu" and e.path.split(".")[0] == "orientation"
    ]

    def decode(msg: Any) -> tuple[np.ndarray, float | None]:
        if imu_orientation and msg.orientation_covariance[0] == -1.0:
            raise ConversionError(
                "Imu has no orientation (orientation_covariance[0] == -1, REP 145) but the "
                f"mapping asks for {imu_orientation}"
            )
        vals: Sequence[float] = get_plain(msg)
        if quaternions:
            with_angles = list(vals)
            for get_q, path in quaternions:
                q = get_q(msg)
                try:
                    with_angles.extend(euler_from_quaternion(q.x, q.y, q.z, q.w))
                except ConversionError as e:
                    raise ConversionError(f"{label} {path}: {e}; cannot derive angles") from None
            vals = with_angles
        if reorder:
            vals = [vals[i] for i in order]
        # On the float64 values, before the cast: NaN fails both comparisons, and a value
        # beyond float32's range is refused instead of becoming inf with a numpy warning.
        if not all(-_F32_MAX <= x <= _F32_MAX for x in vals):
            bad = [f for f, x in zip(fields, vals, strict=True) if not -_F32_MAX <= x <= _F32_MAX]
            raise ConversionError(f"{label} {bad}: {_NOT_FINITE}")
        return np.array(vals, np.float32), stamp_of(msg)

    return decode


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
            out: list[float] = []
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
    if t in MULTI_ARRAY_TYPES:
        size = src.size

        def multi_array(msg: Any) -> tuple[np.ndarray, float | None]:
            v = np.asarray(msg.data, np.float32)
            if v.shape != (size,):
                raise ConversionError(f"expected {size} values, got {v.size}")
            return _finite(v, "array"), None

        return multi_array
    if t in SCALAR_TYPES:
        label = t.rsplit("/", 1)[1]

        def scalar(msg: Any) -> tuple[np.ndarray, float | None]:
            x = msg.data
            if not -_F32_MAX <= x <= _F32_MAX:
                raise ConversionError(f"{label} data {x}: {_NOT_FINITE}")
            return np.array([x], np.float32), None

        return scalar
    if t in OBSERVATION_FIELDS:
        return _field_decoder(src)
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
