"""LeRobot format v3.0: ``il-core export-lerobot`` / ``import-lerobot``.

- LeRobot 0.4.4 itself (in ``.lerobot-venv``, which ``make test`` creates from
  ``../shared/lerobot-0.4.4``) opens exported datasets with ``LeRobotDataset``: episodes,
  frames per episode, actions, every camera with its shape and images within codec error,
  ACT-style ``delta_timestamps`` windows, episodes spread over several data and video files
  and chunk directories; and a dataset LeRobot recorded itself imports.
  These skip only where ``../shared/lerobot-0.4.4`` is absent; a missing or broken venv
  beside it fails them.
- Round trips without LeRobot: a camera dataset from ``il-core collect`` (then trained on),
  a dataset with every kind of field (two vector keys, a grayscale camera, extras,
  success, metadata), a discrete action.
- Bad input: missing ``meta/info.json``, another ``codebase_version``, a feature shape that
  the data does not have, features without a counterpart (reported), an existing ``--out``.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from il_core import lerobot_format
from il_core.cli import main
from il_core.data import DatasetError, DatasetWriter, EpisodeDataset
from il_core.lerobot_format import export_lerobot, import_lerobot
from il_core.spec import ActionSpec, DatasetSpec, FeatureSpec
from tests.helpers import FAST_TRAIN

ROOT = Path(__file__).resolve().parents[1]
# Set by `make test` from its LEROBOT and LEROBOT_VENV variables.
SHARED = Path(os.environ.get("IL_ROS_LEROBOT", ROOT.parent / "shared" / "lerobot-0.4.4"))
VENV_PYTHON = Path(os.environ.get("IL_ROS_LEROBOT_PYTHON", ROOT / ".lerobot-venv/bin/python"))
PROBE = Path(__file__).with_name("lerobot_probe.py")
needs_lerobot = pytest.mark.skipif(
    not SHARED.is_dir(), reason=f"no {SHARED}: LeRobot 0.4.4 is not available here"
)
#: Mean absolute error in levels of 255: AV1 at CRF 30 on 32x32 frames, then JPEG on import.
MAE_LEROBOT = 6.0
MAE_ROUND_TRIP = 6.0


def _cli(capsys: pytest.CaptureFixture, *args: object) -> tuple[int, dict | None, str]:
    """``il-core ARGS`` in this process (a subprocess costs seconds of imports per call).

    Returns:
        Exit status, the JSON line printed (None on error), stderr.
    """
    capsys.readouterr()
    rc = main([str(a) for a in args])
    cap = capsys.readouterr()
    lines = cap.out.strip().splitlines()
    return rc, json.loads(lines[-1]) if rc == 0 and lines else None, cap.err


def _lerobot(*args: object) -> dict:
    """Run tests/lerobot_probe.py in LeRobot's venv; its last JSON line."""
    if not VENV_PYTHON.exists():
        pytest.fail(
            f"{SHARED} exists but {VENV_PYTHON} does not: run `make lerobot-venv` "
            "(make test does it)"
        )
    proc = subprocess.run(
        [str(VENV_PYTHON), str(PROBE), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _smooth(h: int, w: int, c: int, t: int, e: int) -> np.ndarray:
    x = np.mgrid[0:h, 0:w][1]
    img = np.stack([128 + 90 * np.sin(x / 7 + t / 5 + j + e) for j in range(c)], -1)
    return img.clip(0, 255).astype(np.uint8)


RICH_SPEC = DatasetSpec(
    {
        "joints": FeatureSpec("vector", (3,), names=("a", "b", "c"), units=("rad",) * 3),
        "cam_a": FeatureSpec("image", (32, 48, 3)),
        "pose": FeatureSpec("vector", (2,)),
        "cam_g": FeatureSpec("image", (32, 32, 1), codec="png"),
    },
    ActionSpec("continuous", dim=2, names=("x", "y"), low=(-1.0, -1.0), high=(1.0, 1.0)),
    10.0,
    extras={
        "is_intervention": FeatureSpec("vector", (1,)),
        "obs_age": FeatureSpec("vector", (2,)),
    },
    metadata={"env_id": "test", "robot": "none"},
)


@pytest.fixture(scope="module")
def rich_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three episodes (7, 12, 5 steps) of RICH_SPEC with irregular timestamps."""
    root = tmp_path_factory.mktemp("rich") / "data"
    rng = np.random.default_rng(0)
    with DatasetWriter(root, RICH_SPEC, fsync=False) as w:
        for e, n in enumerate([7, 12, 5]):
            w.start_episode({"seed": e})
            for t in range(n):
                obs = {
                    "joints": rng.normal(size=3),
                    "pose": rng.normal(size=2),
                    "cam_a": _smooth(32, 48, 3, t, e),
                    "cam_g": _smooth(32, 32, 1, t, e),
                }
                extras = {
                    "is_intervention": np.array([t % 2], np.float32),
                    "obs_age": rng.uniform(0, 1, 2),
                }
                ts = 5.0 + 0.1 * t + 0.013 * rng.uniform()
                w.add_step(obs, rng.uniform(-1, 1, 2), ts, extras)
            w.end_episode(success=[True, False, None][e], metadata={"operator": f"op{e}"})
    return root


@pytest.fixture(scope="module")
def camera_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three scripted-expert episodes of the camera env (32x32 RGB, 2-D action)."""
    from il_core.collect import collect

    root = tmp_path_factory.mktemp("cam") / "data"
    collect("il_ros/MultimodalReachImage-v0", "auto", 3, 0, root)
    return root


@pytest.fixture(scope="module")
def camera_export(camera_data: Path) -> Path:
    out = camera_data.parent / "lerobot"
    result = export_lerobot(camera_data, out)
    assert result["cameras"] == ["observation.images.image"]
    assert result["video_codec"] == "libsvtav1"
    return out


def _mae(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.float64) - b.astype(np.float64)).mean())


