"""Wiring checks: the pure decision, and a node reporting a topic of the wrong type.

Over DDS, the report names the topic and both types within seconds, on the log and on
/diagnostics.
"""

import time

import pytest
import yaml
from diagnostic_msgs.msg import DiagnosticArray
from sensor_msgs.msg import CompressedImage
from std_msgs.msg import Float64MultiArray

from il_ros.common import publisher_sensor_qos
from il_ros.wiring import Endpoint, Peer, endpoint_problem
from tests.ros_utils import RosProbe, node_log

CAM = Endpoint("/camera", "sensor_msgs/msg/Image", "subscribe", "observation 'front'")
CMD = Endpoint("/arm/cmd", "trajectory_msgs/msg/JointTrajectory", "publish", "command")


def test_a_peer_of_another_type_is_an_error_naming_topic_both_types_and_node():
    peers = [Peer("/camera_driver", "publisher", "sensor_msgs/msg/CompressedImage")]
    level, msg = endpoint_problem(CAM, peers, waited_s=0.0, grace_s=5.0)
    assert level == "error"
    for part in ("/camera", "sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage"):
        assert part in msg
    assert "/camera_driver" in msg and "observation 'front'" in msg


def test_a_command_nobody_subscribes_with_its_type_is_reported():
    peers = [Peer("/controller", "subscription", "std_msgs/msg/Float64MultiArray")]
    level, msg = endpoint_problem(CMD, peers, 0.0, 5.0)
    assert level == "error" and "std_msgs/msg/Float64MultiArray" in msg and "/arm/cmd" in msg
    # Nobody at all: only after the grace period, and as a warning.
    assert endpoint_problem(CMD, [], 1.0, 5.0) is None
    level, msg = endpoint_problem(CMD, [], 6.0, 5.0)
    assert level == "warn" and "nothing subscribes" in msg


def test_wired_endpoints_and_optional_ones_are_fine():
    ok = [Peer("/camera_driver", "publisher", "sensor_msgs/msg/Image")]
    assert endpoint_problem(CAM, ok, 60.0, 5.0) is None
    # A subscriber of the same type is no publisher: still missing after the grace period.
    other_reader = [Peer("/recorder", "subscription", "sensor_msgs/msg/Image")]
    assert endpoint_problem(CAM, other_reader, 60.0, 5.0)[0] == "warn"
    optional = Endpoint("/il_ros/deadman", "std_msgs/msg/Bool", "subscribe", "deadman", False)
    assert endpoint_problem(optional, [], 60.0, 5.0) is None


def _camera_mapping(path):
    path.write_text(
        yaml.safe_dump(
            {
                "control_rate_hz": 20.0,
                "observations": {
                    "front": {
                        "topic": "/wiring_test/camera",
                        "type": "sensor_msgs/msg/Image",
                        "shape": [16, 16, 3],
                    },
                    "goal": {
                        "topic": "/wiring_test/goal",
                        "type": "std_msgs/msg/Float64MultiArray",
                        "size": 2,
                    },
                },
                "action": {
                    "topic": "/wiring_test/cmd",
                    "type": "geometry_msgs/msg/Twist",
                    "fields": ["linear.x"],
                },
            }
        )
    )
    return path


@pytest.mark.ros
def test_recorder_reports_a_topic_of_the_wrong_type_within_5_s(tmp_path):
    mapping = _camera_mapping(tmp_path / "mapping.yaml")
    probe = RosProbe("wiring_probe")
    try:
        diags = probe.subscribe("/diagnostics", DiagnosticArray, 10)
        # The camera driver publishes compressed images where the mapping says raw ones.
        cam = probe.publisher("/wiring_test/camera", CompressedImage, publisher_sensor_qos())
        goal = probe.publisher("/wiring_test/goal", Float64MultiArray, publisher_sensor_qos())
        proc = probe.start_node(
            "recorder_node",
            params_file="config/recorder.yaml",
            params={"mapping_file": str(mapping), "output_dir": str(tmp_path / "data")},
        )
        probe.wait_for_subscribers("/wiring_test/camera", 1, 20)
        seen = time.monotonic()
        expected = ("/wiring_test/camera", "sensor_msgs/msg/Image", "CompressedImage")

        def reported():
            log = node_log(proc)
            return [
                ln for ln in log.splitlines() if "ERROR" in ln and all(e in ln for e in expected)
            ]

        lines = probe.wait_for(reported, 5.0, "the recorder's wiring error")
        assert time.monotonic() - seen < 5.0, lines
        assert "/wiring_probe" in lines[0], lines  # the publisher with the other type, by name

        def in_diagnostics():
            for msg, _ in list(diags):
                for st in msg.status:
                    if st.name == "il_ros recorder" and st.level == b"\x02":
                        values = {kv.key: kv.value for kv in st.values}
                        if "CompressedImage" in values.get("wiring", ""):
                            return st.message
            return None

        assert "/wiring_test/camera" in probe.wait_for(in_diagnostics, 5.0, "ERROR diagnostics")
        cam.publish(CompressedImage())
        goal.publish(Float64MultiArray(data=[0.0, 0.0]))
        assert probe.stop_nodes() == {"recorder_node": 0}
    finally:
        probe.close()


class _Graph:
    """A stand-in for the node's graph queries: the peers a test puts on each topic."""

    def __init__(self):
        self.subscriptions = {}
        self.clock = 0.0

    def get_name(self):
        return "me"

    def get_namespace(self):
        return "/"

    def get_publishers_info_by_topic(self, topic):
        return []

    def get_subscriptions_info_by_topic(self, topic):
        return self.subscriptions.get(topic, [])

    def create_timer(self, period, callback):
        return None

    def get_logger(self):
        return self

    def warning(self, msg):
        self.logged.append(("warn", msg))

    def error(self, msg):
        self.logged.append(("error", msg))

    def info(self, msg):
        self.logged.append(("info", msg))

    def debug(self, msg):
        pass


def test_a_peer_that_goes_away_is_reported_only_after_the_grace_period(monkeypatch):
    from types import SimpleNamespace

    from il_ros import wiring

    graph = _Graph()
    graph.logged = []
    monkeypatch.setattr(wiring.time, "monotonic", lambda: graph.clock)
    watch = wiring.TopicWatch(graph, grace_s=15.0)
    watch.add(Endpoint("/cmd", "geometry_msgs/msg/Twist", "publish", "command"))
    peer = SimpleNamespace(
        node_name="robot", node_namespace="/", topic_type="geometry_msgs/msg/Twist"
    )
    graph.subscriptions["/cmd"] = [peer]
    for t in range(0, 40):  # the robot listens for 40 s
        graph.clock = float(t)
        watch.check()
    graph.subscriptions["/cmd"] = []  # then stops (Ctrl-C: the launch stops it first)
    for t in range(40, 54):
        graph.clock = float(t)
        watch.check()
    assert graph.logged == [] and watch.problems == []  # 14 s without it: still quiet
    graph.clock = 56.0
    watch.check()
    assert [lvl for lvl, _ in graph.logged] == ["warn"]
    assert "/cmd" in watch.problems[0]
    graph.subscriptions["/cmd"] = [peer]  # it comes back: fixed, said once
    graph.clock = 57.0
    watch.check()
    assert [lvl for lvl, _ in graph.logged] == ["warn", "info"] and watch.problems == []
