"""Lifecycle transitions of the inference and DAgger nodes (issue 13).

Each node runs in this process (its own :class:`rclpy.Context`) and is driven through its
lifecycle with the same calls that the ``~/change_state`` service (and so ``ros2 lifecycle
set``) makes: configure -> activate -> deactivate -> cleanup, ten times over, then configure
-> activate -> shutdown. After every transition the node's publishers, subscriptions,
services and timers are counted exactly: cleanup and shutdown must leave what the
constructor made and nothing else (a leak doubles a service or keeps a subscription that
still feeds a destroyed aligner). A probe node in the same executor checks that commands
flow while active, stop on deactivate (after the safe command), and come back on activate;
and that a mapping and a checkpoint set between cleanup and configure are the ones used.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rclpy
import yaml
from geometry_msgs.msg import Twist
from nav_msgs.msg import Odometry
from rclpy.executors import SingleThreadedExecutor
from rclpy.lifecycle import TransitionCallbackReturn
from rclpy.node import Node
from rclpy.parameter import Parameter
from std_msgs.msg import Float64MultiArray

from il_core.checkpoint import load_policy
from il_core.collect import collect
from il_core.train import train
from il_ros.common import COMMAND_QOS, publisher_sensor_qos
from il_ros.dagger_node import DaggerNode
from il_ros.inference_node import InferenceNode

pytestmark = pytest.mark.ros

REPO_ROOT = Path(__file__).resolve().parents[1]
MAPPING = REPO_ROOT / "config" / "point_reach_mapping.yaml"
TINY = {
    "policy": {"name": "bc", "hidden_dims": [16]},
    "train": {"steps": 30, "batch_size": 32, "val_fraction": 0.0, "num_threads": 1},
}
SUCCESS = TransitionCallbackReturn.SUCCESS


def entity_counts(node: Node) -> dict[str, int]:
    """How many publishers, subscriptions, services and timers the node holds now."""
    return {
        "publishers": len(list(node.publishers)),
        "subscriptions": len(list(node.subscriptions)),
        "services": len(list(node.services)),
        "timers": len(list(node.timers)),
    }


def bring_up(node: Any, configured: dict[str, int], active: dict[str, int], cycle: int) -> None:
    """Configure then activate, with the exact entity counts after each transition."""
    assert node.trigger_configure() == SUCCESS, cycle
    assert entity_counts(node) == configured, cycle
    assert node.trigger_activate() == SUCCESS, cycle
    assert entity_counts(node) == active, cycle


def plus(base: dict[str, int], **extra: int) -> dict[str, int]:
    """``base`` with ``extra`` added per kind."""
    return {k: v + extra.get(k, 0) for k, v in base.items()}


class Harness:
    """A node under test and a probe robot in one executor, spun on demand."""

    def __init__(self, context: Any, node: Node, cmd_topic: str = "/cmd_vel") -> None:
        self.node = node
        self.probe = Node("lifecycle_probe", context=context)
        self.commands: list[Twist] = []
        self.probe.create_subscription(Twist, cmd_topic, self.commands.append, COMMAND_QOS)
        self.goal = self.probe.create_publisher(Float64MultiArray, "/goal", publisher_sensor_qos())
        self.odom = self.probe.create_publisher(Odometry, "/odom", publisher_sensor_qos())
        self.executor = SingleThreadedExecutor(context=context)
        self.executor.add_node(node)
        self.executor.add_node(self.probe)

    def spin(self, seconds: float) -> None:
        """Spin for ``seconds``, publishing the robot's observations at 50 Hz."""
        end = time.monotonic() + seconds
        next_obs = 0.0
        while time.monotonic() < end:
            if time.monotonic() >= next_obs:
                stamp = self.probe.get_clock().now().to_msg()
                self.goal.publish(Float64MultiArray(data=[0.5, -0.5]))
                o = Odometry()
                o.header.stamp = stamp
                o.pose.pose.position.x = 0.1
                self.odom.publish(o)
                next_obs = time.monotonic() + 0.02
            self.executor.spin_once(timeout_sec=0.005)

    def spin_until(self, cond: Callable[[], bool], timeout: float, what: str) -> None:
        """Spin until ``cond()``; fail naming ``what`` after ``timeout`` seconds."""
        end = time.monotonic() + timeout
        while not cond():
            assert time.monotonic() < end, f"timed out waiting for {what}"
            self.spin(0.05)

    def close(self) -> None:
        """Destroy the executor and both nodes."""
        self.executor.shutdown()
        self.probe.destroy_node()
        self.node.destroy_node()