def _all(ds: EpisodeDataset, key: str | None = None) -> np.ndarray:
    eps = [ds.episode(i) for i in range(ds.num_episodes)]
    return np.concatenate([e.actions if key is None else e.observations[key] for e in eps])


def _check_with_lerobot(src: Path, exported: Path, tmp_path: Path) -> dict:
    got = _lerobot("read", exported, tmp_path / "frames.npz")
    frames = np.load(tmp_path / "frames.npz")
    ds = EpisodeDataset(src)
    assert got["codebase_version"] == "v3.0"
    assert got["num_episodes"] == ds.num_episodes
    assert got["episode_lengths"] == ds.episode_lengths.tolist()
    assert got["num_frames"] == ds.num_steps
    assert got["fps"] == ds.spec.control_rate_hz
    np.testing.assert_array_equal(frames["action"], _all(ds))
    assert got["camera_keys"] == [f"observation.images.{k}" for k in ds.spec.image_keys]
    for k in ds.spec.image_keys:
        h, w, c = ds.spec.observations[k].shape
        name = f"observation.images.{k}"
        assert got["camera_shapes"][name] == [3, h, w]
        decoded = frames[name]
        if c == 1:
            decoded = decoded.mean(axis=-1, keepdims=True)
        assert _mae(decoded, _all(ds, k)) < MAE_LEROBOT, k
    # An action chunk of 4 and two frames of history per camera, as ACT/diffusion ask.
    assert got["delta_shapes"]["action"] == [4, ds.spec.action.dim]
    for k in ds.spec.image_keys:
        assert got["delta_shapes"][f"observation.images.{k}"][0] == 2
    return got


@needs_lerobot
def test_lerobot_reads_camera_export(camera_data: Path, camera_export: Path, tmp_path: Path):
    got = _check_with_lerobot(camera_data, camera_export, tmp_path)
    assert got["task"] == "il_ros/MultimodalReachImage-v0"
    assert "observation.state" not in got["features"]  # this env has no vector observation


