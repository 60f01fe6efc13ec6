"""Bad data raises DatasetError naming episode, file and key, and damages nothing stored.

Covers corrupt or malformed files on disk and steps rejected by the writer.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from il_core.data import DatasetError, DatasetWriter, EpisodeDataset
from il_core.data._fs import npz_bytes
from il_core.spec import ActionSpec, DatasetSpec, FeatureSpec


def make_spec(action: str = "continuous") -> DatasetSpec:
    return DatasetSpec(
        observations={
            "state": FeatureSpec("vector", (3,)),
            "front": FeatureSpec("image", (8, 8, 3), codec="jpeg"),
        },
        action=(
            ActionSpec("continuous", dim=2)
            if action == "continuous"
            else ActionSpec("discrete", num_classes=4)
        ),
        control_rate_hz=10.0,
        extras={"flag": FeatureSpec("vector", (1,))},
    )


def step(t: int) -> tuple[dict, np.ndarray, dict]:
    obs = {
        "state": np.array([t, t + 0.5, -t], np.float32),
        "front": np.full((8, 8, 3), (10 * t) % 256, np.uint8),
    }
    return obs, np.array([t, -t], np.float32), {"flag": np.array([t % 2], np.float32)}


def build(root: Path, n_episodes: int = 3, length: int = 4) -> None:
    with DatasetWriter(root, make_spec()) as w:
        for _ in range(n_episodes):
            w.start_episode()
            for t in range(length):
                obs, a, ex = step(t)
                w.add_step(obs, a, 0.1 * t, ex)
            w.end_episode(success=True)


@pytest.fixture
def ds_root(tmp_path: Path) -> Path:
    root = tmp_path / "ds"
    build(root)
    return root


def ep_dir(root: Path, i: int) -> Path:
    return root / "episodes" / f"episode_{i:06d}"


def assert_others_intact(root: Path, bad: int) -> None:
    """The damage stays local: skipping (or deleting) the bad episode loads the rest."""
    ds = EpisodeDataset(root, on_error="skip")
    assert ds.num_episodes == 2
    assert bad not in [int(e.path.name.split("_")[1]) for e in ds.episodes]
    for i in range(2):
        np.testing.assert_array_equal(ds.episode(i).observations["state"][3], [3, 3.5, -3])
    shutil.rmtree(ep_dir(root, bad))
    assert EpisodeDataset(root).num_episodes == 2


def load_error(root: Path, **kwargs) -> str:
    with pytest.raises(DatasetError) as exc:
        EpisodeDataset(root, **kwargs)
    return str(exc.value)


def rewrite_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Replace a data file and update episode.json's size record, as a buggy tool would."""
    blob = npz_bytes(arrays)
    path.write_bytes(blob)
    ej_path = path.parent / "episode.json"
    ej = json.loads(ej_path.read_text())
    ej["files"][path.name] = len(blob)
    ej_path.write_text(json.dumps(ej))


