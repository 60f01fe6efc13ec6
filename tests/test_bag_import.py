"""``il-core import-bag``: rosbag2 (MCAP, sqlite3) -> dataset, without a ROS graph.

The bags are written as ``ros2 bag record`` writes them (CDR bytes of rclpy messages and the
receive time, ``tests/bag_utils.py``); the messages are the simulated robot's own encodings.
The expected steps are computed here independently of the importer: at each tick, the newest
message logged before it. ``tests/test_bag_live.py`` compares a bag with the live recorder.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import yaml
from std_msgs.msg import Bool, String

from il_core.bag_import import BagImportError, check_bag, import_bags
from il_core.data import EpisodeDataset
from il_core.mapping import mapping_from_dict
from il_core.recording import EXTRA_DELAY, EXTRA_HAS_LABEL
from il_ros.conversions import encode_command, encode_observation
from tests.bag_utils import BagRecorder
from tests.helpers import il_core

RATE = 20.0
CAMERA = {
    "topic": "/camera/image/compressed",
    "type": "sensor_msgs/msg/CompressedImage",
    "shape": [32, 32, 3],
    "codec": "jpeg",
    "quality": 90,
    "max_age_s": 0.25,
}
MAPPING = {
    "control_rate_hz": RATE,
    "observations": {
        "camera": CAMERA,
        "goal": {
            "topic": "/goal",
            "type": "std_msgs/msg/Float64MultiArray",
            "size": 2,
            "max_age_s": 1.0,
        },
        "position": {
            "topic": "/odom",
            "type": "nav_msgs/msg/Odometry",
            "fields": ["pose.x", "pose.y"],
            "max_age_s": 0.15,
        },
    },
    "action": {
        "topic": "/cmd_vel",
        "type": "geometry_msgs/msg/Twist",
        "fields": ["linear.x", "linear.y"],
        "low": [-10.0, -10.0],
        "high": [10.0, 10.0],
    },
}
T0 = 1_700_000_000.0  # log times on the wall clock, as a real bag has them
ODOM_DELAY = 0.002  # receive time - header stamp of the odometry


def _image(i: int) -> np.ndarray:
    """A smooth frame (JPEG keeps it within a few levels) whose flat blue says which it is."""
    y, x = np.mgrid[0:32, 0:32]
    img = np.stack([x * 6, y * 6, np.full_like(x, 20 + (i * 25) % 200)], -1)
    return img.astype(np.uint8)


def _timeline(t0: float, duration: float, command_offset: float = 0.0) -> list[tuple]:
    """``(log time, topic, type, value, header stamp)`` of a run, sorted by log time."""
    m = mapping_from_dict(MAPPING)
    src = {s.key: s for s in m.observations}
    events = []
    for k in range(int(duration * 50)):  # odometry 50 Hz, stamped 2 ms before receipt
        t = t0 + 0.004 + k / 50
        pos = np.array([math.sin(t - t0), math.cos(t - t0)], np.float32)
        events.append((t, "position", src["position"], pos, t - ODOM_DELAY))
    for k in range(int(duration * 20)):  # camera 20 Hz
        t = t0 + 0.013 + k / 20
        events.append((t, "camera", src["camera"], _image(k), t - 0.01))
    for k in range(int(duration * 2)):  # goal 2 Hz, unstamped
        t = t0 + 0.001 + k / 2
        events.append((t, "goal", src["goal"], np.array([0.5, -0.5], np.float32), t))
    for k in range(int(duration * 20)):  # commands 20 Hz, unstamped, each one unique
        t = t0 + 0.031 + command_offset + k / 20
        a = np.array([0.01 * k, -0.02 * k], np.float32)
        events.append((t, "action", m.action, a, t))
    return sorted(events, key=lambda e: e[0])


def _write(bag, events, storage="mcap", extra=()):
    with BagRecorder(bag, storage) as rec:
        for t, key, where, value, stamp in events:
            if key == "action":
                msg = encode_command(where, value, stamp)
            else:
                msg = encode_observation(where, value, stamp)
            rec.write(where.topic, where.type, t, msg)
        for t, topic, msg in extra:
            rec.write(topic, f"std_msgs/msg/{type(msg).__name__}", t, msg)


def _expected(events, ticks):
    """For each tick: the newest command and odometry received before it (None if none)."""
    out = []
    for tau in ticks:
        cmds = [e for e in events if e[1] == "action" and e[0] < tau]
        odom = [e for e in events if e[1] == "position" and e[0] < tau and e[4] <= tau]
        out.append((cmds[-1][3] if cmds else None, odom[-1][3] if odom else None))
    return out


@pytest.fixture
def mapping_file(tmp_path):
    path = tmp_path / "mapping.yaml"
    path.write_text(yaml.safe_dump(MAPPING))
    return path


def test_mcap_and_sqlite3_bags_give_the_recorders_steps(tmp_path, mapping_file):
    events = _timeline(T0, 3.0)
    for storage in ("mcap", "sqlite3"):
        _write(tmp_path / f"bag_{storage}", events, storage)
    report = {
        s: import_bags([tmp_path / f"bag_{s}"], mapping_file, tmp_path / f"data_{s}")
        for s in ("mcap", "sqlite3")
    }
    assert report["mcap"]["episodes"] == report["sqlite3"]["episodes"] == 1
    a, b = (EpisodeDataset(tmp_path / f"data_{s}").episode(0) for s in ("mcap", "sqlite3"))
    np.testing.assert_array_equal(a.actions, b.actions)
    np.testing.assert_array_equal(a.timestamps, b.timestamps)
    for k in a.observations:
        np.testing.assert_array_equal(a.observations[k], b.observations[k])

    # Ticks every 50 ms from the first message; a step wherever every stream is fresh.
    first = events[0][0]
    ticks = a.timestamps
    np.testing.assert_allclose(np.diff(ticks), 1 / RATE, atol=1e-6)
    assert (ticks[0] - first) * RATE == pytest.approx(round((ticks[0] - first) * RATE), abs=1e-6)
    # Three seconds at 20 Hz less the first ticks before every stream has spoken.
    assert 57 <= len(ticks) <= 59
    expected = _expected(events, ticks)
    np.testing.assert_array_equal(a.actions, np.stack([e[0] for e in expected]))
    np.testing.assert_array_equal(a.observations["position"], np.stack([e[1] for e in expected]))
    np.testing.assert_allclose(a.observations["goal"], [[0.5, -0.5]] * len(ticks))
    # Header stamps are kept: the odometry's receive delay is the 2 ms the bag shows.
    np.testing.assert_allclose(a.extras[EXTRA_DELAY][:, 2], ODOM_DELAY, atol=1e-5)
    # Camera frames within JPEG error of what was published.
    cams = [e for e in events if e[1] == "camera"]
    for i, tau in enumerate(ticks):
        j = len([e for e in cams if e[0] < tau]) - 1
        errs = [
            np.abs(a.observations["camera"][i] - _image(n).astype(float)).mean()
            for n in (j - 1, j, j + 1)
        ]
        assert errs[1] < 3.0 and errs[1] < min(errs[0], errs[2]) / 3, (i, errs)
    rec = a.info.metadata["recording"]
    assert rec["ticks"] == len(ticks) + rec["gap_ticks"]
    assert rec["streams"]["position"]["received"] == 150
    assert a.info.measured_rate_hz == pytest.approx(RATE, rel=1e-6)
    assert a.info.metadata["source"]["bag"].endswith("bag_mcap")


def test_a_bare_mcap_file_and_several_bags_append_to_one_dataset(tmp_path, mapping_file):
    _write(tmp_path / "one", _timeline(T0, 1.0))
    _write(tmp_path / "two", _timeline(T0 + 100, 1.5), "sqlite3")
    mcap = next((tmp_path / "one").glob("*.mcap"))
    report = import_bags([mcap, tmp_path / "two"], mapping_file, tmp_path / "data")
    assert report["episodes"] == 2
    ds = EpisodeDataset(tmp_path / "data")
    assert [e.length for e in ds.episodes] == [
        e["steps"] for b in report["bags"] for e in b["episodes"]
    ]
    assert 18 <= ds.episodes[0].length <= 20 and 28 <= ds.episodes[1].length <= 30


def test_split_on_the_recorders_episode_topic(tmp_path, mapping_file):
    events = _timeline(T0, 6.0)
    control = [
        (T0 + 0.5137, "start"),
        (T0 + 1.5137, "success"),
        (T0 + 2.0, "stop"),  # nothing open: ignored, like the recorder
        (T0 + 2.5137, "start"),
        (T0 + 3.5137, "failure"),
        (T0 + 4.0, "start"),
        (T0 + 5.0, "discard"),
    ]
    extra = [(t, "/il_ros/episode_control", String(data=c)) for t, c in control]
    _write(tmp_path / "bag", events, extra=extra)
    report = import_bags(
        [tmp_path / "bag"], mapping_file, tmp_path / "data", split_on_episode_topic=True
    )
    ds = EpisodeDataset(tmp_path / "data")
    assert [e.success for e in ds.episodes] == [True, False]
    for e, (start, end) in zip(ds.episodes, [(0.5137, 1.5137), (2.5137, 3.5137)], strict=True):
        ep = ds.episode(e.index)
        assert T0 + start <= ep.timestamps[0] < T0 + start + 0.05
        assert T0 + end - 0.05 <= ep.timestamps[-1] < T0 + end
        assert 19 <= e.length <= 20
    assert report["bags"][0]["discarded_episodes"] == 1
    assert report["bags"][0]["ignored_episode_commands"] == [f"stop@{T0 + 2.0:.3f}"]
    # Without the topic in the bag the split is refused, naming it.
    _write(tmp_path / "plain", events)
    with pytest.raises(BagImportError, match="/il_ros/episode_control"):
        import_bags(
            [tmp_path / "plain"], mapping_file, tmp_path / "d2", split_on_episode_topic=True
        )


def test_split_where_the_streams_pause(tmp_path, mapping_file):
    events = _timeline(T0, 1.0) + _timeline(T0 + 3.0, 1.0)
    _write(tmp_path / "bag", events)
    import_bags([tmp_path / "bag"], mapping_file, tmp_path / "gap", split_gap_s=0.5)
    ds = EpisodeDataset(tmp_path / "gap")
    assert ds.num_episodes == 2
    assert all(18 <= e.length <= 20 for e in ds.episodes)
    import_bags([tmp_path / "bag"], mapping_file, tmp_path / "whole")
    whole = EpisodeDataset(tmp_path / "whole")
    # One episode with the pause as ticks that were gaps (stale streams), not steps.
    assert whole.num_episodes == 1
    assert whole.episodes[0].metadata["recording"]["gap_ticks"] >= 35


def test_steps_with_the_deadman_released_carry_no_expert_label(tmp_path, mapping_file):
    extra = [
        (T0 + 0.0, "/il_ros/deadman", Bool(data=True)),
        (T0 + 1.0, "/il_ros/deadman", Bool(data=False)),
        (T0 + 2.0, "/il_ros/deadman", Bool(data=True)),
    ]
    _write(tmp_path / "bag", _timeline(T0, 3.0), extra=extra)
    import_bags([tmp_path / "bag"], mapping_file, tmp_path / "data")
    ep = EpisodeDataset(tmp_path / "data").episode(0)
    label = ep.extras[EXTRA_HAS_LABEL][:, 0]
    released = (ep.timestamps > T0 + 1.0) & (ep.timestamps <= T0 + 2.0)
    assert released.sum() >= 19
    np.testing.assert_array_equal(label, np.where(released, 0.0, 1.0))


def test_malformed_messages_are_counted_not_fatal(tmp_path, mapping_file):
    events = _timeline(T0, 2.0)
    m = mapping_from_dict(MAPPING)
    cam = next(s for s in m.observations if s.key == "camera")
    broken = encode_observation(cam, _image(0), T0 + 1.0)
    broken.data = b"not a jpeg"
    with BagRecorder(tmp_path / "bag") as rec:
        for t, key, where, value, stamp in events:
            msg = (encode_command if key == "action" else encode_observation)(where, value, stamp)
            rec.write(where.topic, where.type, t, msg)
        rec.write(cam.topic, cam.type, T0 + 1.001, broken)
    report = import_bags([tmp_path / "bag"], mapping_file, tmp_path / "data")
    assert report["bags"][0]["malformed"] == {"camera": 1}
    ep = EpisodeDataset(tmp_path / "data").episode(0)
    assert ep.info.metadata["recording"]["streams"]["camera"]["malformed"] == 1
    assert ep.info.length >= 37


ARM = {
    "control_rate_hz": 10.0,
    "observations": {
        "joints": {
            "topic": "/joint_states",
            "type": "sensor_msgs/msg/JointState",
            "joints": ["a", "b"],
            "fields": ["position", "velocity"],
            "max_age_s": 0.3,
        },
        "raw": {"topic": "/raw", "type": "sensor_msgs/msg/Image", "shape": [8, 8, 3]},
        "pad": {"topic": "/joy", "type": "sensor_msgs/msg/Joy", "axes": [0], "buttons": [0]},
        "tool": {
            "topic": "/tool",
            "type": "geometry_msgs/msg/TwistStamped",
            "fields": ["linear.x", "angular.z"],
        },
    },
    "action": {
        "topic": "/arm/joint_trajectory",
        "type": "trajectory_msgs/msg/JointTrajectory",
        "joints": ["a", "b"],
    },
}


def test_joint_states_images_joy_twists_and_trajectories(tmp_path):
    m = mapping_from_dict(ARM)
    src = {s.key: s for s in m.observations}
    values = {
        "joints": lambda k: np.array([k, -k, 2 * k, 0.5], np.float32),
        "raw": lambda k: np.full((8, 8, 3), k % 256, np.uint8),
        "pad": lambda k: np.array([0.25, k % 2], np.float32),
        "tool": lambda k: np.array([0.1 * k, -0.1], np.float32),
    }
    with BagRecorder(tmp_path / "bag", "sqlite3") as rec:
        # A first message 50 ms early sets the ticks' phase (T0 - 0.05 + 0.1 j), away from the
        # messages' log times.
        early = encode_observation(src["joints"], values["joints"](-1), T0 - 0.05)
        rec.write(src["joints"].topic, src["joints"].type, T0 - 0.05, early)
        for k in range(20):
            t = T0 + k * 0.1
            for key, make in values.items():
                rec.write(
                    src[key].topic,
                    src[key].type,
                    t + 0.01,
                    encode_observation(src[key], make(k), t),
                )
            cmd = encode_command(
                m.action, np.array([[k, -k], [k + 1, -k - 1]], np.float32), t, 0.1
            )
            rec.write(m.action.topic, m.action.type, t + 0.02, cmd)
    (tmp_path / "arm.yaml").write_text(yaml.safe_dump(ARM))
    report = import_bags([tmp_path / "bag"], tmp_path / "arm.yaml", tmp_path / "data")
    assert not report["bags"][0]["malformed"], report
    ep = EpisodeDataset(tmp_path / "data").episode(0)
    assert ep.info.length >= 18
    # The tick at T0 - 0.05 + 0.1 j sees the messages of step j - 1 (logged 10-20 ms after
    # T0 + 0.1 (j - 1)); the trajectory's first point is the action.
    k = np.round((ep.timestamps - T0 + 0.05) / 0.1).astype(int) - 1
    assert k[0] == 0 and np.all(np.diff(k) == 1)
    np.testing.assert_array_equal(ep.actions, np.stack([k, -k], 1).astype(np.float32))
    np.testing.assert_array_equal(ep.observations["joints"][:, 0], k)
    np.testing.assert_array_equal(ep.observations["raw"][:, 0, 0, 0], k % 256)
    np.testing.assert_array_equal(ep.observations["pad"][:, 1], k % 2)
    np.testing.assert_allclose(ep.observations["tool"][:, 0], 0.1 * k, atol=1e-6)


def _bags_with_problems(tmp_path):
    events = _timeline(T0, 1.0)
    _write(tmp_path / "good", events)
    _write(tmp_path / "no_camera", [e for e in events if e[1] != "camera"])
    m = mapping_from_dict(MAPPING)
    wrong = mapping_from_dict(
        {**MAPPING, "action": {**MAPPING["action"], "type": "geometry_msgs/msg/TwistStamped"}}
    )
    with BagRecorder(tmp_path / "wrong_type") as rec:
        for t, key, where, value, stamp in events:
            if key == "action":
                rec.write(
                    where.topic, wrong.action.type, t, encode_command(wrong.action, value, stamp)
                )
            else:
                rec.write(where.topic, where.type, t, encode_observation(where, value, stamp))
    (tmp_path / "not_a_bag").mkdir()
    (tmp_path / "not_a_bag" / "metadata.yaml").write_text("rosbag2_bagfile_information: {")
    return m


def test_bad_bags_get_clear_errors_and_nothing_is_written(tmp_path, mapping_file):
    _bags_with_problems(tmp_path)
    out = tmp_path / "data"
    cases = {
        "no_camera": r"no_camera: no topic /camera/image/compressed \(observation 'camera', "
        r"expected sensor_msgs/msg/CompressedImage\)",
        "wrong_type": r"topic /cmd_vel \(the command\) is geometry_msgs/msg/TwistStamped, "
        r"expected geometry_msgs/msg/Twist",
        "not_a_bag": r"not_a_bag: cannot be read as a rosbag2",
        "missing": r"missing: no such file",
    }
    for name, pattern in cases.items():
        # The bad bag comes after a good one: still nothing is written.
        with pytest.raises(BagImportError, match=pattern):
            import_bags([tmp_path / "good", tmp_path / name], mapping_file, out)
        assert not out.exists()
    with pytest.raises(BagImportError, match="The bag has: .*/cmd_vel"):
        check_bag(tmp_path / "no_camera", mapping_from_dict(MAPPING))


def test_cli_prints_one_json_line_and_exits_2_on_a_bad_bag(tmp_path, mapping_file):
    _bags_with_problems(tmp_path)
    out = tmp_path / "data"
    proc = il_core("import-bag", tmp_path / "good", "--mapping", mapping_file, "--out", out)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["episodes"] == 1 and result["steps"] == EpisodeDataset(out).num_steps
    proc = il_core(
        "import-bag", tmp_path / "wrong_type", "--mapping", mapping_file, "--out", out, check=False
    )
    assert proc.returncode == 2
    assert "il-core import-bag: error: bag" in proc.stderr and "/cmd_vel" in proc.stderr
    assert EpisodeDataset(out).num_episodes == 1  # the stored dataset is untouched