@pytest.fixture(scope="module")
def rich_multifile(rich_data: Path) -> Path:
    """RICH export with file size limits so small that every episode gets its own files."""
    out = rich_data.parent / "lerobot_multifile"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(lerobot_format, "DATA_FILE_MB", 1e-4)
        mp.setattr(lerobot_format, "VIDEO_FILE_MB", 1e-4)
        mp.setattr(lerobot_format, "CHUNKS_SIZE", 2)  # and two files per chunk directory
        export_lerobot(rich_data, out, task="reach", vcodec="h264")
    return out


def test_multifile_layout_round_trip(rich_data: Path, rich_multifile: Path, tmp_path: Path):
    files = sorted(str(p.relative_to(rich_multifile)) for p in rich_multifile.rglob("file-*"))
    assert files == [
        "data/chunk-000/file-000.parquet",
        "data/chunk-000/file-001.parquet",
        "data/chunk-001/file-000.parquet",
        "meta/episodes/chunk-000/file-000.parquet",
        *[
            f"videos/observation.images.{cam}/chunk-00{c}/file-00{f}.mp4"
            for cam in ("cam_a", "cam_g")
            for c, f in ((0, 0), (0, 1), (1, 0))
        ],
    ]
    import_lerobot(rich_multifile, tmp_path / "back")
    src, got = EpisodeDataset(rich_data), EpisodeDataset(tmp_path / "back")
    assert got.episode_lengths.tolist() == src.episode_lengths.tolist()
    np.testing.assert_array_equal(_all(got), _all(src))
    for k in src.spec.image_keys:
        assert _mae(_all(got, k), _all(src, k)) < MAE_ROUND_TRIP, k


@needs_lerobot
def test_lerobot_reads_rich_export(rich_data: Path, rich_multifile: Path, tmp_path: Path):
    got = _check_with_lerobot(rich_data, rich_multifile, tmp_path)
    assert {"observation.state", "extras.is_intervention", "extras.obs_age"} <= set(
        got["features"]
    )
    assert got["task"] == "reach"
    assert "observation.state" in got["stats_keys"]


@needs_lerobot
def test_import_dataset_recorded_by_lerobot(tmp_path: Path):
    native = tmp_path / "native"
    _lerobot("write", native)
    result = import_lerobot(native, tmp_path / "data")
    assert result["unmapped"] == [] and result["warnings"] == []
    ds = EpisodeDataset(tmp_path / "data")
    assert ds.spec.vector_keys == ["state"] and sorted(ds.spec.image_keys) == ["top", "wrist"]
    assert ds.spec.observations["state"].names == ("q0", "q1", "q2")
    assert ds.spec.action.names == ("vx", "wz")
    assert ds.spec.control_rate_hz == 15.0
    assert ds.episode_lengths.tolist() == [5, 8]
    ep = ds.episode(1)
    np.testing.assert_array_equal(ep.actions, np.stack([np.ones(8), np.arange(8)], 1))
    np.testing.assert_allclose(ep.timestamps, np.arange(8) / 15, atol=1e-6)
    assert ep.info.metadata["lerobot"]["tasks"] == ["task 1"]
    x = np.mgrid[0:48, 0:64][1]
    want = np.stack([128 + 90 * np.sin(x / 9 + 3 / 4 + c) for c in range(3)], -1).clip(0, 255)
    assert _mae(ep.observations["wrist"][3], want) < MAE_ROUND_TRIP
    # The PNG camera (an image feature in the Parquet files), re-encoded as JPEG.
    assert (
        _mae(
            ep.observations["top"],
            np.full((8, 24, 32, 3), 1) + 10 * np.arange(8)[:, None, None, None],
        )
        < 1.0
    )


