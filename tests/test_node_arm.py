"""A 6-DoF arm over DDS: leader-arm and spacemouse teleops, arm observations, refusals.

The simulated arm (``il_ros/ArmReach-v0`` behind ``config/arm6_mapping.yaml``: joint states,
an end-effector ``PoseStamped``, a wrist ``WrenchStamped``, the goal; joint position
commands) is driven through the real teleop node from a leader arm that this test plays,
and recorded by the real recorder. A spacemouse drives the same arm's Cartesian twist
command (``config/arm6_servo_mapping.yaml``). A gamepad configuration for a 2-D robot is
refused before the teleop publishes anything. The expensive test records the scripted
expert through the arm mapping, trains, and lets the inference node drive the arm.
"""

import json
import time

import numpy as np
import pytest
import yaml
from geometry_msgs.msg import PoseStamped, Twist, TwistStamped, WrenchStamped
from sensor_msgs.msg import JointState, Joy
from std_msgs.msg import Float64MultiArray, String

from il_core.data import EpisodeDataset
from il_core.train import train
from il_ros.common import STATUS_QOS, publisher_sensor_qos
from sim.arm import JOINT_NAMES
from tests.ros_utils import RosProbe, node_log

pytestmark = pytest.mark.ros

ARM = "config/arm6_mapping.yaml"
SERVO = "config/arm6_servo_mapping.yaml"
LEADER = yaml.safe_load(open("config/teleop_leader.yaml"))["teleop"]["ros__parameters"]
SPACEMOUSE = yaml.safe_load(open("config/teleop_spacemouse.yaml"))["teleop"]["ros__parameters"]
ARM_SIM = {"env_id": "il_ros/ArmReach-v0", "mapping_file": ARM, "reset_delay_s": 0.3}


def _events(msgs, kind):
    return [e for e in (json.loads(m.data) for m, _ in msgs) if e.get("event") == kind]


class LeaderArm:
    """The leader arm, played by the test: the IK expert's target, in leader joint space.

    Reads the follower's joint states and the goal, asks the arm's scripted expert for the
    next joint target and publishes the leader joint positions that the teleop's
    ``scale * leader + offset`` turns into that target, under the leader's joint names.
    """

    def __init__(self, probe: RosProbe) -> None:
        import gymnasium as gym

        from sim.experts import load_expert

        self.expert = load_expert("auto", gym.make("il_ros/ArmReach-v0"))
        self.joints = probe.subscribe("/joint_states", JointState, 10)
        self.goal = probe.subscribe("/goal", Float64MultiArray, 10)
        self.pub = probe.publisher("/leader/joint_states", JointState, 10)
        self.scale = np.array(LEADER["scales"])
        self.offset = np.array(LEADER["offsets"])
        self.sent: list[np.ndarray] = []

    def tick(self) -> None:
        """Publish the leader position for the follower's current state (if known)."""
        if not (self.joints and self.goal):
            return
        q = np.asarray(self.joints[-1][0].position, np.float64)
        target = self.expert({"joints": q, "goal": np.asarray(self.goal[-1][0].data)})
        leader = (np.asarray(target, np.float64) - self.offset) / self.scale
        self.sent.append(self.scale * leader + self.offset)
        self.pub.publish(JointState(name=list(LEADER["leader_joints"]), position=list(leader)))


