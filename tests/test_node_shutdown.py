"""Every node survives the double SIGINT of a terminal under ``ros2 launch``, and runs clean.

A Ctrl-C in the terminal of ``ros2 launch`` signals the whole process group, and launch then
forwards its own SIGINT to each node: every node gets two, a few milliseconds to a few
hundred apart. Here all the nodes of a DAgger session on the simulated robot (sim robot,
scripted expert, human teleop, inference, DAgger mux, recorder) run as real processes; each
round sends every one of them two SIGINTs 0-200 ms apart (seeded), and requires: exit code
0, no traceback, the safe (zero) command as the last message on every command topic, the
recorder's open episode committed. The same run is the clean-run log check: a normal
session logs no WARN or ERROR line at all.
"""

import json
import os
import random
import re
import shutil
import signal
import subprocess
import time

import pytest
from geometry_msgs.msg import Twist
from sensor_msgs.msg import Joy
from std_msgs.msg import String

from il_core.collect import collect
from il_core.train import train
from il_ros.common import STATUS_QOS
from tests.ros_utils import RosProbe, describe_nodes, node_log

pytestmark = pytest.mark.ros

MAPPING = "config/point_reach_mapping.yaml"
ROUNDS = 3
COMMAND_TOPICS = ("/cmd_vel", "/policy/cmd", "/expert/cmd", "/teleop/cmd")
WARN_OR_ERROR = re.compile(r"^\[(WARN|ERROR|FATAL)\]", re.M)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    root = tmp_path_factory.mktemp("shutdown")
    collect("il_ros/PointReach-v0", "auto", 3, 0, root / "demos")
    cfg = {
        "policy": {"name": "bc", "hidden_dims": [32]},
        "train": {"steps": 100, "batch_size": 64, "val_fraction": 0.0, "num_threads": 1},
    }
    return train([root / "demos"], root / "bc", cfg, seed=0, progress=False)["checkpoint"]


def _start_session(probe, out):
    probe.start_node(
        "sim_robot_node",
        params_file="config/sim_robot.yaml",
        params={"seed": 100, "reset_delay_s": 0.2},
    )
    probe.start_node(
        "scripted_teleop_node",
        params_file="config/scripted_teleop.yaml",
        params={"command_topic": "/expert/cmd", "min_control_subscribers": 2},
    )
    probe.start_node(
        "recorder_node",
        params_file="config/recorder.yaml",
        params={"mapping_file": MAPPING, "output_dir": str(out / "recorded")},
    )
    probe.start_node(
        "dagger_node",
        params_file="config/dagger.yaml",
        params={
            "mapping_file": MAPPING,
            "output_dir": str(out / "dagger"),
            "auto_activate": True,
            "gate_mode": "deviation",
            "deviation_threshold": 0.2,
        },
    )
    probe.start_node(
        "teleop_node",
        params_file="config/teleop_joy.yaml",
        params={"mapping_file": MAPPING, "command_topic": "/teleop/cmd"},
    )


def _nonzero(msgs):
    return [m for m, _ in msgs if abs(m.linear.x) + abs(m.linear.y) > 1e-9]


def test_double_sigint_always_exits_0_with_the_safe_command_and_a_clean_log(checkpoint, tmp_path):
    rng = random.Random(0)
    for r in range(ROUNDS):
        gap = rng.uniform(0.0, 0.2)
        probe = RosProbe(f"shutdown_probe_{r}")
        try:
            cmds = {t: probe.subscribe(t, Twist, 100) for t in COMMAND_TOPICS}
            dagger = probe.subscribe("/dagger/status", String, STATUS_QOS)
            joy = probe.publisher("/joy", Joy, 10)
            _start_session(probe, tmp_path / f"round{r}")
            probe.start_node(
                "inference_node",
                params_file="config/inference.yaml",
                params={
                    "mapping_file": MAPPING,
                    "checkpoint": str(checkpoint),
                    "auto_activate": True,
                    "command_topic": "/policy/cmd",
                },
            )
            held = Joy(axes=[0.0, 0.8], buttons=[int(i == 4) for i in range(11)])

            def waiting_for(joy=joy, held=held, cmds=cmds, dagger=dagger):
                joy.publish(held)  # the operator holds the deadman and pushes the stick
                missing = [f"commands on {t}" for t in COMMAND_TOPICS if not _nonzero(cmds[t])]
                if not any(json.loads(m.data)["event"] == "started" for m, _ in dagger):
                    missing.append("a DAgger episode")
                return missing

            try:
                probe.wait_for(lambda: not waiting_for(), 60, "every node at work")
            except AssertionError as e:
                raise AssertionError(f"still waiting for {waiting_for()}: {e}") from None
            for _ in range(20):  # a second more: the open DAgger episode holds steps
                joy.publish(held)
                time.sleep(0.05)
            procs = list(probe.nodes)
            sent = time.monotonic()
            for sig_round in range(2):
                for p in procs:
                    os.kill(p.pid, signal.SIGINT)
                if sig_round == 0:
                    time.sleep(gap)
            codes = {}
            for p in procs:
                try:
                    codes[p.name] = p.wait(20)
                except Exception:
                    codes[p.name] = None
                    if shutil.which("py-spy"):  # where it hangs, for the failure report
                        dump = subprocess.run(
                            ["py-spy", "dump", "--native", "--pid", str(p.pid)],
                            capture_output=True,
                            text=True,
                        )
                        print(f"{p.name} did not exit:\n{dump.stdout}{dump.stderr}")
            report = f"round {r}, gap {gap * 1e3:.0f} ms\n" + describe_nodes(procs, 3000)
            assert set(codes.values()) == {0}, (codes, report)
            logs = {p.name: node_log(p) for p in procs}
            for name, log in logs.items():
                assert "Traceback" not in log, (name, report)
                warnings = [ln for ln in log.splitlines() if WARN_OR_ERROR.match(ln)]
                assert not warnings, (name, warnings, report)
            time.sleep(0.5)  # the probe's executor has delivered everything acknowledged
            for topic, msgs in cmds.items():
                last, received = msgs[-1]
                assert received > sent, (topic, "no command after the signals", report)
                assert (last.linear.x, last.linear.y) == (0.0, 0.0), (topic, last, report)
            probe.nodes.clear()
        finally:
            probe.close()
        # Every episode the DAgger node started is on disk, the one open at the signal too.
        recorded = tmp_path / f"round{r}" / "dagger"
        assert not list(recorded.glob(".inprogress-*")), sorted(os.listdir(recorded))
        # (An episode the simulator started a moment before the signal, with no step yet, is
        # discarded: there is nothing to commit.)
        log = logs["dagger_node"]
        started = log.count("episode control 'start': started")
        empty = log.count("discarded an episode of 0 steps")
        episodes = sorted((recorded / "episodes").glob("episode_*"))
        assert len(episodes) == started - empty >= 1, (len(episodes), started, empty)
        assert "discarded" not in log.replace("discarded an episode of 0 steps", "")