def test_camera_round_trip_then_train(
    camera_data: Path, camera_export: Path, tmp_path: Path, capsys: pytest.CaptureFixture
):
    from il_core.train import train

    back = tmp_path / "back"
    rc, result, err = _cli(capsys, "import-lerobot", camera_export, "--out", back)
    assert rc == 0, err
    assert result["unmapped"] == [] and result["warnings"] == []
    src, got = EpisodeDataset(camera_data), EpisodeDataset(back)
    assert got.spec.to_dict() == src.spec.to_dict()
    assert got.episode_lengths.tolist() == src.episode_lengths.tolist()
    np.testing.assert_array_equal(_all(got), _all(src))
    assert _mae(_all(got, "image"), _all(src, "image")) < MAE_ROUND_TRIP
    for i in range(src.num_episodes):
        a, b = src.episode(i), got.episode(i)
        np.testing.assert_array_equal(a.timestamps, b.timestamps)
        assert a.info.success == b.info.success
        assert b.info.metadata["seed"] == a.info.metadata["seed"]
    summary = train([back], tmp_path / "run", FAST_TRAIN, progress=False)
    assert summary["steps"] == FAST_TRAIN["train"]["steps"]
    assert (tmp_path / "run" / "policy.pt").is_file()


def test_rich_round_trip(rich_data: Path, tmp_path: Path):
    le, back = tmp_path / "lerobot", tmp_path / "back"
    export_lerobot(rich_data, le)
    info = json.loads((le / "meta/info.json").read_text())
    assert info["features"]["observation.state"]["names"] == [
        "joints.a",
        "joints.b",
        "joints.c",
        "pose.0",
        "pose.1",
    ]
    assert info["features"]["observation.images.cam_g"]["shape"] == [32, 32, 3]
    assert info["features"]["observation.images.cam_a"]["info"]["video.codec"] == "av1"
    result = import_lerobot(le, back)
    assert result["unmapped"] == [] and result["warnings"] == []
    src, got = EpisodeDataset(rich_data), EpisodeDataset(back)
    assert got.spec.to_dict() == src.spec.to_dict()  # names, units, bounds, codecs, metadata
    for i in range(src.num_episodes):
        a, b = src.episode(i), got.episode(i)
        assert len(a) == len(b)
        np.testing.assert_array_equal(a.actions, b.actions)
        np.testing.assert_array_equal(a.timestamps, b.timestamps)
        for k in src.spec.vector_keys:
            np.testing.assert_array_equal(a.observations[k], b.observations[k])
        for k in src.spec.extras:
            np.testing.assert_array_equal(a.extras[k], b.extras[k])
        for k in src.spec.image_keys:
            assert b.observations[k].shape == a.observations[k].shape
            assert _mae(a.observations[k], b.observations[k]) < MAE_ROUND_TRIP, k
        assert a.info.success == b.info.success
        assert b.info.metadata["operator"] == a.info.metadata["operator"]
        assert b.info.metadata["lerobot"] == {"episode_index": i, "tasks": ["test"]}


def test_discrete_round_trip(tmp_path: Path):
    spec = DatasetSpec(
        {"s": FeatureSpec("vector", (4,))}, ActionSpec("discrete", num_classes=3), 20.0
    )
    with DatasetWriter(tmp_path / "d", spec, fsync=False) as w:
        for e in range(2):
            w.start_episode()
            for t in range(6 + e):
                w.add_step({"s": np.full(4, t, np.float32)}, (t + e) % 3, t / 20)
            w.end_episode()
    export_lerobot(tmp_path / "d", tmp_path / "le")
    info = json.loads((tmp_path / "le/meta/info.json").read_text())
    assert info["features"]["action"] == {"dtype": "int64", "shape": [1], "names": ["class"]}
    assert info["video_path"] is None
    import_lerobot(tmp_path / "le", tmp_path / "back")
    src, got = EpisodeDataset(tmp_path / "d"), EpisodeDataset(tmp_path / "back")
    assert got.spec.action == spec.action
    np.testing.assert_array_equal(_all(got), _all(src))
    # Without our meta/il_core.json the classes are inferred, and the import says so.
    (tmp_path / "le/meta/il_core.json").unlink()
    result = import_lerobot(tmp_path / "le", tmp_path / "back2")
    assert EpisodeDataset(tmp_path / "back2").spec.action.num_classes == 3
    assert [u["feature"] for u in result["unmapped"]] == ["action"]


# ---------------------------------------------------------------------------- bad input


@pytest.fixture
def exported(rich_data: Path, tmp_path: Path) -> Path:
    out = tmp_path / "le"
    export_lerobot(rich_data, out, vcodec="h264")
    return out


