"""Arm, IMU and scalar observation types: the field table, validation and conversions.

Real message classes from geometry_msgs, sensor_msgs and std_msgs; no ROS graph.
"""

import math
from operator import attrgetter

import numpy as np
import pytest
from geometry_msgs.msg import PoseStamped, Quaternion, TwistStamped, WrenchStamped
from sensor_msgs.msg import Imu
from std_msgs.msg import Float32, Float64

from il_core.config import ConfigError, safe_load
from il_core.mapping import (
    IMU_FIELDS,
    OBSERVATION_FIELDS,
    ODOM_FIELDS,
    POSE_FIELDS,
    TWIST_FIELDS,
    WRENCH_FIELDS,
    ObservationSource,
    mapping_differences,
    mapping_from_dict,
)
from il_ros.conversions import (
    ConversionError,
    encode_observation,
    euler_from_quaternion,
    make_observation_decoder,
    message_class,
    quaternion_from_euler,
)

ACTION = {"topic": "/cmd", "type": "geometry_msgs/msg/Twist", "fields": ["linear.x"]}


def _stamp(msg, sec=7, nanosec=250_000_000):
    msg.header.stamp.sec, msg.header.stamp.nanosec = sec, nanosec
    return msg


def _rotation(x, y, z, w):
    """Rotation matrix of a unit quaternion (the textbook formula)."""
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )


def _zyx(roll, pitch, yaw):
    """``Rz(yaw) @ Ry(pitch) @ Rx(roll)``: the ZYX convention, built independently."""
    cr, sr, cp, sp, cy, sy = (f(a) for a in (roll, pitch, yaw) for f in (math.cos, math.sin))
    rx = np.array([[1, 0, 0], [0, cr, -sr], [0, sr, cr]])
    ry = np.array([[cp, 0, sp], [0, 1, 0], [-sp, 0, cp]])
    rz = np.array([[cy, -sy, 0], [sy, cy, 0], [0, 0, 1]])
    return rz @ ry @ rx


def _source(type_name, fields=(), key="obs"):
    return ObservationSource(key, "/topic", type_name, fields=tuple(fields))


# A unit quaternion of roll 0.3, pitch -0.4, yaw 1.2 (ZYX), written out so the decoder is
# checked against numbers, not against the encoder; test_euler_angles_follow_the_zyx_convention
# checks these numbers against rotation matrices built independently.
Q = (0.231795606, -0.079430528, 0.571676477, 0.783037415)
RPY = (0.3, -0.4, 1.2)
EULER = ("roll", "pitch", "yaw")


def test_the_field_table_is_pure_data_whose_paths_resolve_in_the_real_messages():
    for type_name, fields in OBSERVATION_FIELDS.items():
        msg = message_class(type_name)()
        for name, entry in fields.items():
            target = attrgetter(entry.path)(msg)
            if entry.angle is None:
                assert isinstance(target, float), (type_name, name, entry.path)
            else:
                assert isinstance(target, Quaternion), (type_name, name, entry.path)
    with pytest.raises(TypeError):
        OBSERVATION_FIELDS["geometry_msgs/msg/PoseStamped"]["x"] = None  # read-only


def test_field_names_per_type():
    xyz = ("x", "y", "z")
    quat = tuple(f"orientation.{a}" for a in "xyzw") + ("roll", "pitch", "yaw")
    assert POSE_FIELDS == tuple(f"position.{a}" for a in xyz) + quat
    assert tuple(OBSERVATION_FIELDS["geometry_msgs/msg/Pose"]) == POSE_FIELDS
    assert tuple(OBSERVATION_FIELDS["geometry_msgs/msg/TwistStamped"]) == TWIST_FIELDS
    assert WRENCH_FIELDS == tuple(f"{p}.{a}" for p in ("force", "torque") for a in xyz)
    assert IMU_FIELDS == quat + tuple(
        f"{p}.{a}" for p in ("angular_velocity", "linear_acceleration") for a in xyz
    )
    # Stored in existing datasets and checkpoints: must never change.
    assert ODOM_FIELDS == (
        "pose.x",
        "pose.y",
        "pose.z",
        "pose.yaw",
        "twist.linear.x",
        "twist.linear.y",
        "twist.linear.z",
        "twist.angular.x",
        "twist.angular.y",
        "twist.angular.z",
    )


