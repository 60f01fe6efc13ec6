"""Inference node faults over DDS: stale camera, malformed messages, wrong checkpoints, reload."""

import json
import time

import cv2
import numpy as np
import pytest
import yaml
from geometry_msgs.msg import Twist
from nav_msgs.msg import Odometry
from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue
from rcl_interfaces.srv import SetParameters
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Float64MultiArray, String

from il_core.collect import collect
from il_core.train import train
from il_ros.common import STATUS_QOS, publisher_sensor_qos
from tests.ros_utils import RosProbe

pytestmark = pytest.mark.ros

RATE = 20.0
TINY = {
    "policy": {
        "name": "bc",
        "hidden_dims": [16],
        "image_encoder": {"channels": [8, 8], "strides": [2, 2], "feature_dim": 8},
    },
    "train": {"steps": 30, "batch_size": 32, "val_fraction": 0.0, "num_threads": 1},
}


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    root = tmp_path_factory.mktemp("ckpt")
    collect("il_ros/PointReachCamera-v0", "auto", 2, 0, root / "cam")
    collect("CartPole-v1", "auto", 2, 0, root / "cartpole")
    cam = train([root / "cam"], root / "cam_bc", TINY, seed=0, progress=False)["checkpoint"]
    cp = train([root / "cartpole"], root / "cp_bc", TINY, seed=0, progress=False)["checkpoint"]
    return {"camera": cam, "cartpole": cp, "root": root}


class Robot:
    """Publishes the camera mapping's streams (compressed or raw camera) from the test."""

    def __init__(self, probe, raw=False):
        self.probe, self.raw = probe, raw
        cam_topic = "/camera/image_raw" if raw else "/camera/image/compressed"
        self.cam = probe.publisher(
            cam_topic, Image if raw else CompressedImage, publisher_sensor_qos()
        )
        self.goal = probe.publisher("/goal", Float64MultiArray, publisher_sensor_qos())
        self.odom = probe.publisher("/odom", Odometry, publisher_sensor_qos())
        img = np.full((64, 64, 3), 200, np.uint8)
        self.jpeg = cv2.imencode(".jpg", img)[1].tobytes()
        self.rgb = img.tobytes()

    def publish(self, camera=True, bad_camera=False, bad_goal=False, nan_odom=False):
        """One message per stream, optionally malformed."""
        stamp = self.probe.node.get_clock().now().to_msg()
        if camera:
            if self.raw:
                m = Image(
                    height=64,
                    width=64,
                    encoding="bgr8" if not bad_camera else "yuv422",
                    step=192,
                    data=self.rgb,
                )
            else:
                m = CompressedImage(format="jpeg", data=b"not a jpeg" if bad_camera else self.jpeg)
            m.header.stamp = stamp
            self.cam.publish(m)
        self.goal.publish(Float64MultiArray(data=[0.5] * (3 if bad_goal else 2)))
        o = Odometry()
        o.header.stamp = stamp
        o.pose.pose.position.x = float("nan") if nan_odom else 0.1
        self.odom.publish(o)


def _status(events, kind):
    return [e for e in (json.loads(m.data) for m, _ in events) if e["event"] == kind]


def _start(probe, checkpoint, mapping="config/point_reach_camera_mapping.yaml", **extra):
    proc = probe.start_node(
        "inference_node",
        params_file="config/inference.yaml",
        params={
            "checkpoint": str(checkpoint),
            "mapping_file": mapping,
            "auto_activate": True,
            **extra,
        },
    )
    return proc


