"""Message <-> numpy conversions and the robot mapping, without a ROS graph."""

import numpy as np
import pytest
from nav_msgs.msg import Odometry
from sensor_msgs.msg import CompressedImage, Image, JointState, Joy
from trajectory_msgs.msg import JointTrajectory

from il_core.config import ConfigError
from il_core.mapping import (
    CommandSink,
    ObservationSource,
    load_mapping,
    mapping_differences,
    mapping_from_dict,
)
from il_ros.conversions import (
    ConversionError,
    decode_command,
    encode_command,
    encode_observation,
    make_observation_decoder,
)

JOINTS = ObservationSource(
    "arm",
    "/joint_states",
    "sensor_msgs/msg/JointState",
    joints=("a", "b"),
    fields=("position", "velocity"),
)


def test_joint_state_selects_joints_by_name_in_order():
    msg = JointState(name=["b", "x", "a"], position=[2.0, 9.0, 1.0], velocity=[20.0, 0.0, 10.0])
    msg.header.stamp.sec, msg.header.stamp.nanosec = 5, 500_000_000
    value, stamp = make_observation_decoder(JOINTS)(msg)
    np.testing.assert_array_equal(value, [1.0, 2.0, 10.0, 20.0])
    assert stamp == pytest.approx(5.5)


@pytest.mark.parametrize(
    "msg, reason",
    [
        (JointState(name=["a"], position=[1.0], velocity=[1.0]), "lacks joints \\['b'\\]"),
        (JointState(name=["a", "b"], position=[1.0, 2.0], velocity=[]), "0 velocity values"),
        (JointState(name=["a", "b"], position=[1.0, float("nan")], velocity=[0.0, 0.0]), "NaN"),
    ],
)
def test_bad_joint_states_are_rejected_with_the_reason(msg, reason):
    with pytest.raises(ConversionError, match=reason):
        make_observation_decoder(JOINTS)(msg)


def test_images_raw_and_compressed_are_resized_to_rgb():
    src = ObservationSource("cam", "/c", "sensor_msgs/msg/Image", shape=(32, 32, 3))
    img = np.zeros((64, 48, 3), np.uint8)
    img[..., 2] = 255  # blue in BGR order below
    msg = Image(height=64, width=48, encoding="bgr8", step=144, data=img.tobytes())
    out, _ = make_observation_decoder(src)(msg)
    assert out.shape == (32, 32, 3) and out[0, 0].tolist() == [255, 0, 0]  # BGR blue -> RGB
    with pytest.raises(ConversionError, match="unsupported image encoding 'yuv422'"):
        make_observation_decoder(src)(
            Image(height=2, width=2, encoding="yuv422", step=4, data=bytes(8))
        )
    with pytest.raises(ConversionError, match="image data has 10 bytes"):
        make_observation_decoder(src)(
            Image(height=2, width=2, encoding="rgb8", step=6, data=bytes(10))
        )
    csrc = ObservationSource(
        "cam", "/c", "sensor_msgs/msg/CompressedImage", shape=(32, 32, 3), codec="png"
    )
    rgb = np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8)
    back, _ = make_observation_decoder(csrc)(encode_observation(csrc, rgb, 1.0))
    np.testing.assert_array_equal(back, rgb)  # PNG: lossless round trip
    with pytest.raises(ConversionError, match="cannot decode"):
        make_observation_decoder(csrc)(CompressedImage(format="jpeg", data=b"junk"))


def test_odometry_yaw_and_joy():
    src = ObservationSource(
        "odom", "/odom", "nav_msgs/msg/Odometry", fields=("pose.x", "pose.yaw", "twist.angular.z")
    )
    v = np.array([1.5, 0.7, -0.2], np.float32)
    out, _ = make_observation_decoder(src)(encode_observation(src, v, 3.0))
    np.testing.assert_allclose(out, v, atol=1e-6)
    assert isinstance(encode_observation(src, v, 3.0), Odometry)
    joy = ObservationSource("joy", "/joy", "sensor_msgs/msg/Joy", axes=(0, 2), buttons=(1,))
    out, _ = make_observation_decoder(joy)(Joy(axes=[0.5, 0.0, -1.0], buttons=[0, 1]))
    np.testing.assert_array_equal(out, [0.5, -1.0, 1.0])
    with pytest.raises(ConversionError, match="Joy has 1 axes"):
        make_observation_decoder(joy)(Joy(axes=[0.5], buttons=[0, 1]))


def test_commands_round_trip_and_trajectories_carry_the_chunk():
    twist = CommandSink("/cmd", "geometry_msgs/msg/TwistStamped", fields=("linear.x", "angular.z"))
    a, stamp = decode_command(twist, encode_command(twist, np.array([0.3, -1.0]), 12.25))
    np.testing.assert_allclose(a, [0.3, -1.0])
    assert stamp == pytest.approx(12.25)
    traj = CommandSink("/traj", "trajectory_msgs/msg/JointTrajectory", joints=("a", "b"))
    chunk = np.arange(8, dtype=np.float32).reshape(4, 2)
    msg = encode_command(traj, chunk, 100.0, dt=0.02)
    assert isinstance(msg, JointTrajectory) and len(msg.points) == 4
    assert msg.points[3].time_from_start.nanosec == 60_000_000
    assert msg.points[2].positions.tolist() == [4.0, 5.0]
    np.testing.assert_array_equal(decode_command(traj, msg)[0], [0.0, 1.0])


def test_mapping_validation_and_differences(tmp_path):
    good = load_mapping("config/point_reach_mapping.yaml")
    spec = good.to_spec()
    assert list(spec.observations) == ["goal", "position"]
    assert spec.action.low == (-1.0, -1.0)
    with pytest.raises(ConfigError, match=r"observations.position.fields: choose from"):
        mapping_from_dict(
            {
                "control_rate_hz": 10,
                "observations": {
                    "position": {
                        "topic": "/odom",
                        "type": "nav_msgs/msg/Odometry",
                        "fields": ["pose.w"],
                    }
                },
                "action": {
                    "topic": "/c",
                    "type": "geometry_msgs/msg/Twist",
                    "fields": ["linear.x"],
                },
            }
        )
    with pytest.raises(ConfigError, match=r"action.type: unsupported"):
        mapping_from_dict(
            {
                "control_rate_hz": 10,
                "observations": {
                    "g": {"topic": "/g", "type": "std_msgs/msg/Float64MultiArray", "size": 2}
                },
                "action": {"topic": "/c", "type": "std_msgs/msg/String"},
            }
        )
    moved = mapping_from_dict(
        {**good.to_dict(), "action": {**good.to_dict()["action"], "topic": "/robot/cmd_vel"}}
    )
    assert mapping_differences(good, moved) == []  # a remapped topic is fine
    other = mapping_from_dict({**good.to_dict(), "control_rate_hz": 50.0})
    assert "control_rate_hz" in mapping_differences(good, other)[0]