def test_euler_angles_follow_the_zyx_convention():
    np.testing.assert_allclose(_rotation(*Q), _zyx(*RPY), atol=1e-6)
    np.testing.assert_allclose(euler_from_quaternion(*Q), RPY, atol=1e-6)
    np.testing.assert_allclose(quaternion_from_euler(*RPY), Q, atol=1e-6)
    # Not unit: the angles of its direction.
    np.testing.assert_allclose(euler_from_quaternion(*(3.0 * q for q in Q)), RPY, atol=1e-6)
    # Gimbal lock: pitch clipped to +-pi/2 rather than a math domain error.
    assert euler_from_quaternion(0.0, math.sqrt(0.5), 0.0, math.sqrt(0.5))[1] == pytest.approx(
        math.pi / 2
    )
    with pytest.raises(ConversionError, match="zero norm"):
        euler_from_quaternion(0.0, 0.0, 0.0, 0.0)


def _pose_stamped():
    msg = _stamp(PoseStamped())
    msg.pose.position.x, msg.pose.position.y, msg.pose.position.z = 1.0, 2.0, 3.0
    o = msg.pose.orientation
    o.x, o.y, o.z, o.w = Q
    return msg


def _pose():
    return _pose_stamped().pose


def _twist():
    msg = _stamp(TwistStamped())
    msg.twist.linear.x, msg.twist.linear.y, msg.twist.linear.z = 0.1, 0.2, 0.3
    msg.twist.angular.x, msg.twist.angular.y, msg.twist.angular.z = 0.4, 0.5, 0.6
    return msg


def _wrench():
    msg = _stamp(WrenchStamped())
    msg.wrench.force.x, msg.wrench.force.y, msg.wrench.force.z = 1.5, -2.5, 9.8
    msg.wrench.torque.x, msg.wrench.torque.y, msg.wrench.torque.z = 0.01, 0.02, -0.03
    return msg


def _imu():
    msg = _stamp(Imu())
    msg.orientation.x, msg.orientation.y, msg.orientation.z, msg.orientation.w = Q
    msg.angular_velocity.x, msg.angular_velocity.y, msg.angular_velocity.z = 0.1, -0.2, 0.3
    msg.linear_acceleration.x, msg.linear_acceleration.y = 0.5, -0.5
    msg.linear_acceleration.z = 9.81
    return msg


DECODE_CASES = [
    (
        "geometry_msgs/msg/PoseStamped",
        _pose_stamped,
        ["yaw", "position.z", "orientation.w", "roll", "position.x", "pitch"],
        [RPY[2], 3.0, Q[3], RPY[0], 1.0, RPY[1]],
        7.25,
    ),
    (
        "geometry_msgs/msg/Pose",
        _pose,
        ["position.y", "orientation.x", "orientation.y", "orientation.z", "yaw"],
        [2.0, Q[0], Q[1], Q[2], RPY[2]],
        None,
    ),
    (
        "geometry_msgs/msg/TwistStamped",
        _twist,
        ["angular.z", "linear.x", "linear.y"],
        [0.6, 0.1, 0.2],
        7.25,
    ),
    (
        "geometry_msgs/msg/WrenchStamped",
        _wrench,
        ["torque.z", "force.x", "force.y", "force.z", "torque.x"],
        [-0.03, 1.5, -2.5, 9.8, 0.01],
        7.25,
    ),
    (
        "sensor_msgs/msg/Imu",
        _imu,
        ["linear_acceleration.z", "pitch", "angular_velocity.x", "orientation.z", "roll"],
        [9.81, RPY[1], 0.1, Q[2], RPY[0]],
        7.25,
    ),
    ("std_msgs/msg/Float64", lambda: Float64(data=-0.125), [], [-0.125], None),
    ("std_msgs/msg/Float32", lambda: Float32(data=2.5), [], [2.5], None),
]


@pytest.mark.parametrize(
    "type_name, make, fields, expected, stamp", DECODE_CASES, ids=[c[0] for c in DECODE_CASES]
)
def test_decode_gives_the_fields_in_order_and_the_header_stamp(
    type_name, make, fields, expected, stamp
):
    value, got_stamp = make_observation_decoder(_source(type_name, fields))(make())
    assert value.dtype == np.float32 and value.shape == (len(expected),)
    np.testing.assert_allclose(value, expected, atol=1e-6)
    assert got_stamp == (None if stamp is None else pytest.approx(stamp))


