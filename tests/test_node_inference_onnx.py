"""A robot without torch: ``il-core export`` then the inference node on the ``.onnx`` file.

The node process runs in a Python where ``import torch`` fails (a blocking ``torch`` package
first on ``PYTHONPATH``), on a 7-joint arm mapping at 100 Hz. This test plays the robot: it
publishes joint states at 100 Hz and checks that commands arrive at the control rate, that
each equals the exported policy's action for the joint state it answers (computed here by
the same ONNX file), and that the node never loaded torch.
"""

import json
import subprocess
import sys
import time

import numpy as np
import pytest
from sensor_msgs.msg import JointState
from std_msgs.msg import Float64MultiArray, String

from il_core.mapping import load_mapping
from il_core.runtime import load_runtime_policy
from il_core.train import train
from il_ros.common import STATUS_QOS, publisher_sensor_qos
from tests.ros_utils import REPO_ROOT, RosProbe, node_log

pytestmark = pytest.mark.ros

MAPPING = "config/bench_joint_mlp_mapping.yaml"
JOINTS = [f"j{i}" for i in range(7)]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A small BC policy for the 7-joint mapping, exported with ``il-core export``."""
    from il_core.data import DatasetWriter

    root = tmp_path_factory.mktemp("onnx_robot")
    spec = load_mapping(REPO_ROOT / MAPPING).to_spec()
    rng = np.random.default_rng(0)
    with DatasetWriter(root / "demos", spec) as w:
        for _ in range(3):
            w.start_episode()
            for t in range(50):
                q = rng.uniform(-1, 1, 14).astype(np.float32)
                w.add_step({"joints": q}, np.clip(-0.5 * q[:7], -1, 1), t / 100.0)
            w.end_episode(success=True)
    cfg = {
        "policy": {"name": "bc", "hidden_dims": [64, 64]},
        "train": {"steps": 50, "batch_size": 32, "val_fraction": 0.0, "num_threads": 1},
    }
    ckpt = train([root / "demos"], root / "bc", cfg, seed=0, progress=False)["checkpoint"]
    out = subprocess.run(
        [sys.executable, "-m", "il_core", "export", "--checkpoint", ckpt]
        + ["--out", str(root / "policy.onnx")],
        capture_output=True,
        text=True,
        check=True,
    )
    line = json.loads(out.stdout.strip().splitlines()[-1])
    assert line["format"] == "onnx" and line["max_abs_diff"] < 1e-4, line
    return root


def test_onnx_policy_drives_at_100_hz_in_a_python_without_torch(exported, monkeypatch):
    blocker = exported / "no_torch"
    for pkg in ("torch", "torchvision"):
        (blocker / pkg).mkdir(parents=True, exist_ok=True)
        (blocker / pkg / "__init__.py").write_text(f"raise ImportError('{pkg} is blocked')\n")
    monkeypatch.setenv("PYTHONPATH", f"{blocker}:{REPO_ROOT}")
    probe = RosProbe("onnx_robot_probe")
    try:
        status = probe.subscribe("/inference/status", String, STATUS_QOS)
        cmds = probe.subscribe("/bench/joint_command", Float64MultiArray, 1000)
        joints = probe.publisher("/bench/joint_states", JointState, publisher_sensor_qos(10))
        node = probe.start_node(
            "inference_node",
            params_file="config/inference.yaml",
            params={
                "mapping_file": MAPPING,
                "checkpoint": str(exported / "policy.onnx"),
                "auto_activate": True,
            },
        )
        probe.wait_for_subscribers("/bench/joint_states", 1, 30)
        # One fixed joint state, so every command is the policy's answer to it.
        q = np.linspace(-0.6, 0.6, 14).astype(np.float32)

        def publish(seconds):
            end = time.monotonic() + seconds
            next_at = time.monotonic()
            while time.monotonic() < end:
                msg = JointState(name=JOINTS, position=q[:7].tolist(), velocity=q[7:].tolist())
                msg.header.stamp = probe.node.get_clock().now().to_msg()
                joints.publish(msg)
                next_at += 0.01
                time.sleep(max(0.0, next_at - time.monotonic()))

        publish(3.0)  # warm up: discovery, first commands
        assert any(json.loads(m.data)["event"] == "commanding" for m, _ in status), node_log(node)
        t0 = time.monotonic()
        publish(5.0)
        t1 = time.monotonic()
        with open(f"/proc/{node.pid}/maps") as f:
            maps = f.read()
        assert probe.stop_nodes() == {"inference_node": 0}
    finally:
        probe.close()
    log = node_log(node)
    assert "Traceback" not in log, log
    assert "libtorch" not in maps, "the node loaded torch"
    window = [np.asarray(m.data) for m, r in cmds if t0 <= r <= t1]
    rate = len(window) / (t1 - t0)
    assert 90.0 <= rate <= 110.0, rate  # 100 Hz control, as received by the robot
    policy = load_runtime_policy(exported / "policy.onnx")
    expected = policy.spec.action.clip(policy.predict_action_chunk({"joints": q[None]})[0])
    moving = [c for c in window if np.any(c != 0)]
    assert len(moving) >= 0.95 * len(window), (len(moving), len(window))
    np.testing.assert_allclose(np.stack(moving), np.tile(expected, (len(moving), 1)), atol=1e-5)
