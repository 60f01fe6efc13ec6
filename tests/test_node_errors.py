"""A bad robot mapping gets one clear error line in every node, never a traceback.

Plain nodes refuse to start (exit code 2); the lifecycle nodes (inference, DAgger) fail the
configure transition with one error and stay up, unconfigured, for a corrected retry.
"""

import time

import pytest

from tests.ros_utils import RosProbe, node_log, stop_node

pytestmark = pytest.mark.ros

BAD = """control_rate_hz: 20.0
observations:
  position:
    topic: /odom
    type: nav_msgs/msg/Odometry
    fields: [pose.x, pose.heading]
action:
  topic: /cmd_vel
  type: geometry_msgs/msg/Twist
  fields: [linear.x]
"""
PLAIN = {
    "recorder_node": ("config/recorder.yaml", {"output_dir": "{tmp}/data"}),
    "teleop_node": ("config/teleop_joy.yaml", {}),
    "sim_robot_node": ("config/sim_robot.yaml", {}),
    "scripted_teleop_node": ("config/scripted_teleop.yaml", {}),
}
LIFECYCLE = {
    "inference_node": ("config/inference.yaml", {"checkpoint": "x.onnx"}),
    "dagger_node": ("config/dagger.yaml", {"output_dir": "{tmp}/dagger"}),
}


def _errors(log):
    return [ln for ln in log.splitlines() if ln.startswith("[ERROR]")]


@pytest.fixture
def bad_mapping(tmp_path):
    path = tmp_path / "my_robot.yaml"
    path.write_text(BAD)
    return path


def _start_all(probe, nodes, tmp_path, **params):
    """Start every node of a ``{module: (params_file, extra params)}`` table."""
    procs = {}
    for module, (params_file, extra) in nodes.items():
        own = {k: v.replace("{tmp}", str(tmp_path)) for k, v in extra.items()}
        procs[module] = probe.start_node(module, params_file=params_file, params={**params, **own})
    return procs


def test_plain_nodes_refuse_a_bad_mapping_in_one_line(bad_mapping, tmp_path):
    probe = RosProbe("errors_plain_probe")
    try:
        procs = _start_all(probe, PLAIN, tmp_path, mapping_file=str(bad_mapping))
        codes = {m: p.wait(60) for m, p in procs.items()}
    finally:
        probe.close()
    assert codes == dict.fromkeys(PLAIN, 2), codes
    for module, proc in procs.items():
        log = node_log(proc)
        assert "Traceback" not in log, (module, log)
        errors = _errors(log)
        assert len(errors) == 1, (module, log)
        assert str(bad_mapping) in errors[0] and "pose.heading" in errors[0], errors[0]


def test_plain_nodes_require_a_mapping(tmp_path):
    probe = RosProbe("errors_missing_probe")
    try:
        recorder = probe.start_node(
            "recorder_node",
            params_file="config/recorder.yaml",
            params={"output_dir": str(tmp_path / "data")},
        )
        teleop = probe.start_node("teleop_node", params_file="config/teleop_joy.yaml")
        codes = (recorder.wait(60), teleop.wait(60))
    finally:
        probe.close()
    assert codes == (2, 2)
    for proc in (recorder, teleop):
        errors = _errors(node_log(proc))
        assert len(errors) == 1 and "parameter 'mapping_file' is required" in errors[0], errors


def test_lifecycle_nodes_fail_configure_in_one_line_and_stay_up(bad_mapping, tmp_path):
    probe = RosProbe("errors_lifecycle_probe")
    try:
        procs = _start_all(
            probe, LIFECYCLE, tmp_path, mapping_file=str(bad_mapping), auto_activate=True
        )
        for module, proc in procs.items():
            probe.wait_for(lambda p=proc: _errors(node_log(p)), 60, f"{module}'s error")
        time.sleep(1.0)
        for proc in procs.values():
            probe.assert_alive(proc)  # unconfigured, waiting for a corrected configure
        codes = {m: stop_node(p) for m, p in procs.items()}
    finally:
        probe.close()
    assert codes == dict.fromkeys(LIFECYCLE, 0), codes
    for module, proc in procs.items():
        log = node_log(proc)
        assert "Traceback" not in log, (module, log)
        errors = _errors(log)
        assert len(errors) == 1 and "configure failed" in errors[0], (module, errors)
        assert str(bad_mapping) in errors[0] and "pose.heading" in errors[0], errors[0]