@pytest.mark.parametrize(
    "type_name, fields",
    [
        ("geometry_msgs/msg/PoseStamped", POSE_FIELDS),
        ("geometry_msgs/msg/PoseStamped", ("position.x", "roll", "pitch", "yaw")),
        ("geometry_msgs/msg/PoseStamped", ("position.x", "roll")),
        ("geometry_msgs/msg/PoseStamped", ("pitch",)),
        ("geometry_msgs/msg/Pose", ("position.y", "yaw", "roll")),
        ("geometry_msgs/msg/TwistStamped", TWIST_FIELDS),
        ("geometry_msgs/msg/WrenchStamped", WRENCH_FIELDS[::-1]),
        ("sensor_msgs/msg/Imu", IMU_FIELDS),
        ("sensor_msgs/msg/Imu", ("angular_velocity.z", "yaw", "linear_acceleration.x")),
        ("nav_msgs/msg/Odometry", ODOM_FIELDS),
        ("std_msgs/msg/Float64", ()),
        ("std_msgs/msg/Float32", ()),
    ],
)
def test_encode_decode_round_trip(type_name, fields, rng):
    src = _source(type_name, fields)
    # Angles within (-pi/2, pi/2) so pitch stays away from gimbal lock; a quaternion listed
    # explicitly must be a unit one to mean the same as the angles next to it.
    value = rng.uniform(-1.2, 1.2, src.dim).astype(np.float32)
    quat = [i for i, f in enumerate(fields) if f.startswith("orientation.")]
    if len(quat) == 4:
        value[quat] = quaternion_from_euler(*(value[fields.index(a)] for a in EULER))
    msg = encode_observation(src, value, 12.5)
    assert isinstance(msg, message_class(type_name))
    back, stamp = make_observation_decoder(src)(msg)
    np.testing.assert_allclose(back, value, atol=1e-5)
    assert stamp == (pytest.approx(12.5) if hasattr(msg, "header") else None)


@pytest.mark.parametrize("type_name", ["geometry_msgs/msg/PoseStamped", "sensor_msgs/msg/Imu"])
def test_angles_encode_to_the_quaternion_that_decodes_back_to_them(type_name):
    explicit = _source(type_name, [f"orientation.{a}" for a in "xyzw"])
    derived = _source(type_name, EULER)
    msg = encode_observation(derived, np.array(RPY, np.float32), 1.0)
    q, _ = make_observation_decoder(explicit)(msg)
    np.testing.assert_allclose(q, Q, atol=1e-6)
    rpy, _ = make_observation_decoder(derived)(encode_observation(explicit, np.array(Q), 1.0))
    np.testing.assert_allclose(rpy, RPY, atol=1e-6)
    # Angles not listed are 0: yaw alone is a rotation about z.
    yaw_only = encode_observation(_source(type_name, ["yaw"]), np.array([0.8]), 1.0)
    q, _ = make_observation_decoder(explicit)(yaw_only)
    np.testing.assert_allclose(q, [0.0, 0.0, math.sin(0.4), math.cos(0.4)], atol=1e-6)


PLAIN_CASES = [
    ("geometry_msgs/msg/PoseStamped", _pose_stamped, "position.y", "pose.position.y"),
    ("geometry_msgs/msg/Pose", _pose, "orientation.w", "orientation.w"),
    ("geometry_msgs/msg/TwistStamped", _twist, "angular.x", "twist.angular.x"),
    ("geometry_msgs/msg/WrenchStamped", _wrench, "torque.y", "wrench.torque.y"),
    ("sensor_msgs/msg/Imu", _imu, "linear_acceleration.y", "linear_acceleration.y"),
]
ANGLE_CASES = [
    ("geometry_msgs/msg/PoseStamped", _pose_stamped, "yaw", "pose.orientation.z"),
    ("sensor_msgs/msg/Imu", _imu, "roll", "orientation.x"),
]


@pytest.mark.parametrize(
    "type_name, make, field, path, bad",
    # 1e39 is finite in the message but beyond float32; in a quaternion it is only a scale.
    [(*c, bad) for c in PLAIN_CASES for bad in (math.nan, math.inf, 1e39)]
    + [(*c, bad) for c in ANGLE_CASES for bad in (math.nan, -math.inf)],
)
def test_non_finite_values_are_rejected_naming_the_field(type_name, make, field, path, bad):
    src = _source(type_name, ["position.x" if "Pose" in type_name else field, field])
    msg = make()
    parent, _, name = path.rpartition(".")
    setattr(attrgetter(parent)(msg), name, bad)
    with pytest.raises(ConversionError, match=rf"{type_name.rsplit('/')[-1]} \[.*'{field}'"):
        make_observation_decoder(src)(msg)


