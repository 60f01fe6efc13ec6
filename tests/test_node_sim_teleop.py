"""The simulated robot, the scripted teleop and the human teleop as real processes over DDS.

The nodes run as ``python -m il_ros.<node> --ros-args --params-file config/<node>.yaml`` in
this pytest process's own ROS domain (tests/conftest.py). The tests of one module share the
processes (started once, in order); the last sim test stops them with SIGINT.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import Twist
from nav_msgs.msg import Odometry
from sensor_msgs.msg import Joy
from std_msgs.msg import Bool, String

from il_ros.common import (
    COMMAND_QOS,
    CONTROL_QOS,
    EPISODE_CONTROL_TOPIC,
    LATCHED_QOS,
    STATUS_QOS,
    sensor_qos,
)
from tests.ros_utils import RosProbe, ros_probe, stop_node  # noqa: F401

pytestmark = pytest.mark.ros

CONFIG = Path(__file__).resolve().parents[1] / "config"


def events(received: list[tuple[Any, float]], kind: str) -> list[dict[str, Any]]:
    """Decoded ``~/status`` events of one kind."""
    out = [json.loads(m.data) for m, _ in received]
    return [e for e in out if e["event"] == kind]


def diagnostics_values(received: list[tuple[Any, float]], name: str) -> list[dict[str, str]]:
    """Key/value dicts of every received diagnostic status called ``name``."""
    return [
        {kv.key: kv.value for kv in st.values}
        for m, _ in received
        for st in m.status
        if st.name == name
    ]


@pytest.fixture(scope="module")
def sim(ros_probe: RosProbe) -> Iterator[dict[str, Any]]:  # noqa: F811
    """sim_robot + scripted_teleop (episode control on), and recordings of their topics."""
    rec = {
        "status": ros_probe.subscribe("/sim_robot/status", String, STATUS_QOS),
        "control": ros_probe.subscribe(EPISODE_CONTROL_TOPIC, String, CONTROL_QOS),
        "odom": ros_probe.subscribe("/odom", Odometry, sensor_qos()),
        "diag": ros_probe.subscribe("/diagnostics", DiagnosticArray, 10),
        "cmd": ros_probe.subscribe("/cmd_vel", Twist, COMMAND_QOS),
    }
    rec["sim"] = ros_probe.start_node(
        "sim_robot_node",
        params_file=CONFIG / "sim_robot.yaml",
        params={"reset_delay_s": 0.3, "diagnostics_period_s": 0.5},
    )
    rec["teleop"] = ros_probe.start_node(
        "scripted_teleop_node",
        params_file=CONFIG / "scripted_teleop.yaml",
        # The probe stands in for the recorder (min_control_subscribers: 1 in the config).
        params={"episode_control": True},
    )
    yield rec
    ros_probe.stop_nodes()


def test_scripted_teleop_completes_episodes_with_episode_control(
    ros_probe: RosProbe,  # noqa: F811
    sim: dict[str, Any],
) -> None:
    ros_probe.wait_for(
        lambda: len(events(sim["status"], "done")) >= 3, 40, "3 finished sim episodes"
    )
    done = events(sim["status"], "done")[:3]
    assert [d["episode"] for d in done] == [0, 1, 2]
    assert all(d["success"] for d in done), done
    assert all(0 < d["length"] < 200 for d in done), done
    resets = events(sim["status"], "reset")
    assert [(r["episode"], r["seed"]) for r in resets[:3]] == [(0, 0), (1, 1), (2, 2)]

    # The recorder-facing protocol: start, then success (which also ends the episode), once
    # per sim episode; no "stop" after it, which a recorder would have to refuse.
    ros_probe.wait_for(lambda: len(sim["control"]) >= 6, 5, "6 episode control messages")
    control = [m.data for m, _ in sim["control"]]
    assert control[:6] == ["start", "success"] * 3, control

    # Observations carry header stamps of the sim's clock, one per control tick.
    stamps = [m.header.stamp.sec + m.header.stamp.nanosec * 1e-9 for m, _ in sim["odom"]]
    assert len(stamps) > 40
    assert all(b > a for a, b in zip(stamps, stamps[1:], strict=False))
    assert abs(stamps[-1] - time.time()) < 5.0
    rate = (len(stamps) - 1) / (stamps[-1] - stamps[0])
    assert 10.0 < rate < 25.0, f"observation rate {rate:.1f} Hz, control rate 20 Hz"


def test_malformed_command_is_counted_and_not_fatal(
    ros_probe: RosProbe,  # noqa: F811
    sim: dict[str, Any],
) -> None:
    pub = ros_probe.publisher("/cmd_vel", Twist, 1)
    done_before = len(events(sim["status"], "done"))
    bad = Twist()
    bad.linear.x = math.nan
    for _ in range(5):
        pub.publish(bad)
        time.sleep(0.05)

    def bad_counted() -> bool:
        diags = diagnostics_values(sim["diag"], "sim_robot")
        return bool(diags) and int(diags[-1]["bad_commands"]) >= 1

    ros_probe.wait_for(bad_counted, 10, "sim_robot to report bad_commands >= 1")
    last = diagnostics_values(sim["diag"], "sim_robot")[-1]
    assert "NaN" in last["last_bad_command"]
    ros_probe.assert_alive(sim["sim"])
    # Episodes go on, and succeed.
    ros_probe.wait_for(
        lambda: len(events(sim["status"], "done")) >= done_before + 2,
        20,
        "2 more episodes after the malformed commands",
    )
    assert all(d["success"] for d in events(sim["status"], "done")[done_before:])


def test_sigint_exits_cleanly_and_the_teleop_commands_a_stop(sim: dict[str, Any]) -> None:
    commands = sim["cmd"]
    assert commands, "the scripted teleop never commanded"
    sent_at = time.monotonic()
    assert stop_node(sim["teleop"], timeout=10) == 0
    assert stop_node(sim["sim"], timeout=10) == 0
    assert "error during shutdown" not in sim["teleop"].log_path.read_text()
    last, received_at = commands[-1]
    assert received_at >= sent_at
    assert (last.linear.x, last.linear.y, last.angular.z) == (0.0, 0.0, 0.0)


def test_joy_teleop_deadman_scales_buttons_and_malformed_input(
    ros_probe: RosProbe,  # noqa: F811
) -> None:
    cmd = ros_probe.subscribe("/teleop_test/cmd_vel", Twist, 10)
    deadman = ros_probe.subscribe("/il_ros/deadman", Bool, LATCHED_QOS)
    control = ros_probe.subscribe(EPISODE_CONTROL_TOPIC, String, CONTROL_QOS)
    joy_pub = ros_probe.publisher("/joy", Joy, 10)
    proc = ros_probe.start_node(
        "teleop_node",
        params_file=CONFIG / "teleop_joy.yaml",
        params={
            "mapping_file": "config/point_reach_mapping.yaml",
            "command_topic": "/teleop_test/cmd_vel",
            "scales": [0.5, -1.0],
        },
    )
    ros_probe.wait_for_subscribers("/joy", 1)
    control_before = len(control)

    def joy(axes: list[float], pressed: tuple[int, ...] = ()) -> Joy:
        return Joy(axes=axes, buttons=[int(i in pressed) for i in range(11)])

    def send(msg: Joy, n: int = 4) -> None:
        for _ in range(n):
            joy_pub.publish(msg)
            time.sleep(0.05)

    def last_cmd() -> tuple[float, float]:
        return (cmd[-1][0].linear.x, cmd[-1][0].linear.y) if cmd else (math.nan, math.nan)

    # Deadman released: the stick moves, the command stays zero.
    send(joy([0.4, 0.8]))
    ros_probe.wait_for(lambda: last_cmd() == (0.0, 0.0), 5, "zero command without deadman")
    # Deadman (button 4) held: linear.x = 0.5 * axis 1, linear.y = -1.0 * axis 0.
    send(joy([0.4, 0.8], (4,)))
    ros_probe.wait_for(
        lambda: math.isclose(last_cmd()[0], 0.5 * (0.8 - 0.05) / 0.95, rel_tol=1e-4),
        5,
        "the scaled stick command while the deadman is held",
    )
    assert math.isclose(last_cmd()[1], -1.0 * (0.4 - 0.05) / 0.95, rel_tol=1e-4)
    ros_probe.wait_for(
        lambda: [m.data for m, _ in deadman][-2:] == [False, True], 5, "deadman False -> True"
    )
    # Buttons: START (7) then A (0) publish start, success; each once per press.
    send(joy([0.0, 0.0], (7,)))
    send(joy([0.0, 0.0]))
    send(joy([0.0, 0.0], (0,)))
    ros_probe.wait_for(
        lambda: [m.data for m, _ in control][control_before:] == ["start", "success"],
        5,
        "start and success once each",
    )
    # Malformed Joy (one axis, too few buttons) while "holding": zero, deadman off, alive.
    send(joy([0.4, 0.8], (4,)))
    send(Joy(axes=[0.9], buttons=[1, 1, 1, 1, 1]), 6)
    ros_probe.wait_for(lambda: last_cmd() == (0.0, 0.0), 5, "zero command on malformed Joy")
    assert deadman[-1][0].data is False
    ros_probe.assert_alive(proc)
    assert "malformed Joy" in proc.log_path.read_text()
    assert stop_node(proc) == 0
