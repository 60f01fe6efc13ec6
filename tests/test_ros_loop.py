"""The whole loop over real DDS (issue 3): record, train, drive, one HG-DAgger round.

The scripted teleop records demonstrations through the recorder; BC trains on them; the
inference node drives the simulated robot; then the DAgger node muxes policy and expert.

Every node is a real process started with ``--ros-args --params-file config/<node>.yaml``;
the test process only listens to status topics. Marked ``expensive`` (about two minutes).
"""

import json
import shutil

import numpy as np
import pytest
from std_msgs.msg import String

from il_core.data import EpisodeDataset
from il_core.evaluate import evaluate
from il_core.train import train
from il_ros.common import STATUS_QOS
from tests.ros_utils import RosProbe

pytestmark = [pytest.mark.ros, pytest.mark.expensive]
MAPPING = "config/point_reach_mapping.yaml"

TRAIN = {
    "policy": {"name": "bc", "hidden_dims": [64, 64]},
    "train": {"steps": 2000, "batch_size": 128, "val_fraction": 0.0, "num_threads": 1},
}


def _events(status, kind):
    return [e for e in (json.loads(m.data) for m, _ in status) if e.get("event") == kind]


@pytest.fixture(scope="module")
def loop(tmp_path_factory):
    return tmp_path_factory.mktemp("loop")


@pytest.fixture(scope="module")
def recorded(loop):
    probe = RosProbe("loop_record")
    try:
        saved = probe.subscribe("/recorder/status", String, STATUS_QOS)
        probe.start_node(
            "recorder_node",
            params_file="config/recorder.yaml",
            params={"mapping_file": MAPPING, "output_dir": str(loop / "demos")},
        )
        probe.start_node(
            "sim_robot_node",
            params_file="config/sim_robot.yaml",
            params={"seed": 0, "reset_delay_s": 0.3},
        )
        probe.start_node("scripted_teleop_node", params_file="config/scripted_teleop.yaml")
        probe.wait_for(lambda: len(_events(saved, "saved")) >= 25, 180, "25 recorded episodes")
        assert set(probe.stop_nodes().values()) == {0}
    finally:
        probe.close()
    return loop / "demos"


@pytest.fixture(scope="module")
def policy_round0(recorded, loop):
    ds = EpisodeDataset(recorded)
    assert ds.num_episodes >= 25
    summary = train([recorded], loop / "round0", TRAIN, seed=0, progress=False)
    return summary["checkpoint"]


def test_recorded_episodes_are_complete_and_labelled(recorded):
    ds = EpisodeDataset(recorded)
    ticks = sum(e.metadata["recording"]["ticks"] for e in ds.episodes)
    complete = sum(e.metadata["recording"]["complete_ticks"] for e in ds.episodes)
    # Gaps are honest: the first tick before the teleop's first command, ticks delayed on a
    # loaded machine. Most ticks must still be complete.
    assert complete / ticks >= 0.85, [e.metadata["recording"] for e in ds.episodes]
    # Measured from the recorded stamps, not the nominal 20 Hz: gaps lower it, honestly.
    assert (
        15.0
        <= float(np.median([e.measured_rate_hz for e in ds.episodes if e.measured_rate_hz]))
        <= 21.0
    )
    assert all(e.success is True for e in ds.episodes)  # the scripted expert always succeeds
    assert ds.spec.metadata["ros_mapping"]["action"]["topic"] == "/cmd_vel"


def test_inference_node_drives_the_robot_to_90_percent(policy_round0):
    probe = RosProbe("loop_infer")
    try:
        sim = probe.subscribe("/sim_robot/status", String, STATUS_QOS)
        probe.start_node(
            "sim_robot_node",
            params_file="config/sim_robot.yaml",
            params={"seed": 5000, "reset_delay_s": 0.2},
        )
        probe.start_node(
            "inference_node",
            params_file="config/inference.yaml",
            params={
                "mapping_file": MAPPING,
                "checkpoint": str(policy_round0),
                "auto_activate": True,
            },
        )
        probe.wait_for(lambda: len(_events(sim, "done")) >= 20, 180, "20 episodes")
        assert set(probe.stop_nodes().values()) == {0}
    finally:
        probe.close()
    done = _events(sim, "done")[:20]
    rate = float(np.mean([e["success"] for e in done]))
    assert rate >= 0.9, done