@pytest.mark.parametrize("cls", [Float64, Float32])
def test_non_finite_scalars_are_rejected(cls):
    decode = make_observation_decoder(_source(f"std_msgs/msg/{cls.__name__}"))
    for bad in (math.nan, -math.inf):
        with pytest.raises(ConversionError, match=rf"{cls.__name__} data -?(nan|inf): NaN"):
            decode(cls(data=bad))
    with pytest.raises(ConversionError, match="float32 range"):
        make_observation_decoder(_source("std_msgs/msg/Float64"))(Float64(data=1e300))


def test_a_zero_quaternion_is_an_error_only_when_angles_are_asked():
    msg = PoseStamped()
    msg.pose.orientation.w = 0.0  # all four components zero
    with pytest.raises(ConversionError, match=r"PoseStamped pose.orientation: .*zero norm"):
        make_observation_decoder(_source("geometry_msgs/msg/PoseStamped", ["pitch"]))(msg)
    explicit = _source("geometry_msgs/msg/PoseStamped", ["position.x", "orientation.w"])
    np.testing.assert_array_equal(make_observation_decoder(explicit)(msg)[0], [0.0, 0.0])


def test_an_imu_without_orientation_refuses_orientation_fields_only():
    msg = _imu()
    msg.orientation_covariance[0] = -1.0  # REP 145: no orientation estimate
    with pytest.raises(ConversionError, match=r"Imu has no orientation.*\['yaw'\]"):
        make_observation_decoder(_source("sensor_msgs/msg/Imu", ["angular_velocity.z", "yaw"]))(
            msg
        )
    gyro = _source("sensor_msgs/msg/Imu", ["angular_velocity.z"])
    np.testing.assert_allclose(make_observation_decoder(gyro)(msg)[0], [0.3])


def _mapping(obs):
    return {"control_rate_hz": 50, "observations": obs, "action": ACTION}


@pytest.mark.parametrize(
    "raw, match",
    [
        (
            {"type": "geometry_msgs/msg/PoseStamped", "fields": ["position.x", "pose.yaw"]},
            r"observations.ee.fields: choose from \['position.x', .*'yaw'\] for "
            r"geometry_msgs/msg/PoseStamped, got .*unknown \['pose.yaw'\]",
        ),
        (
            {"type": "geometry_msgs/msg/PoseStamped"},
            r"observations.ee.fields: choose from .*none given",
        ),
        (
            {"type": "geometry_msgs/msg/WrenchStamped", "fields": ["force.w"]},
            r"observations.ee.fields: choose from \['force.x', .*'torque.z'\].*\['force.w'\]",
        ),
        (
            {"type": "geometry_msgs/msg/TwistStamped", "fields": ["linear"]},
            r"observations.ee.fields: choose from \['linear.x'.*unknown \['linear'\]",
        ),
        (
            {"type": "sensor_msgs/msg/Imu", "fields": ["orientation.w", "linear_velocity.x"]},
            r"observations.ee.fields: .*'linear_acceleration.z'\].*\['linear_velocity.x'\]",
        ),
        (
            {"type": "geometry_msgs/msg/Pose", "fields": ["roll", "Yaw"]},
            r"observations.ee.fields: .*unknown \['Yaw'\]",
        ),
        (
            # The new names are not Odometry names: those stay as they were.
            {"type": "nav_msgs/msg/Odometry", "fields": ["position.x"]},
            r"observations.ee.fields: choose from \['pose.x'.*unknown \['position.x'\]",
        ),
        (
            {"type": "std_msgs/msg/Float64", "fields": ["data"]},
            r"observations.ee.fields: std_msgs/msg/Float64 is a single value .*no fields, "
            r"got \['data'\]",
        ),
        (
            {"type": "std_msgs/Float32", "size": 3},
            r"observations.ee.size: std_msgs/msg/Float32 is a single value",
        ),
        (
            {"type": "std_msgs/msg/Float64", "names": ["a", "b"]},
            r"observations.ee.names: 2 names for 1 values",
        ),
    ],
)
def test_bad_fields_are_refused_naming_the_key_and_the_allowed_ones(raw, match):
    with pytest.raises(ConfigError, match=match):
        mapping_from_dict(_mapping({"ee": {"topic": "/t", **raw}}))


