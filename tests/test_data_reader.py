"""EpisodeDataset: window semantics, statistics, multi-root aggregation."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from il_core.constants import (
    ACTION,
    ACTION_MASK,
    EPISODE_INDEX,
    EXTRAS,
    FRAME_INDEX,
    OBS,
    OBS_MASK,
    TIMESTAMP,
)
from il_core.data import DatasetError, DatasetWriter, EpisodeDataset
from il_core.spec import ActionSpec, DatasetSpec, FeatureSpec


def tagged_spec(action_kind: str = "continuous", codec: str = "png") -> DatasetSpec:
    action = (
        ActionSpec("continuous", dim=1)
        if action_kind == "continuous"
        else ActionSpec("discrete", num_classes=500)
    )
    return DatasetSpec(
        observations={
            "s": FeatureSpec("vector", (2,)),
            "cam": FeatureSpec("image", (4, 6, 1), codec=codec),  # type: ignore[arg-type]
        },
        action=action,
        control_rate_hz=10.0,
        extras={"x": FeatureSpec("vector", (1,))},
    )


def tag(ep: int, t: int) -> int:
    return 100 * ep + t


def write_tagged(root: Path, lengths: list[int], spec: DatasetSpec, ep0: int = 0) -> None:
    """Write episodes in which every value identifies its step.

    obs ``[tag, -tag]``, action ``tag``, extras ``tag + 0.5``, image filled with ``tag % 256``
    (PNG, so exact).
    """
    with DatasetWriter(root, spec, flush_every=2) as w:
        for e, n in enumerate(lengths, start=ep0):
            w.start_episode({"e": e})
            for t in range(n):
                v = tag(e, t)
                action = np.array([v], np.float32) if spec.action.kind == "continuous" else v
                w.add_step(
                    {
                        "s": np.array([v, -v], np.float32),
                        "cam": np.full((4, 6, 1), v % 256, np.uint8),
                    },
                    action,
                    0.1 * t,
                    {k: np.array([v + 0.5]) for k in spec.extras},
                )
            w.end_episode()


@pytest.fixture(scope="module")
def tagged(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("tagged") / "ds"
    write_tagged(root, [3, 2, 1], tagged_spec())
    return root


@pytest.mark.parametrize("cache", [True, False])
def test_window_hand_computed(tagged: Path, cache: bool) -> None:
    ds = EpisodeDataset(tagged, cache_images=cache)
    # Global steps: ep0 t0..2 -> 0..2, ep1 t0..1 -> 3..4, ep2 t0 -> 5.
    w = ds.window(np.array([0, 2, 3, 4, 5]), history=3, horizon=4)
    s = w[OBS]["s"]
    assert s.shape == (5, 3, 2) and s.dtype == np.float32
    np.testing.assert_array_equal(
        s[:, :, 0],
        [[0, 0, 0], [0, 1, 2], [100, 100, 100], [100, 100, 101], [200, 200, 200]],
    )
    np.testing.assert_array_equal(s[:, :, 1], -s[:, :, 0])
    np.testing.assert_array_equal(
        w[OBS_MASK],
        [[0, 0, 1], [1, 1, 1], [0, 0, 1], [0, 1, 1], [0, 0, 1]],
    )
    assert w[OBS_MASK].dtype == np.bool_
    cam = w[OBS]["cam"]
    assert cam.shape == (5, 3, 4, 6, 1) and cam.dtype == np.uint8
    np.testing.assert_array_equal(cam[:, :, 0, 0, 0], s[:, :, 0].astype(int) % 256)
    np.testing.assert_array_equal(cam.min(axis=(2, 3, 4)), cam.max(axis=(2, 3, 4)))
    a = w[ACTION]
    assert a.shape == (5, 4, 1) and a.dtype == np.float32
    np.testing.assert_array_equal(
        a[:, :, 0],
        [[0, 1, 2, 2], [2, 2, 2, 2], [100, 101, 101, 101], [101, 101, 101, 101], [200] * 4],
    )
    np.testing.assert_array_equal(
        w[ACTION_MASK],
        [[1, 1, 1, 0], [1, 0, 0, 0], [1, 1, 0, 0], [1, 0, 0, 0], [1, 0, 0, 0]],
    )
    np.testing.assert_array_equal(w[EXTRAS]["x"][:, :, 0], a[:, :, 0] + 0.5)
    np.testing.assert_array_equal(w[EPISODE_INDEX], [0, 0, 1, 1, 2])
    np.testing.assert_array_equal(w[FRAME_INDEX], [0, 2, 0, 1, 0])
    np.testing.assert_allclose(w[TIMESTAMP][1], [0.0, 0.1, 0.2])
    np.testing.assert_allclose(w[TIMESTAMP][0], [0.0, 0.0, 0.0])


def test_window_defaults_and_large_k_h(tagged: Path) -> None:
    ds = EpisodeDataset(tagged)
    w = ds.window(np.arange(6))
    assert w[OBS]["s"].shape == (6, 1, 2) and w[ACTION].shape == (6, 1, 1)
    assert w[OBS_MASK].all() and w[ACTION_MASK].all()
    np.testing.assert_array_equal(w[ACTION][:, 0, 0], [0, 1, 2, 100, 101, 200])
    # k and h far larger than any episode: everything padded, masks count the real frames.
    w = ds.window(np.array([1, 4]), history=10, horizon=7)
    assert w[OBS_MASK].sum(axis=1).tolist() == [2, 2]
    assert w[ACTION_MASK].sum(axis=1).tolist() == [2, 1]
    np.testing.assert_array_equal(w[OBS]["s"][0, :, 0], [0] * 9 + [1])
    np.testing.assert_array_equal(w[ACTION][1, :, 0], [101] * 7)
    # Empty batch.
    w = ds.window(np.zeros(0, dtype=np.int64), history=2, horizon=3)
    assert w[OBS]["s"].shape == (0, 2, 2) and w[ACTION].shape == (0, 3, 1)


def test_window_discrete(tmp_path: Path) -> None:
    write_tagged(tmp_path / "d", [2, 3], tagged_spec("discrete"))
    ds = EpisodeDataset(tmp_path / "d")
    w = ds.window(np.array([1, 2]), history=2, horizon=3)
    assert w[ACTION].dtype == np.int64 and w[ACTION].shape == (2, 3)
    np.testing.assert_array_equal(w[ACTION], [[1, 1, 1], [100, 101, 102]])
    np.testing.assert_array_equal(w[ACTION_MASK], [[1, 0, 0], [1, 1, 1]])


def test_window_rejects_bad_arguments(tagged: Path) -> None:
    ds = EpisodeDataset(tagged)
    for bad in (np.array([6]), np.array([-1]), np.array([0.5]), np.array([[0]])):
        with pytest.raises(DatasetError):
            ds.window(bad)
    with pytest.raises(DatasetError, match="history"):
        ds.window(np.array([0]), history=0)


def test_step_indices_and_episode(tagged: Path) -> None:
    ds = EpisodeDataset(tagged)
    np.testing.assert_array_equal(ds.step_indices(), np.arange(6))
    np.testing.assert_array_equal(ds.step_indices([2, 0]), [5, 0, 1, 2])
    assert ds.step_indices([]).size == 0
    with pytest.raises(DatasetError):
        ds.step_indices([3])
    ep = ds.episode(-1)
    assert ep.info.index == 2 and ep.info.metadata == {"e": 2}
    np.testing.assert_array_equal(ep.observations["s"], [[200, -200]])
    ep.observations["s"][:] = 0  # a copy: the dataset is unchanged
    assert ds.window(np.array([5]))[OBS]["s"][0, 0, 0] == 200
    with pytest.raises(IndexError):
        ds.episode(3)


def test_stats_known_data(tmp_path: Path) -> None:
    spec = DatasetSpec(
        observations={
            "s": FeatureSpec("vector", (2,)),
            "rgb": FeatureSpec("image", (3, 3, 3), codec="png"),
        },
        action=ActionSpec("continuous", dim=1),
        control_rate_hz=10.0,
    )
    state = np.array([[1, 2], [3, 4], [5, 6], [7, 20]], np.float32)
    with DatasetWriter(tmp_path / "ds", spec) as w:
        for e in range(2):
            w.start_episode()
            for t in range(2):
                i = 2 * e + t
                img = np.empty((3, 3, 3), np.uint8)
                img[...] = (255, 0, 51) if i % 2 == 0 else (255, 255, 51)
                w.add_step({"s": state[i], "rgb": img}, np.array([float(i)]), float(t))
            w.end_episode()
    ds = EpisodeDataset(tmp_path / "ds")
    st = ds.stats()
    np.testing.assert_allclose(st["obs.s"]["mean"], [4, 8])
    np.testing.assert_allclose(st["obs.s"]["std"], state.std(axis=0), rtol=1e-6)
    np.testing.assert_array_equal(st["obs.s"]["min"], [1, 2])
    np.testing.assert_array_equal(st["obs.s"]["max"], [7, 20])
    assert st["obs.s"]["mean"].dtype == np.float32
    np.testing.assert_allclose(st["action"]["mean"], [1.5])
    np.testing.assert_allclose(st["action"]["std"], [np.std([0, 1, 2, 3])], rtol=1e-6)
    np.testing.assert_allclose(st["obs.rgb"]["mean"], [1.0, 0.5, 0.2], atol=1e-6)
    np.testing.assert_allclose(st["obs.rgb"]["std"], [0.0, 0.5, 0.0], atol=1e-6)
    sub = ds.stats(np.array([0, 2]))
    np.testing.assert_allclose(sub["obs.s"]["mean"], [3, 4])
    np.testing.assert_allclose(sub["obs.rgb"]["mean"], [1.0, 0.0, 0.2], atol=1e-6)
    with pytest.raises(DatasetError, match="zero steps"):
        ds.stats(np.zeros(0, dtype=np.int64))


def test_stats_discrete_counts(tmp_path: Path) -> None:
    write_tagged(tmp_path / "d", [3, 2], tagged_spec("discrete"))
    st = EpisodeDataset(tmp_path / "d").stats()
    counts = st["action"]["counts"]
    assert counts.shape == (500,) and counts.dtype == np.int64 and counts.sum() == 5
    assert counts[[0, 1, 2, 100, 101]].tolist() == [1, 1, 1, 1, 1]
    np.testing.assert_allclose(st["extras.x"]["mean"], [np.mean([0, 1, 2, 100, 101]) + 0.5])


def test_multi_root_aggregation(tmp_path: Path) -> None:
    write_tagged(tmp_path / "r0", [2, 3], tagged_spec(codec="png"))
    # Another DAgger round, stored with a different codec: still compatible.
    write_tagged(tmp_path / "r1", [1], tagged_spec(codec="jpeg"), ep0=7)
    ds = EpisodeDataset([tmp_path / "r0", str(tmp_path / "r1")])
    assert ds.num_episodes == 3 and len(ds) == 6
    assert [e.index for e in ds.episodes] == [0, 1, 2]
    assert ds.episodes[2].path == tmp_path / "r1" / "episodes" / "episode_000000"
    assert ds.episodes[2].metadata == {"e": 7}
    w = ds.window(np.array([4, 5]), history=2, horizon=2)
    np.testing.assert_array_equal(w[OBS]["s"][:, :, 0], [[101, 102], [700, 700]])
    np.testing.assert_array_equal(w[ACTION][:, :, 0], [[102, 102], [700, 700]])
    np.testing.assert_array_equal(w[EPISODE_INDEX], [1, 2])


def test_multi_root_spec_mismatch(tmp_path: Path) -> None:
    write_tagged(tmp_path / "r0", [2], tagged_spec())
    write_tagged(tmp_path / "r1", [2], tagged_spec("discrete"))
    with pytest.raises(DatasetError) as exc:
        EpisodeDataset([tmp_path / "r0", tmp_path / "r1"])
    msg = str(exc.value)
    assert str(tmp_path / "r0") in msg and str(tmp_path / "r1") in msg and "action" in msg
    d = tagged_spec().to_dict()
    d["extras"] = {"y": d["extras"]["x"]}
    write_tagged(tmp_path / "r2", [2], DatasetSpec.from_dict(d))
    with pytest.raises(DatasetError, match="extra 'x'"):
        EpisodeDataset([tmp_path / "r0", tmp_path / "r2"])
    with pytest.raises(DatasetError):
        EpisodeDataset([])


def test_in_progress_ignored_with_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    spec = tagged_spec()
    write_tagged(tmp_path / "ds", [2], spec)
    w = DatasetWriter(tmp_path / "ds", flush_every=1)
    w.start_episode()
    w.add_step(
        {"s": np.zeros(2), "cam": np.zeros((4, 6, 1), np.uint8)},
        np.zeros(1),
        0.0,
        {"x": np.zeros(1)},
    )
    with caplog.at_level(logging.WARNING, logger="il_core.data"):
        ds = EpisodeDataset(tmp_path / "ds")
    assert ds.num_episodes == 1
    assert "in-progress" in caplog.text and ".inprogress-" in caplog.text
    w.close()


def test_empty_dataset(tmp_path: Path) -> None:
    DatasetWriter(tmp_path / "ds", tagged_spec()).close()
    ds = EpisodeDataset(tmp_path / "ds")
    assert ds.num_episodes == 0 and len(ds) == 0
    assert ds.episode_starts.shape == (0,)
    with pytest.raises(DatasetError):
        ds.window(np.array([0]))


def test_auto_image_cache_respects_budget(tagged: Path) -> None:
    frame_bytes = 4 * 6 * 1
    assert EpisodeDataset(tagged).images_cached  # 6 small frames fit the default 2 GiB
    assert EpisodeDataset(tagged, cache_budget_bytes=6 * frame_bytes).images_cached
    small = EpisodeDataset(tagged, cache_budget_bytes=6 * frame_bytes - 1)
    assert not small.images_cached
    big = EpisodeDataset(tagged, cache_images=True, cache_budget_bytes=0)
    idx = np.array([0, 4, 5])
    np.testing.assert_array_equal(
        small.window(idx, history=2)[OBS]["cam"], big.window(idx, history=2)[OBS]["cam"]
    )