def test_leader_arm_teleop_records_episodes_of_the_6dof_arm(tmp_path):
    probe = RosProbe("arm_leader_probe")
    try:
        sim = probe.subscribe("/sim_robot/status", String, STATUS_QOS)
        rec_status = probe.subscribe("/recorder/status", String, STATUS_QOS)
        leader = LeaderArm(probe)
        probe.start_node("sim_robot_node", params_file="config/sim_robot.yaml", params=ARM_SIM)
        probe.start_node(
            "teleop_node", params_file="config/teleop_leader.yaml", params={"mapping_file": ARM}
        )
        probe.start_node(
            "recorder_node",
            params_file="config/recorder.yaml",
            params={"mapping_file": ARM, "output_dir": str(tmp_path / "demos")},
        )
        for topic in ("/joint_states", "/ee_pose", "/ft_sensor/wrench", "/goal"):
            probe.wait_for_subscribers(topic, 1, 30)
        probe.wait_for_subscribers("/leader/joint_states", 1, 30)
        started = done = 0
        deadline = time.monotonic() + 120
        while len(_events(rec_status, "saved")) < 3 and time.monotonic() < deadline:
            leader.tick()
            resets, dones = _events(sim, "reset"), _events(sim, "done")
            if len(resets) > started:  # a new episode: start recording it
                started = len(resets)
                probe.call_trigger("/recorder/start")
            if len(dones) > done:
                done = len(dones)
                if dones[-1]["success"]:
                    probe.call_trigger("/recorder/mark_success")
            time.sleep(0.05)
        assert len(_events(rec_status, "saved")) >= 3, _events(sim, "done")
        assert set(probe.stop_nodes().values()) == {0}
    finally:
        probe.close()
    ds = EpisodeDataset(tmp_path / "demos")
    assert ds.spec.observations["ee_pose"].shape == (7,)
    assert ds.spec.observations["wrench"].shape == (6,)
    assert ds.spec.action.names == JOINT_NAMES
    successes = [e for e in ds.episodes if e.success]
    assert len(successes) >= 2, [e.success for e in ds.episodes]
    sent = np.stack(leader.sent)
    for i in range(ds.num_episodes):
        ep = ds.episode(i)
        # Every recorded command is scale * leader + offset of a leader message (float32).
        dist = np.abs(ep.actions[:, None, :] - sent[None, :, :]).max(-1).min(-1)
        assert dist.max() < 1e-5, dist.max()
        np.testing.assert_allclose(
            np.linalg.norm(ep.observations["ee_pose"][:, 3:], axis=1), 1.0, atol=1e-4
        )
        assert np.all(np.linalg.norm(ep.observations["wrench"][:, :3], axis=1) > 1.0)
        assert ep.extras["has_expert_label"].all()  # no deadman: the leader always commands


def test_spacemouse_teleop_drives_a_6d_twist_command(tmp_path):
    probe = RosProbe("arm_spacemouse_probe")
    try:
        status = probe.subscribe("/recorder/status", String, STATUS_QOS)
        cmds = probe.subscribe("/servo_node/delta_twist_cmds", TwistStamped, 50)
        pubs = {
            "joints": probe.publisher("/joint_states", JointState, publisher_sensor_qos()),
            "pose": probe.publisher("/ee_pose", PoseStamped, publisher_sensor_qos()),
            "wrench": probe.publisher("/ft_sensor/wrench", WrenchStamped, publisher_sensor_qos()),
            "goal": probe.publisher("/goal", Float64MultiArray, publisher_sensor_qos()),
        }
        puck = probe.publisher("/spacenav/twist", Twist, 10)
        buttons = probe.publisher("/spacenav/joy", Joy, 10)
        probe.start_node(
            "teleop_node",
            params_file="config/teleop_spacemouse.yaml",
            params={"mapping_file": SERVO},
        )
        probe.start_node(
            "recorder_node",
            params_file="config/recorder.yaml",
            params={"mapping_file": SERVO, "output_dir": str(tmp_path / "demos")},
        )
        probe.wait_for_subscribers("/spacenav/twist", 1, 30)
        probe.wait_for_subscribers("/servo_node/delta_twist_cmds", 1, 30)
        deflection = [0.5, -0.25, 1.0, 0.1, -0.2, 2.0]  # the last one beyond the puck's range

        def publish(ticks, success=False):
            for k in range(ticks):
                stamp = probe.node.get_clock().now().to_msg()
                js = JointState(name=list(JOINT_NAMES), position=[0.1] * 6)
                js.header.stamp = stamp
                pubs["joints"].publish(js)
                pose = PoseStamped()
                pose.header.stamp = stamp
                pose.pose.orientation.w = 1.0
                pubs["pose"].publish(pose)
                w = WrenchStamped()
                w.header.stamp = stamp
                w.wrench.force.z = -9.8
                pubs["wrench"].publish(w)
                pubs["goal"].publish(Float64MultiArray(data=[0.4, 0.0, 0.3]))
                t = Twist()
                t.linear.x, t.linear.y, t.linear.z = deflection[:3]
                t.angular.x, t.angular.y, t.angular.z = deflection[3:]
                puck.publish(t)
                pressed = [1, int(success and k == ticks - 1)]  # left button: deadman
                buttons.publish(Joy(axes=[], buttons=pressed))
                time.sleep(0.05)

        publish(10)
        ok, msg = probe.call_trigger("/recorder/start")
        assert ok, msg
        publish(30)
        publish(2, success=True)  # the right button marks success and ends the episode
        probe.wait_for(lambda: _events(status, "saved"), 10, "the episode saved")
        assert set(probe.stop_nodes().values()) == {0}
    finally:
        probe.close()
    expected = np.clip(
        np.array(SPACEMOUSE["scales"]) * deflection,
        [-0.25, -0.25, -0.25, -1.0, -1.0, -1.0],
        [0.25, 0.25, 0.25, 1.0, 1.0, 1.0],
    )

    def twist(m):
        t = m.twist
        return [t.linear.x, t.linear.y, t.linear.z, t.angular.x, t.angular.y, t.angular.z]

    # The puck fell silent at the end: then (input timeout) and on shutdown, zero twists.
    moving = [m for m, _ in cmds if any(twist(m))]
    np.testing.assert_allclose(twist(moving[-1]), expected, atol=1e-6)
    assert twist(cmds[-1][0]) == [0.0] * 6
    assert moving[-1].header.frame_id == "tool0"
    ep = EpisodeDataset(tmp_path / "demos").episode(0)
    held = ep.extras["has_expert_label"][:, 0] > 0.5
    assert held.sum() >= 20, held
    # Steps with the deadman held are the operator's twist; any other (the deadman state not
    # yet arrived at the recorder) is the teleop's idle zero, kept without a label.
    np.testing.assert_allclose(ep.actions[held], np.tile(expected, (held.sum(), 1)), atol=1e-6)
    np.testing.assert_array_equal(ep.actions[~held], 0.0)
    assert EpisodeDataset(tmp_path / "demos").episodes[0].success is True