def test_truncated_steps(ds_root: Path) -> None:
    path = ep_dir(ds_root, 1) / "steps.npz"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    msg = load_error(ds_root)
    assert "episode_000001" in msg and "steps.npz" in msg and "truncated" in msg
    # Same truncation with a consistent size record: the archive itself is found broken.
    rewrite_npz(path, {})
    path.write_bytes(data[: len(data) // 2])
    ej = json.loads((path.parent / "episode.json").read_text())
    ej["files"]["steps.npz"] = len(data) // 2
    (path.parent / "episode.json").write_text(json.dumps(ej))
    msg = load_error(ds_root)
    assert "episode_000001" in msg and "steps.npz" in msg
    assert_others_intact(ds_root, 1)


def test_garbage_in_images_file(ds_root: Path) -> None:
    path = ep_dir(ds_root, 2) / "images.front.npz"
    data = bytearray(path.read_bytes())
    mid = len(data) // 2
    data[mid : mid + 32] = bytes(range(7, 7 + 32))  # same size: only the zip CRC notices
    path.write_bytes(bytes(data))
    msg = load_error(ds_root)
    assert "episode_000002" in msg and "images.front.npz" in msg
    assert_others_intact(ds_root, 2)


@pytest.mark.parametrize("cache", [True, False])
def test_undecodable_frame(ds_root: Path, cache: bool) -> None:
    # A well-formed archive whose frame 2 is not an image.
    path = ep_dir(ds_root, 0) / "images.front.npz"
    with np.load(path) as z:
        data, offsets = z["data"].copy(), z["offsets"].copy()
    data[offsets[2] : offsets[3]] = 0x42
    rewrite_npz(path, {"data": data, "offsets": offsets})
    if cache:
        msg = load_error(ds_root, cache_images=True)
    else:
        ds = EpisodeDataset(ds_root, cache_images=False)  # encoded frames load fine
        ds.window(np.array([1, 3]))  # frames 1 and 3 still decode
        with pytest.raises(DatasetError) as exc:
            ds.window(np.array([1, 2]))
        msg = str(exc.value)
    assert "episode_000000" in msg and "images.front.npz" in msg
    assert "'front'" in msg and "frame 2" in msg
    assert_others_intact(ds_root, 0)


def test_bad_image_index(ds_root: Path) -> None:
    path = ep_dir(ds_root, 1) / "images.front.npz"
    with np.load(path) as z:
        data, offsets = z["data"], z["offsets"]
    rewrite_npz(path, {"data": data, "offsets": offsets[:-1]})
    msg = load_error(ds_root)
    assert "episode_000001" in msg and "images.front.npz" in msg and "offsets" in msg


def test_missing_episode_json(ds_root: Path) -> None:
    (ep_dir(ds_root, 1) / "episode.json").unlink()
    msg = load_error(ds_root)
    assert "episode_000001" in msg and "episode.json" in msg and "missing" in msg
    assert_others_intact(ds_root, 1)


def test_malformed_episode_json(ds_root: Path) -> None:
    path = ep_dir(ds_root, 0) / "episode.json"
    good = json.loads(path.read_text())
    for bad, key in (
        ({**good, "length": "4"}, "length"),
        ({**good, "success": 1}, "success"),
        ({**good, "surprise": 1}, "surprise"),
        ({k: v for k, v in good.items() if k != "files"}, "files"),
        ({**good, "length": 5}, "timestamp"),  # disagrees with steps.npz
    ):
        path.write_text(json.dumps(bad))
        msg = load_error(ds_root)
        assert "episode_000000" in msg and f"'{key}'" in msg, msg
    path.write_text("{")
    assert "not valid JSON" in load_error(ds_root)


@pytest.mark.parametrize(
    ("change", "key", "what"),
    [
        ("drop", "obs.state", "missing"),
        ("extra", "obs.unknown", "unknown"),
        ("dtype", "obs.state", "dtype"),
        ("shape", "extras.flag", "shape"),
        ("nan", "obs.state", "NaN"),
        ("time", "timestamp", "increasing"),
    ],
)
def test_malformed_steps_columns(ds_root: Path, change: str, key: str, what: str) -> None:
    path = ep_dir(ds_root, 2) / "steps.npz"
    with np.load(path) as z:
        cols = {k: z[k].copy() for k in z.files}
    if change == "drop":
        del cols[key]
    elif change == "extra":
        cols[key] = np.zeros((4, 3), np.float32)
    elif change == "dtype":
        cols[key] = cols[key].astype(np.float64)
    elif change == "shape":
        cols[key] = cols[key][:, 0]
    elif change == "nan":
        cols[key][2, 1] = np.nan
    else:
        cols[key][3] = cols[key][1]
    rewrite_npz(path, cols)
    msg = load_error(ds_root)
    assert "episode_000002" in msg and "steps.npz" in msg and f"'{key}'" in msg and what in msg
    assert_others_intact(ds_root, 2)


@pytest.mark.parametrize(
    ("content", "what"),
    [
        (b"not json at all", "not valid JSON"),
        (b"[1, 2]", "JSON object"),
        ("unknown", "unknown keys"),
        ("format", "format"),
        ("version", "newer"),
        ("spec", "spec"),
        (None, "missing"),
    ],
)
def test_bad_meta_json(ds_root: Path, content: object, what: str) -> None:
    path = ds_root / "meta.json"
    meta = json.loads(path.read_text())
    if content is None:
        path.unlink()
    elif isinstance(content, bytes):
        path.write_bytes(content)
    else:
        if content == "unknown":
            meta["colour"] = "blue"
        elif content == "format":
            meta["format"] = "lerobot"
        elif content == "version":
            meta["format_version"] = 99
        else:
            meta["spec"]["observations"]["state"]["shape"] = [3, 3]
        path.write_text(json.dumps(meta))
    msg = load_error(ds_root)
    assert "meta.json" in msg and what in msg, msg
    with pytest.raises(DatasetError):
        DatasetWriter(ds_root)  # the writer refuses it too, and writes nothing
    assert sorted(p.name for p in (ds_root / "episodes").iterdir()) == [
        f"episode_{i:06d}" for i in range(3)
    ]


def _bad_steps() -> list[tuple[str, dict, object, object, object, str]]:
    """(name, obs, action, timestamp, extras, key named in the error), at step 2."""
    obs, a, ex = step(2)
    return [
        ("shape", {**obs, "state": np.zeros(4, np.float32)}, a, 1.0, ex, "state"),
        ("image dtype", {**obs, "front": obs["front"].astype(np.float32)}, a, 1.0, ex, "front"),
        ("image shape", {**obs, "front": obs["front"][:, :, :1]}, a, 1.0, ex, "front"),
        ("not array", {**obs, "state": [1.0, 2.0, 3.0]}, a, 1.0, ex, "state"),
        ("string dtype", {**obs, "state": np.array(["a", "b", "c"])}, a, 1.0, ex, "state"),
        ("nan", {**obs, "state": np.array([0, np.nan, 0])}, a, 1.0, ex, "state"),
        ("overflow", {**obs, "state": np.array([1e300, 0, 0])}, a, 1.0, ex, "state"),
        ("unknown key", {**obs, "depth": np.zeros(3)}, a, 1.0, ex, "depth"),
        ("missing key", {"front": obs["front"]}, a, 1.0, ex, "state"),
        ("action shape", obs, np.zeros(3), 1.0, ex, "action"),
        ("action nan", obs, np.array([np.nan, 0.0]), 1.0, ex, "action"),
        ("extra nan", obs, a, 1.0, {"flag": np.array([np.inf])}, "flag"),
        ("extra unknown", obs, a, 1.0, {**ex, "other": np.zeros(1)}, "other"),
        ("extra missing", obs, a, 1.0, None, "flag"),
        ("time equal", obs, a, 0.1, ex, "timestamp"),
        ("time back", obs, a, 0.05, ex, "timestamp"),
        ("time nan", obs, a, float("nan"), ex, "timestamp"),
        ("time type", obs, a, "1.0", ex, "timestamp"),
    ]


def test_rejected_steps_leave_episode_usable(ds_root: Path) -> None:
    with DatasetWriter(ds_root, flush_every=2) as w:
        w.start_episode({"kind": "noisy"})
        for t in range(2):
            obs, a, ex = step(t)
            w.add_step(obs, a, 0.1 * t, ex)
        inprog = w.in_progress_dir
        for name, obs, a, ts, ex, key in _bad_steps():
            with pytest.raises(DatasetError) as exc:
                w.add_step(obs, a, ts, ex)  # type: ignore[arg-type]
            msg = str(exc.value)
            assert inprog.name in msg and "step 2" in msg and f"'{key}'" in msg, (name, msg)
            assert exc.value.key == key
            assert w.num_steps_in_episode == 2, name
        for t in range(2, 5):
            obs, a, ex = step(t)
            w.add_step(obs, a, 0.1 * t, ex)
        info = w.end_episode(success=False)
    assert info.length == 5 and info.index == 3
    ds = EpisodeDataset(ds_root)
    assert ds.num_episodes == 4
    ep = ds.episode(3)
    np.testing.assert_array_equal(ep.observations["state"][:, 0], [0, 1, 2, 3, 4])
    np.testing.assert_allclose(ep.timestamps, [0, 0.1, 0.2, 0.3, 0.4])
    for i in range(3):
        np.testing.assert_array_equal(ds.episode(i).observations["state"][:, 0], [0, 1, 2, 3])


def test_rejected_discrete_actions(tmp_path: Path) -> None:
    spec = make_spec("discrete")
    with DatasetWriter(tmp_path / "d", spec) as w:
        w.start_episode()
        obs, _, ex = step(0)
        for bad in (4, -1, 1.5, np.array([1, 2]), "2"):
            with pytest.raises(DatasetError, match="'action'"):
                w.add_step(obs, bad, 0.0, ex)
        w.add_step(obs, np.int32(3), 0.0, ex)
        w.add_step(obs, np.array([1]), 0.1, ex)
        w.end_episode()
    ds = EpisodeDataset(tmp_path / "d")
    np.testing.assert_array_equal(ds.episode(0).actions, [3, 1])