@pytest.fixture
def context() -> Iterator[Any]:
    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    yield ctx
    rclpy.shutdown(context=ctx)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Two tiny BC policies for the PointReach mapping (training seeds 0 and 1)."""
    root = tmp_path_factory.mktemp("lifecycle")
    collect("il_ros/PointReach-v0", "auto", 2, 0, root / "demos")
    return {
        name: train([root / "demos"], root / name, TINY, seed=seed, progress=False)["checkpoint"]
        for name, seed in (("a", 0), ("b", 1))
    }


def _act(policy: Any, obs: dict[str, np.ndarray]) -> np.ndarray:
    policy.reset()
    return np.asarray(policy.select_action(obs))


def second_mapping(tmp_path: Path) -> Path:
    """The PointReach mapping at another control rate (the node must pick up the change)."""
    m = yaml.safe_load(MAPPING.read_text())
    m["control_rate_hz"] = 10.0
    path = tmp_path / "mapping_10hz.yaml"
    path.write_text(yaml.safe_dump(m))
    return path


def test_inference_node_cleans_up_after_itself(context, checkpoints, tmp_path) -> None:
    node = InferenceNode(
        context=context,
        parameter_overrides=[
            Parameter("checkpoint", value=checkpoints["a"]),
            Parameter("mapping_file", value=str(MAPPING)),
            Parameter("diagnostics_period_s", value=0.5),
        ],
    )
    h = Harness(context, node)
    try:
        base = entity_counts(node)
        # configure: 2 observation subscriptions; command, /diagnostics publishers; ~/reload;
        # the diagnostics timer and the wiring check's timer.
        configured = plus(base, subscriptions=2, publishers=2, services=1, timers=2)
        active = plus(configured, timers=1)  # the control timer
        for cycle in range(10):
            bring_up(node, configured, active, cycle)
            if cycle in (0, 9):
                # Commands flow while active (20 Hz) and stop on deactivate.
                h.commands.clear()
                h.spin_until(lambda: len(h.commands) >= 10, 10.0, "commands while active")
            assert node.trigger_deactivate() == SUCCESS, cycle
            assert entity_counts(node) == configured, cycle
            if cycle in (0, 9):
                h.spin(0.3)  # the safe command (zero) arrives
                assert h.commands[-1].linear.x == 0.0 and h.commands[-1].linear.y == 0.0
                h.commands.clear()
                h.spin(0.5)
                assert h.commands == [], f"{len(h.commands)} commands after deactivate"
            assert node.trigger_cleanup() == SUCCESS, cycle
            assert entity_counts(node) == base, cycle
            assert node.policy is None and node.policy_executor is None

        # A checkpoint and a mapping given between cleanup and configure are the ones used.
        node.set_parameters(
            [
                Parameter("checkpoint", value=checkpoints["b"]),
                Parameter("mapping_file", value=str(second_mapping(tmp_path))),
            ]
        )
        assert node.trigger_configure() == SUCCESS
        assert node.mapping is not None and node.mapping.control_rate_hz == 10.0
        obs = {"goal": np.array([0.5, -0.5], np.float32), "position": np.zeros(2, np.float32)}
        assert node.policy is not None
        got = _act(node.policy, obs)
        np.testing.assert_allclose(got, _act(load_policy(checkpoints["b"]), obs), atol=1e-6)
        assert not np.allclose(got, _act(load_policy(checkpoints["a"]), obs), atol=1e-3)
        assert node.trigger_activate() == SUCCESS
        h.commands.clear()
        t0 = time.monotonic()
        h.spin_until(lambda: len(h.commands) >= 10, 10.0, "commands after reconfigure")
        rate = len(h.commands) / (time.monotonic() - t0)
        assert 5.0 < rate < 15.0, f"{rate:.1f} commands/s, the new mapping says 10 Hz"
        # shutdown from active: the safe command, then nothing configure made is left.
        assert node.trigger_shutdown() == SUCCESS
        assert entity_counts(node) == base
        h.spin(0.3)
        assert h.commands[-1].linear.x == 0.0 and h.commands[-1].linear.y == 0.0
    finally:
        h.close()


def test_dagger_node_cleans_up_after_itself(context, tmp_path) -> None:
    node = DaggerNode(
        context=context,
        parameter_overrides=[
            Parameter("mapping_file", value=str(MAPPING)),
            Parameter("output_dir", value=str(tmp_path / "round")),
            Parameter("diagnostics_period_s", value=0.5),
        ],
    )
    policy = Node("lifecycle_policy", context=context)
    policy_pub = policy.create_publisher(Twist, "/policy/cmd", COMMAND_QOS)
    h = Harness(context, node)
    h.executor.add_node(policy)
    try:
        base = entity_counts(node)
        # configure: 2 observation subscriptions + policy, expert and deadman commands + the
        # episode-control topic; command, engaged, /diagnostics and ~/status publishers; the
        # 5 episode services; the diagnostics and wiring-check timers.
        configured = plus(base, subscriptions=6, publishers=4, services=5, timers=2)
        active = plus(configured, timers=1)
        sent = Twist()
        sent.linear.x = 0.3
        for cycle in range(10):
            bring_up(node, configured, active, cycle)
            if cycle in (0, 9):
                # The policy's command passes through the mux while active.
                h.commands.clear()

                def muxed() -> bool:
                    policy_pub.publish(sent)
                    return sum(abs(c.linear.x - 0.3) < 1e-6 for c in h.commands) >= 5

                h.spin_until(muxed, 10.0, "the policy's command through the mux")
            assert node.trigger_deactivate() == SUCCESS, cycle
            assert entity_counts(node) == configured, cycle
            if cycle in (0, 9):
                h.spin(0.3)
                assert h.commands[-1].linear.x == 0.0
                h.commands.clear()
                for _ in range(10):
                    policy_pub.publish(sent)
                    h.spin(0.05)
                assert h.commands == [], f"{len(h.commands)} commands after deactivate"
            assert node.trigger_cleanup() == SUCCESS, cycle
            assert entity_counts(node) == base, cycle

        node.set_parameters([Parameter("mapping_file", value=str(second_mapping(tmp_path)))])
        assert node.trigger_configure() == SUCCESS
        assert node.mapping is not None and node.mapping.control_rate_hz == 10.0
        assert node.trigger_activate() == SUCCESS
        assert node.trigger_shutdown() == SUCCESS
        assert entity_counts(node) == base
        # Nothing recorded (no episode was started): the round's dataset holds no episode.
        assert not list((tmp_path / "round").glob("episode_*"))
        assert np.isfinite(node.gate.config.deviation_threshold)
    finally:
        policy.destroy_node()
        h.close()


def test_executor_settings_take_words_or_numbers(context, checkpoints) -> None:
    # n_action_steps / temporal_ensemble_coeff: "checkpoint" (the default), a number as
    # `ros2 param set` or a YAML file gives it, or "off"; anything else fails configure.
    node = InferenceNode(
        context=context,
        parameter_overrides=[
            Parameter("checkpoint", value=checkpoints["a"]),
            Parameter("mapping_file", value=str(MAPPING)),
        ],
    )
    try:
        assert node.get_parameter("n_action_steps").value == "checkpoint"
        assert node.trigger_configure() == SUCCESS
        assert node.policy_executor is not None and node.policy_executor.n_action_steps == 1
        assert node.trigger_cleanup() == SUCCESS
        node.set_parameters(
            [
                Parameter("n_action_steps", value=1),
                Parameter("temporal_ensemble_coeff", value=0.5),
            ]
        )
        assert node.trigger_configure() == SUCCESS
        assert node.policy_executor is not None
        assert node.policy_executor.temporal_ensemble_coeff == 0.5
        assert node.trigger_cleanup() == SUCCESS
        node.set_parameters([Parameter("temporal_ensemble_coeff", value="off")])
        assert node.trigger_configure() == SUCCESS
        assert node.policy_executor is not None
        assert node.policy_executor.temporal_ensemble_coeff is None
        assert node.trigger_cleanup() == SUCCESS
        node.set_parameters([Parameter("n_action_steps", value="all")])
        assert node.trigger_configure() == TransitionCallbackReturn.FAILURE
        assert node.policy_executor is None
    finally:
        node.destroy_node()