def _edit_info(root: Path, edit) -> None:
    path = root / "meta/info.json"
    info = json.loads(path.read_text())
    edit(info)
    path.write_text(json.dumps(info))


def _no_leftovers(parent: Path) -> None:
    assert not [p.name for p in parent.iterdir() if p.name.startswith(".")], "temp dir left"


def test_missing_info_json(exported: Path, tmp_path: Path, capsys: pytest.CaptureFixture):
    (exported / "meta/info.json").unlink()
    rc, _, err = _cli(capsys, "import-lerobot", exported, "--out", tmp_path / "out")
    assert rc == 2
    assert "meta/info.json" in err and "not a LeRobot dataset" in err
    assert not (tmp_path / "out").exists()


def test_wrong_codebase_version(exported: Path, tmp_path: Path):
    _edit_info(exported, lambda i: i.update(codebase_version="v2.1"))
    with pytest.raises(DatasetError, match=r"info.json.*codebase_version.*'v2.1'.*'v3.0'"):
        import_lerobot(exported, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_feature_shape_mismatch(exported: Path, tmp_path: Path):
    _edit_info(exported, lambda i: i["features"]["observation.state"].update(shape=[6]))
    with pytest.raises(DatasetError, match=r"file-000.parquet.*observation.state.*\[6\]"):
        import_lerobot(exported, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    _no_leftovers(tmp_path)


def test_unknown_features_are_reported(
    exported: Path, tmp_path: Path, capsys: pytest.CaptureFixture
):
    data = exported / "data/chunk-000/file-000.parquet"
    t = pq.read_table(data)
    n = len(t)
    t = t.append_column("next.reward", pa.array(np.linspace(0, 1, n), pa.float32()))
    t = t.append_column("language", pa.array(["go"] * n))
    pq.write_table(t, data)

    def add(info: dict) -> None:
        info["features"]["next.reward"] = {"dtype": "float32", "shape": [1], "names": None}
        info["features"]["language"] = {"dtype": "string", "shape": [1], "names": None}

    _edit_info(exported, add)
    rc, result, err = _cli(capsys, "import-lerobot", exported, "--out", tmp_path / "out")
    assert rc == 0, err
    reported = {u["feature"]: u["action"] for u in result["unmapped"]}
    assert reported["next.reward"] == "imported as extra 'next.reward'"
    assert reported["language"].startswith("dropped")
    assert any("language" in w for w in result["warnings"])
    ds = EpisodeDataset(tmp_path / "out")
    assert "next.reward" in ds.spec.extras
    np.testing.assert_allclose(
        np.concatenate([ds.episode(i).extras["next.reward"][:, 0] for i in range(3)]),
        np.linspace(0, 1, n).astype(np.float32),
    )


def test_existing_out_is_refused(
    rich_data: Path, exported: Path, tmp_path: Path, capsys: pytest.CaptureFixture
):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("")
    rc, _, err = _cli(capsys, "export-lerobot", rich_data, "--out", tmp_path / "full")
    assert rc == 2 and "not an empty directory" in err
    rc, _, err = _cli(capsys, "import-lerobot", exported, "--out", tmp_path / "full")
    assert rc == 2 and "not an empty directory" in err
    assert os.listdir(tmp_path / "full") == ["x"]


def test_failed_export_leaves_nothing(tmp_path: Path, capsys: pytest.CaptureFixture):
    spec = DatasetSpec(
        {"cam": FeatureSpec("image", (31, 32, 3))}, ActionSpec("continuous", dim=1), 10.0
    )
    with DatasetWriter(tmp_path / "d", spec, fsync=False) as w:
        w.start_episode()
        w.add_step({"cam": np.zeros((31, 32, 3), np.uint8)}, np.zeros(1), 0.0)
        w.end_episode()
    rc, _, err = _cli(capsys, "export-lerobot", tmp_path / "d", "--out", tmp_path / "le")
    assert rc == 2 and "'cam' is 31x32" in err and "even" in err
    assert not (tmp_path / "le").exists()
    _no_leftovers(tmp_path)
