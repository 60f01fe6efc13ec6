"""DAgger node with a human (deadman) teleop over DDS: labels only where the expert commanded.

The real teleop node (source joy, deadman button) publishes the expert's command on
``/expert/cmd`` and its deadman state; a probe plays the robot's sensors, the gamepad and the
policy's command. While the deadman is released the teleop publishes its idle zeros: the
DAgger node must record those steps without an expert label (the policy's executed command,
``has_expert_label`` 0), and training must ignore them.
"""

import json
import time

import numpy as np
import pytest
from geometry_msgs.msg import Twist
from nav_msgs.msg import Odometry
from sensor_msgs.msg import Joy
from std_msgs.msg import Float64MultiArray, String

from il_core.checkpoint import load_policy
from il_core.constants import ACTION_MASK
from il_core.data import EpisodeDataset
from il_core.train import train
from il_ros.common import STATUS_QOS, publisher_sensor_qos
from tests.ros_utils import RosProbe, node_log

pytestmark = pytest.mark.ros

MAPPING = "config/point_reach_mapping.yaml"
POLICY = (0.3, 0.0)
STICK = 0.8  # left stick up: linear.x = (0.8 - deadzone 0.05) / 0.95 with scale 1
EXPERT = ((STICK - 0.05) / 0.95, 0.0)


def _events(status, kind):
    return [e for e in (json.loads(m.data) for m, _ in status) if e["event"] == kind]


def test_released_deadman_is_no_label_and_training_masks_it(tmp_path):
    probe = RosProbe("dagger_deadman_probe")
    try:
        status = probe.subscribe("/dagger/status", String, STATUS_QOS)
        goal = probe.publisher("/goal", Float64MultiArray, publisher_sensor_qos())
        odom = probe.publisher("/odom", Odometry, publisher_sensor_qos())
        policy = probe.publisher("/policy/cmd", Twist, 10)
        joy = probe.publisher("/joy", Joy, 10)
        dagger = probe.start_node(
            "dagger_node",
            params_file="config/dagger.yaml",
            params={
                "mapping_file": MAPPING,
                "output_dir": str(tmp_path / "round1"),
                "auto_activate": True,
                "gate_mode": "deadman",
                "record": "all",
            },
        )
        teleop = probe.start_node(
            "teleop_node",
            params_file="config/teleop_joy.yaml",
            params={"mapping_file": MAPPING, "command_topic": "/expert/cmd"},
        )
        for topic in ("/goal", "/odom", "/policy/cmd", "/expert/cmd", "/il_ros/deadman"):
            probe.wait_for_subscribers(topic, 1, 30)
        probe.wait_for_subscribers("/joy", 1, 30)

        def publish(ticks, held):
            for _ in range(ticks):
                goal.publish(Float64MultiArray(data=[0.5, 0.5]))
                o = Odometry()
                o.header.stamp = probe.node.get_clock().now().to_msg()
                odom.publish(o)
                t = Twist()
                t.linear.x, t.linear.y = POLICY
                policy.publish(t)
                joy.publish(
                    Joy(axes=[0.0, STICK], buttons=[int(held and i == 4) for i in range(11)])
                )
                time.sleep(0.05)

        publish(20, held=False)  # discovery settles; the teleop publishes its idle zeros
        ok, msg = probe.call_trigger("/dagger/start")
        assert ok, msg
        publish(40, held=False)
        publish(40, held=True)
        publish(40, held=False)
        ok, msg = probe.call_trigger("/dagger/mark_success")
        assert ok, msg
        probe.wait_for(lambda: _events(status, "saved"), 15, "the episode saved")
        assert set(probe.stop_nodes().values()) == {0}
    finally:
        probe.close()

    log = node_log(dagger)
    assert "rejected" not in log and "NaN or infinity" not in log, log[-3000:]
    assert "Traceback" not in log + node_log(teleop)
    ds = EpisodeDataset(tmp_path / "round1")
    ep = ds.episode(0)
    label = ep.extras["has_expert_label"][:, 0] > 0.5
    flagged = ep.extras["is_intervention"][:, 0] > 0.5
    executed = ep.extras["executed_action"]
    n = len(label)
    assert n >= 100, n  # about 120 ticks; none lost at the start (the first step is kept)
    # The expert commanded only while the deadman was held: about a third of the steps.
    assert 0.2 < label.mean() < 0.45, label.mean()
    np.testing.assert_allclose(ep.actions[label], np.tile(EXPERT, (label.sum(), 1)), atol=1e-4)
    # No step stored the released teleop's zeros as a label...
    assert not np.any(np.all(np.abs(ep.actions[label]) < 1e-6, axis=1))
    # ... and unlabelled steps keep what was executed: the policy's command (or, in the
    # deadman gate's release ticks, the expert's idle zeros).
    np.testing.assert_allclose(ep.actions[~label], executed[~label], atol=1e-6)
    policy_driven = ~flagged
    np.testing.assert_allclose(executed[policy_driven], np.tile(POLICY, (policy_driven.sum(), 1)))
    assert not label[policy_driven].any()
    assert np.all(np.isfinite(ep.extras["obs_age"]))

    # Training masks the unlabelled steps: their windows carry no action, none is sampled,
    # and a policy fitted on the round learns the expert's command, not the mean that the
    # policy's and the idle commands would pull it to.
    w = ds.window(np.arange(n), history=1, horizon=1)
    np.testing.assert_array_equal(w[ACTION_MASK][:, 0], label)
    assert set(ds.labelled_anchors(np.arange(n), 1).tolist()) == set(np.flatnonzero(label))
    cfg = {
        "policy": {"name": "bc", "hidden_dims": [16]},
        "train": {"steps": 300, "batch_size": 32, "val_fraction": 0.0, "num_threads": 1},
    }
    ckpt = train([tmp_path / "round1"], tmp_path / "bc", cfg, seed=0, progress=False)
    bc = load_policy(ckpt["checkpoint"])
    bc.reset()
    pred = bc.select_action(
        {"goal": ep.observations["goal"][0], "position": ep.observations["position"][0]}
    )
    np.testing.assert_allclose(pred, EXPERT, atol=0.05)