def test_camera_stop_commands_safe_stop_within_two_periods(checkpoints):
    probe = RosProbe("inf_stale")
    try:
        status = probe.subscribe("/inference/status", String, STATUS_QOS)
        cmds = probe.subscribe("/cmd_vel", Twist, 50)
        robot = Robot(probe)
        _start(probe, checkpoints["camera"])
        probe.wait_for(lambda: _status(status, "activated"), 30, "activation")
        probe.wait_for_subscribers("/camera/image/compressed", 1, 20)
        deadline = time.monotonic() + 20
        while not _status(status, "commanding") and time.monotonic() < deadline:
            robot.publish()
            time.sleep(1 / RATE)
        assert _status(status, "commanding"), "the policy never commanded"
        for _ in range(10):
            robot.publish()
            time.sleep(1 / RATE)
        last_camera = time.monotonic()
        for _ in range(30):  # the camera goes silent; the rest keeps publishing
            robot.publish(camera=False)
            time.sleep(1 / RATE)
        probe.assert_alive(probe.nodes[0])
        max_age = yaml.safe_load(open("config/point_reach_camera_mapping.yaml"))["observations"][
            "camera"
        ]["max_age_s"]
        stale_at = last_camera + max_age
        zeros = [t for m, t in cmds if t > stale_at and m.linear.x == 0 and m.linear.y == 0]
        assert zeros, "no safe (zero) command after the camera stopped"
        delay = zeros[0] - stale_at
        assert delay <= 2 / RATE, f"safe stop {delay * 1e3:.0f} ms after the camera went stale"
        stops = _status(status, "safe_stop")
        assert any("camera" in e["reason"] for e in stops), stops
        assert probe.stop_nodes() == {"inference_node": 0}
    finally:
        probe.close()


def test_malformed_messages_are_counted_and_never_crash(checkpoints, tmp_path):
    raw_map = yaml.safe_load(open("config/point_reach_camera_mapping.yaml"))
    raw_map["observations"]["camera"].update(
        topic="/camera/image_raw", type="sensor_msgs/msg/Image"
    )
    mapping = tmp_path / "raw.yaml"
    mapping.write_text(yaml.safe_dump(raw_map))
    probe = RosProbe("inf_bad")
    try:
        status = probe.subscribe("/inference/status", String, STATUS_QOS)
        robot = Robot(probe, raw=True)
        proc = _start(probe, checkpoints["camera"], mapping=str(mapping))
        probe.wait_for(lambda: _status(status, "activated"), 30, "activation")
        probe.wait_for_subscribers("/camera/image_raw", 1, 20)
        for i in range(60):  # wrong encoding, wrong size, NaN, interleaved with good ones
            robot.publish(bad_camera=i % 3 == 0, bad_goal=i % 4 == 0, nan_odom=i % 5 == 0)
            time.sleep(1 / RATE)
        probe.wait_for(
            lambda: (
                _status(status, "diagnostics")
                and _status(status, "diagnostics")[-1]["malformed_messages"] >= 20
            ),
            10,
            "malformed messages counted",
        )
        probe.assert_alive(proc)
        assert _status(status, "commanding")  # good messages still drive the robot
        assert probe.stop_nodes() == {"inference_node": 0}
    finally:
        probe.close()


def test_mismatched_checkpoint_is_refused_with_a_clear_error(checkpoints):
    probe = RosProbe("inf_mismatch")
    try:
        status = probe.subscribe("/inference/status", String, STATUS_QOS)
        proc = _start(probe, checkpoints["cartpole"])
        failed = probe.wait_for(
            lambda: _status(status, "configure_failed"), 30, "configure to fail"
        )
        err = failed[0]["error"]
        assert "does not match this robot's mapping" in err and "policy.pt" in err
        assert "observation 'state' is missing" in err and "discrete" in err
        probe.assert_alive(proc)  # refused, not crashed: it can be configured again
        assert probe.stop_nodes() == {"inference_node": 0}
    finally:
        probe.close()


def test_reload_swaps_the_policy_and_refuses_a_bad_one(checkpoints):
    probe = RosProbe("inf_reload")
    try:
        status = probe.subscribe("/inference/status", String, STATUS_QOS)
        _start(probe, checkpoints["camera"])
        probe.wait_for(lambda: _status(status, "activated"), 30, "activation")
        ok, msg = probe.call_trigger("/inference/reload")
        assert ok, msg

        client = probe.node.create_client(SetParameters, "/inference/set_parameters")
        assert client.wait_for_service(timeout_sec=10)
        value = ParameterValue(
            type=ParameterType.PARAMETER_STRING, string_value=str(checkpoints["cartpole"])
        )
        fut = client.call_async(
            SetParameters.Request(parameters=[Parameter(name="checkpoint", value=value)])
        )
        probe.wait_for(fut.done, 10, "set_parameters")
        assert fut.result().results[0].successful
        ok, msg = probe.call_trigger("/inference/reload")
        assert not ok and "does not match" in msg  # the current policy is kept
        assert probe.stop_nodes() == {"inference_node": 0}
    finally:
        probe.close()
