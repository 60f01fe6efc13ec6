"""DatasetWriter: round trips through EpisodeDataset, episode life cycle, dataset creation."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from il_core.data import DatasetError, DatasetWriter, EpisodeDataset
from il_core.data import format as fmt
from il_core.spec import ActionSpec, DatasetSpec, FeatureSpec

H, W = 24, 32


def make_spec(action_kind: str = "continuous") -> DatasetSpec:
    action = (
        ActionSpec("continuous", dim=2, low=(-1.0, -1.0), high=(1.0, 1.0))
        if action_kind == "continuous"
        else ActionSpec("discrete", num_classes=3)
    )
    return DatasetSpec(
        observations={
            "state": FeatureSpec("vector", (4,)),
            "front": FeatureSpec("image", (H, W, 3), codec="jpeg", quality=95),
            "goal": FeatureSpec("vector", (2,)),
            "wrist": FeatureSpec("image", (16, 20, 3), codec="png"),
        },
        action=action,
        control_rate_hz=20.0,
        extras={"is_intervention": FeatureSpec("vector", (1,))},
        metadata={"env": "test"},
    )


def smooth_image(rng: np.random.Generator) -> np.ndarray:
    """A smooth RGB gradient (JPEG reproduces it closely, unlike noise)."""
    y, x = np.mgrid[0:H, 0:W]
    base = rng.uniform(0, 120, size=3)
    img = base + np.stack([4 * x, 5 * y, 2 * (x + y)], axis=-1)
    return np.clip(img, 0, 255).astype(np.uint8)


def make_episode(spec: DatasetSpec, seed: int, length: int) -> dict:
    rng = np.random.default_rng(seed)
    # Jittered timestamps with one gap, so median and max intervals differ.
    dt = 0.05 + rng.uniform(-0.005, 0.005, size=length - 1)
    if length > 3:
        dt[length // 2] = 0.3
    ts = 1000.0 + seed + np.concatenate([[0.0], np.cumsum(dt)])
    if spec.action.kind == "continuous":
        actions = rng.uniform(-1, 1, size=(length, 2)).astype(np.float32)
    else:
        actions = rng.integers(0, 3, size=length)
    return {
        "state": rng.normal(size=(length, 4)).astype(np.float32),
        "goal": rng.normal(size=(length, 2)),  # float64 input: stored as float32
        "front": np.stack([smooth_image(rng) for _ in range(length)]),
        "wrist": rng.integers(0, 256, size=(length, 16, 20, 3), dtype=np.uint8),
        "actions": actions,
        "extras": (rng.random((length, 1)) < 0.3).astype(np.float32),
        "timestamps": ts,
    }


def write_episode(w: DatasetWriter, data: dict, **end_kwargs):
    for t in range(len(data["timestamps"])):
        obs = {k: data[k][t] for k in ("state", "goal", "front", "wrist")}
        w.add_step(
            obs, data["actions"][t], data["timestamps"][t], {"is_intervention": data["extras"][t]}
        )
    return w.end_episode(**end_kwargs)


@pytest.mark.parametrize("action_kind", ["continuous", "discrete"])
def test_round_trip(tmp_path: Path, action_kind: str) -> None:
    spec = make_spec(action_kind)
    lengths = [7, 1, 12]
    successes = [True, None, False]
    episodes = [make_episode(spec, seed, n) for seed, n in enumerate(lengths)]
    with DatasetWriter(tmp_path / "ds", spec, flush_every=4) as w:
        infos = []
        for i, data in enumerate(episodes):
            w.start_episode({"seed": i, "operator": "alice"})
            infos.append(write_episode(w, data, success=successes[i], metadata={"note": f"ep{i}"}))
    assert [i.index for i in infos] == [0, 1, 2]
    assert [i.path.name for i in infos] == ["episode_000000", "episode_000001", "episode_000002"]

    for cache in (True, False):
        ds = EpisodeDataset(tmp_path / "ds", cache_images=cache)
        assert ds.images_cached is cache
        assert ds.spec == spec
        assert ds.num_episodes == 3 and len(ds) == ds.num_steps == sum(lengths)
        np.testing.assert_array_equal(ds.episode_starts, [0, 7, 8])
        np.testing.assert_array_equal(ds.episode_lengths, lengths)
        for i, data in enumerate(episodes):
            ep = ds.episode(i)
            info = ep.info
            assert info == ds.episodes[i]
            assert info.length == lengths[i] == len(ep)
            assert info.success is successes[i]
            assert info.recovered is False
            assert info.metadata == {"seed": i, "operator": "alice", "note": f"ep{i}"}
            ts = data["timestamps"]
            np.testing.assert_array_equal(ep.timestamps, ts)
            assert info.start_time == ts[0]
            assert info.duration_s == pytest.approx(ts[-1] - ts[0])
            if lengths[i] > 1:
                assert info.measured_rate_hz == pytest.approx((len(ts) - 1) / (ts[-1] - ts[0]))
                assert info.dt_median_s == pytest.approx(np.median(np.diff(ts)))
                assert info.dt_max_s == pytest.approx(np.diff(ts).max())
            else:
                assert info.measured_rate_hz is None and info.dt_max_s is None
            np.testing.assert_array_equal(ep.observations["state"], data["state"])
            np.testing.assert_array_equal(ep.observations["goal"], data["goal"].astype(np.float32))
            assert ep.observations["goal"].dtype == np.float32
            # PNG is lossless: bit-exact. JPEG q95 of a smooth image: close.
            np.testing.assert_array_equal(ep.observations["wrist"], data["wrist"])
            front = ep.observations["front"]
            assert front.shape == data["front"].shape and front.dtype == np.uint8
            err = np.abs(front.astype(int) - data["front"].astype(int))
            assert err.mean() < 2.0 and err.max() < 40
            # Channel order survives (OpenCV is BGR inside): per-channel means match.
            np.testing.assert_allclose(
                front.mean(axis=(0, 1, 2)), data["front"].mean(axis=(0, 1, 2)), atol=1.5
            )
            np.testing.assert_array_equal(ep.actions, data["actions"])
            assert ep.actions.dtype == (np.float32 if action_kind == "continuous" else np.int64)
            np.testing.assert_array_equal(ep.extras["is_intervention"], data["extras"])


def test_files_and_json_layout(tmp_path: Path) -> None:
    spec = make_spec()
    root = tmp_path / "ds"
    with DatasetWriter(root, spec, flush_every=3) as w:
        w.start_episode()
        info = write_episode(w, make_episode(spec, 0, 5), success=True)
    meta = json.loads((root / "meta.json").read_text())
    assert meta["format"] == "il_core.dataset" and meta["format_version"] == 1
    assert set(meta) == {"format", "format_version", "il_core_version", "created", "spec"}
    assert DatasetSpec.from_dict(meta["spec"]) == spec
    names = sorted(p.name for p in info.path.iterdir())
    # Chunks, lock and start file are gone once committed.
    assert names == ["episode.json", "images.front.npz", "images.wrist.npz", "steps.npz"]
    ej = json.loads((info.path / "episode.json").read_text())
    assert ej["length"] == 5 and ej["success"] is True and ej["recovered"] is False
    assert ej["files"] == {n: (info.path / n).stat().st_size for n in names if n != "episode.json"}
    with np.load(info.path / "steps.npz") as z:
        assert sorted(z.files) == [
            "action",
            "extras.is_intervention",
            "obs.goal",
            "obs.state",
            "timestamp",
        ]
        assert z["timestamp"].dtype == np.float64 and z["action"].shape == (5, 2)
    with np.load(info.path / "images.front.npz") as z:
        assert z["offsets"].shape == (6,) and z["offsets"][-1] == z["data"].size
    assert not any(p.name.startswith(".") for p in (root / "episodes").iterdir())


def test_reopen_appends_and_checks_spec(tmp_path: Path) -> None:
    spec = make_spec()
    root = tmp_path / "ds"
    with DatasetWriter(root, spec) as w:
        w.start_episode()
        write_episode(w, make_episode(spec, 0, 3))
    # Reopen without a spec, and with an equal spec that only changes codec settings.
    d = spec.to_dict()
    d["observations"]["front"]["codec"] = "png"
    other_codec = DatasetSpec.from_dict(d)
    assert other_codec != spec
    for s in (None, other_codec):
        with DatasetWriter(root, s) as w:
            assert w.spec == spec
            w.start_episode()
            info = write_episode(w, make_episode(spec, 1, 2))
    assert info.index == 2
    bad = make_spec("discrete")
    with pytest.raises(DatasetError, match="action") as exc:
        DatasetWriter(root, bad)
    assert "meta.json" in str(exc.value)
    d = spec.to_dict()
    d["extras"] = {}
    with pytest.raises(DatasetError, match="is_intervention"):
        DatasetWriter(root, DatasetSpec.from_dict(d))
    assert EpisodeDataset(root).num_episodes == 3


def test_create_requires_spec_and_refuses_foreign_dir(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="pass a spec"):
        DatasetWriter(tmp_path / "nothing")
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("hello")
    with pytest.raises(DatasetError, match="not empty"):
        DatasetWriter(foreign, make_spec())
    assert not (foreign / "meta.json").exists()
    assert issubclass(DatasetError, ValueError)


def test_two_creators_do_not_clobber(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    root.mkdir()
    assert fmt.create_meta(root, make_spec()) is True
    first = (root / "meta.json").read_bytes()
    assert fmt.create_meta(root, make_spec("discrete")) is False
    assert (root / "meta.json").read_bytes() == first
    assert [p.name for p in root.iterdir()] == ["meta.json"]  # no temporaries left


def test_episode_life_cycle_errors(tmp_path: Path) -> None:
    spec = make_spec()
    w = DatasetWriter(tmp_path / "ds", spec)
    data = make_episode(spec, 0, 2)
    obs = {k: data[k][0] for k in ("state", "goal", "front", "wrist")}
    extras = {"is_intervention": data["extras"][0]}
    with pytest.raises(DatasetError, match="start_episode"):
        w.add_step(obs, data["actions"][0], 0.0, extras)
    w.start_episode()
    with pytest.raises(DatasetError, match="already in progress"):
        w.start_episode()
    with pytest.raises(DatasetError, match="no steps"):
        w.end_episode()
    assert w.episode_in_progress  # still open after the refused commit
    w.add_step(obs, data["actions"][0], 0.0, extras)
    with pytest.raises(DatasetError, match="success"):
        w.end_episode(success="yes")  # type: ignore[arg-type]
    with pytest.raises(DatasetError, match="JSON"):
        w.end_episode(metadata={"array": np.zeros(2)})
    assert w.num_steps_in_episode == 1
    info = w.end_episode(success=np.bool_(True))
    assert info.success is True and info.length == 1
    with pytest.raises(DatasetError, match="JSON"):
        w.start_episode({"bad": object()})
    assert not w.episode_in_progress
    w.close()
    with pytest.raises(DatasetError, match="closed"):
        w.start_episode()
    w.close()  # idempotent


def test_discard_and_close_policies(tmp_path: Path) -> None:
    spec = make_spec()
    root = tmp_path / "ds"
    data = make_episode(spec, 0, 6)

    def steps(w: DatasetWriter, n: int) -> None:
        for t in range(n):
            obs = {k: data[k][t] for k in ("state", "goal", "front", "wrist")}
            w.add_step(obs, data["actions"][t], t, {"is_intervention": data["extras"][t]})

    with DatasetWriter(root, spec, flush_every=2) as w:
        w.start_episode()
        steps(w, 5)
        inprog = w.in_progress_dir
        assert inprog is not None and inprog.name.startswith(".inprogress-")
        assert len(list((inprog / "chunks").glob("chunk_*.npz"))) == 2
        w.discard_episode()
        assert not inprog.exists() and not w.episode_in_progress
        w.discard_episode()  # no-op
        w.start_episode()
        steps(w, 3)  # discarded by close (commit_on_close=False)
    assert EpisodeDataset(root).num_episodes == 0
    with pytest.raises(RuntimeError):
        with DatasetWriter(root, commit_on_close=True) as w:
            w.start_episode({"k": 1})
            steps(w, 4)
            raise RuntimeError("node shutdown")
    ds = EpisodeDataset(root)
    assert ds.num_episodes == 1
    assert ds.episodes[0].length == 4 and ds.episodes[0].success is None
    assert ds.episodes[0].metadata == {"k": 1}
    assert sorted(p.name for p in (root / "episodes").iterdir()) == ["episode_000000"]


def test_commit_retries_on_name_clash(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = make_spec()
    root = tmp_path / "ds"
    with DatasetWriter(root, spec) as a, DatasetWriter(root) as b:
        a.start_episode({"w": "a"})
        b.start_episode({"w": "b"})
        write_episode(a, make_episode(spec, 0, 2))
        # b computes its number from a stale listing (another process committed meanwhile):
        # the rename onto a's non-empty episode_000000 fails and b moves on.
        monkeypatch.setattr(fmt, "list_episode_numbers", lambda _d: [])
        info_b = write_episode(b, make_episode(spec, 1, 3))
    assert info_b.index == 1
    monkeypatch.undo()
    ds = EpisodeDataset(root)
    assert [e.metadata["w"] for e in ds.episodes] == ["a", "b"]
    assert list(ds.episode_lengths) == [2, 3]


def test_argument_validation(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="flush_every"):
        DatasetWriter(tmp_path / "a", make_spec(), flush_every=0)
    with pytest.raises(DatasetError, match="on_incomplete"):
        DatasetWriter(tmp_path / "b", make_spec(), on_incomplete="maybe")  # type: ignore[arg-type]