ARM_YAML = """
control_rate_hz: 50.0
observations:
  joints:
    topic: /joint_states
    type: sensor_msgs/msg/JointState
    joints: [shoulder, elbow, wrist]
    fields: [position]
  ee_pose:
    topic: /arm/ee_pose
    type: geometry_msgs/PoseStamped
    fields: [position.x, position.y, position.z, roll, pitch, yaw]
    max_age_s: 0.05
  ee_wrench:
    topic: /arm/ft
    type: geometry_msgs/msg/WrenchStamped
    fields: [force.x, force.y, force.z, torque.z]
  imu:
    topic: /imu
    type: sensor_msgs/msg/Imu
    fields: [angular_velocity.z, linear_acceleration.x, yaw]
  gripper:
    topic: /gripper/width
    type: std_msgs/msg/Float64
action:
  topic: /arm/cmd
  type: std_msgs/msg/Float64MultiArray
  size: 3
"""


def test_an_arm_mapping_mixing_the_types_gives_the_spec():
    mapping = mapping_from_dict(safe_load(ARM_YAML))
    spec = mapping.to_spec()
    shapes = {k: f.shape for k, f in spec.observations.items()}
    assert shapes == {
        "joints": (3,),
        "ee_pose": (6,),
        "ee_wrench": (4,),
        "imu": (3,),
        "gripper": (1,),
    }
    names = {k: f.names for k, f in spec.observations.items()}
    assert names["joints"] == ("shoulder.position", "elbow.position", "wrist.position")
    assert names["ee_pose"] == ("position.x", "position.y", "position.z", "roll", "pitch", "yaw")
    assert names["ee_wrench"] == ("force.x", "force.y", "force.z", "torque.z")
    assert names["imu"] == ("angular_velocity.z", "linear_acceleration.x", "yaw")
    assert names["gripper"] == ("gripper",)
    assert all(f.kind == "vector" for f in spec.observations.values())
    assert mapping.source("ee_pose").type == "geometry_msgs/msg/PoseStamped"  # shorthand

    # Stored in the spec, the mapping comes back equal; a changed field is a difference.
    again = mapping_from_dict(spec.metadata["ros_mapping"])
    assert again == mapping and mapping_differences(mapping, again) == []
    raw = safe_load(ARM_YAML)
    raw["observations"]["ee_pose"]["fields"][-1] = "orientation.z"
    problems = mapping_differences(mapping, mapping_from_dict(raw))
    assert len(problems) == 1 and "'ee_pose' fields" in problems[0]

    # Every source decodes what it encodes, through the same mapping.
    for src in mapping.observations:
        value = np.linspace(-0.5, 0.5, src.dim, dtype=np.float32)
        back, stamp = make_observation_decoder(src)(encode_observation(src, value, 3.0))
        np.testing.assert_allclose(back, value, atol=1e-6)
        assert stamp == (None if src.key == "gripper" else pytest.approx(3.0))


def test_a_mapping_stored_in_a_dataset_matches_its_yaml_whatever_the_key_order(tmp_path):
    # meta.json keeps observation keys sorted, a robot's YAML keeps them as written: the
    # inference node refused every checkpoint of the 6-DoF arm (joints, ee_pose, wrench, goal).
    from il_core.data import DatasetWriter
    from il_core.data.format import read_meta
    from il_core.mapping import load_mapping, mapping_of_spec

    mapping = load_mapping("config/arm6_mapping.yaml")
    assert [o.key for o in mapping.observations] == ["joints", "ee_pose", "wrench", "goal"]
    DatasetWriter(tmp_path / "data", mapping.to_spec()).close()
    stored = mapping_of_spec(read_meta(tmp_path / "data"))
    assert [o.key for o in stored.observations] != [o.key for o in mapping.observations]
    assert mapping_differences(stored, mapping) == []
    missing = mapping_from_dict(
        {
            **mapping.to_dict(),
            "observations": dict(list(mapping.to_dict()["observations"].items())[:3]),
        }
    )
    assert "observation keys" in mapping_differences(stored, missing)[0]