def test_a_teleop_config_that_does_not_fit_the_arm_is_refused_before_it_publishes():
    probe = RosProbe("arm_refuse_probe")
    try:
        seen = []
        proc = probe.start_node(
            "teleop_node", params_file="config/teleop_joy.yaml", params={"mapping_file": ARM}
        )
        deadline = time.monotonic() + 30
        while proc.poll() is None and time.monotonic() < deadline:
            seen.append(probe.node.count_publishers("/forward_position_controller/commands"))
            time.sleep(0.02)
        assert proc.wait(5) == 2
    finally:
        probe.close()
    log = node_log(proc)
    assert "Traceback" not in log, log
    errors = [ln for ln in log.splitlines() if "[ERROR]" in ln]
    assert len(errors) == 1, log  # one clear line
    for part in ("'axes'", "6 Joy axis indices", "/forward_position_controller/commands", ARM):
        assert part in errors[0], errors[0]
    assert max(seen, default=0) == 0  # it never advertised the command topic


@pytest.mark.expensive
def test_arm_pose_and_wrench_observations_record_train_and_drive(tmp_path):
    probe = RosProbe("arm_loop_probe")
    try:
        sim = probe.subscribe("/sim_robot/status", String, STATUS_QOS)
        saved = probe.subscribe("/recorder/status", String, STATUS_QOS)
        probe.start_node(
            "recorder_node",
            params_file="config/recorder.yaml",
            params={"mapping_file": ARM, "output_dir": str(tmp_path / "demos")},
        )
        probe.start_node(
            "sim_robot_node", params_file="config/sim_robot.yaml", params={**ARM_SIM, "seed": 0}
        )
        probe.start_node(
            "scripted_teleop_node",
            params_file="config/scripted_teleop.yaml",
            params={"mapping_file": ARM, "env_id": "il_ros/ArmReach-v0"},
        )
        probe.wait_for(lambda: len(_events(saved, "saved")) >= 30, 400, "30 recorded episodes")
        assert set(probe.stop_nodes().values()) == {0}
        ds = EpisodeDataset(tmp_path / "demos")
        assert sum(bool(e.success) for e in ds.episodes) >= 29
        cfg = {
            "policy": {"name": "bc", "hidden_dims": [128, 128]},
            "train": {"steps": 4000, "batch_size": 128, "val_fraction": 0.0, "num_threads": 1},
        }
        ckpt = train([tmp_path / "demos"], tmp_path / "bc", cfg, seed=0, progress=False)
        before = len(_events(sim, "done"))
        probe.start_node(
            "sim_robot_node",
            params_file="config/sim_robot.yaml",
            params={**ARM_SIM, "seed": 50000},
        )
        probe.start_node(
            "inference_node",
            params_file="config/inference.yaml",
            params={"mapping_file": ARM, "checkpoint": ckpt["checkpoint"], "auto_activate": True},
        )
        probe.wait_for(lambda: len(_events(sim, "done")) >= before + 20, 400, "20 episodes")
        assert set(probe.stop_nodes().values()) == {0}
    finally:
        probe.close()
    done = _events(sim, "done")[before : before + 20]
    rate = float(np.mean([e["success"] for e in done]))
    assert rate >= 0.8, done