@pytest.fixture(scope="module")
def weak_round0(recorded, loop):
    """A policy from the first 5 demonstrations only: about 45% success, room to improve.

    The 25-demonstration policy succeeds on nearly every episode, so a DAgger round on top
    of it can only be "not worse" within a noise band that the test kept landing inside and
    outside of (100% vs 98% on the same seeds); from a clearly imperfect start the effect
    of the round is far outside the evaluation's noise.
    """
    subset = loop / "demos_first5"
    (subset / "episodes").mkdir(parents=True)
    shutil.copy2(recorded / "meta.json", subset / "meta.json")
    for ep in sorted((recorded / "episodes").glob("episode_*"))[:5]:
        shutil.copytree(ep, subset / "episodes" / ep.name)
    summary = train([subset], loop / "weak_round0", TRAIN, seed=0, progress=False)
    return subset, summary["checkpoint"]


def test_dagger_round_records_flagged_steps_and_improves_a_weak_policy(weak_round0, loop):
    demos, policy_round0 = weak_round0
    probe = RosProbe("loop_dagger")
    try:
        dag = probe.subscribe("/dagger/status", String, STATUS_QOS)
        probe.start_node(
            "sim_robot_node",
            params_file="config/sim_robot.yaml",
            params={"seed": 9000, "reset_delay_s": 0.3},
        )
        probe.start_node(
            "inference_node",
            params_file="config/inference.yaml",
            params={
                "mapping_file": MAPPING,
                "checkpoint": str(policy_round0),
                "auto_activate": True,
                "command_topic": "/policy/cmd",
            },
        )
        probe.start_node(
            "scripted_teleop_node",
            params_file="config/scripted_teleop.yaml",
            params={"command_topic": "/expert/cmd"},
        )
        probe.start_node(
            "dagger_node",
            params_file="config/dagger.yaml",
            params={
                "mapping_file": MAPPING,
                "output_dir": str(loop / "dagger1"),
                "auto_activate": True,
                "gate_mode": "deviation",
                "deviation_threshold": 0.2,
            },
        )
        probe.wait_for(lambda: len(_events(dag, "saved")) >= 10, 200, "10 DAgger episodes")
        assert set(probe.stop_nodes().values()) == {0}
    finally:
        probe.close()
    ds = EpisodeDataset(loop / "dagger1")
    flags = np.concatenate(
        [ds.episode(i).extras["is_intervention"][:, 0] for i in range(ds.num_episodes)]
    )
    labels = np.concatenate(
        [ds.episode(i).extras["has_expert_label"][:, 0] for i in range(ds.num_episodes)]
    )
    # The weak policy drifts: the expert takes over often; it labels every step it commands.
    assert flags.mean() >= 0.05 and labels.mean() >= 0.9, (flags.mean(), labels.mean())
    # Aggregate round 0 and the DAgger round, retrain, and compare on the same 100 seeds.
    summary = train([demos, loop / "dagger1"], loop / "round1", TRAIN, seed=0, progress=False)
    n = 100
    before = evaluate(policy_round0, "il_ros/PointReach-v0", n, seed=20000)
    after = evaluate(summary["checkpoint"], "il_ros/PointReach-v0", n, seed=20000)
    # Not worse, decisively: better by more than four standard errors of the success rate
    # over 100 episodes (4 x 0.05 at p = 0.5), where before this test asked only for "no
    # more than two standard errors worse" and sat on that edge.
    p = min(max(before["success_rate"], 0.01), 0.99)
    margin = 4 * (p * (1 - p) / n) ** 0.5
    assert before["success_rate"] <= 0.8, before  # the premise: room to improve
    assert after["success_rate"] >= before["success_rate"] + margin, (before, after)
