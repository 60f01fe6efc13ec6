"""Camera storage per codec (jpeg, png, h264, av1) and the reader that leaves frames on disk.

Video cameras store one packet per frame, every flushed chunk an independent segment that
starts with a keyframe; a window decodes forward from the keyframe before its first frame.
"""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import cv2
import numpy as np
import pytest

from il_core.cli import dataset_summary
from il_core.constants import OBS
from il_core.data import DatasetError, DatasetWriter, EpisodeDataset
from il_core.data import reader as reader_mod
from il_core.data._fs import npz_bytes
from il_core.spec import ActionSpec, DatasetSpec, FeatureSpec, SpecError

H, W = 24, 32
CODECS = ["jpeg", "png", "h264", "av1"]
# Mean absolute error per codec on the smooth moving scene below (png is exact).
TOLERANCE = {"jpeg": 3.0, "png": 0.0, "h264": 6.0, "av1": 6.0}
LENGTHS = [23, 9, 1]  # flush_every 5: several segments, a short tail, a one-frame episode


def scene(ep: int, t: int, shape: tuple[int, int, int] = (H, W, 3)) -> np.ndarray:
    """A textured scene moving one pixel per step, distinct per episode, with little noise."""
    h, w, c = shape
    rng = np.random.default_rng(ep)
    # Texture in brightness, colour in broad strokes: like camera frames, whose chroma
    # varies far less than their luma (4:2:0 video and JPEG both subsample it).
    luma = cv2.resize(
        rng.integers(20, 200, size=(8, 24), dtype=np.uint8), (w + 64, h), cv2.INTER_CUBIC
    )
    tint = cv2.resize(rng.integers(0, 50, size=(2, 2, 3), dtype=np.uint8), (w + 64, h))
    texture = (luma[:, :, None].astype(np.int16) + tint).clip(0, 255).astype(np.uint8)
    frame = np.ascontiguousarray(texture[:, t % 64 : t % 64 + w])
    if c == 1:
        frame = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)[:, :, None]
    return frame


def spec_for(codec: str, shape: tuple[int, int, int] = (H, W, 3), gop: int = 4) -> DatasetSpec:
    return DatasetSpec(
        observations={
            "s": FeatureSpec("vector", (1,)),
            "cam": FeatureSpec("image", shape, codec=codec, gop=gop),  # type: ignore[arg-type]
        },
        action=ActionSpec("continuous", dim=1),
        control_rate_hz=30.0,
    )


def write(root: Path, spec: DatasetSpec, lengths: list[int] = LENGTHS, ep0: int = 0) -> None:
    shape = spec.observations["cam"].shape
    with DatasetWriter(root, spec, flush_every=5, fsync=False) as w:
        for e, n in enumerate(lengths, start=ep0):
            w.start_episode({"e": e})
            for t in range(n):
                obs = {"s": np.array([t], np.float32), "cam": scene(e, t, shape)}
                w.add_step(obs, np.array([t], np.float32), t / 30.0)
            w.end_episode()


def expected(lengths: list[int], shape: tuple[int, int, int] = (H, W, 3), ep0: int = 0):
    return np.concatenate(
        [np.stack([scene(e, t, shape) for t in range(n)]) for e, n in enumerate(lengths, ep0)]
    )


@pytest.fixture(scope="module", params=CODECS)
def dataset(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp(f"video_{request.param}") / "ds"
    write(root, spec_for(request.param))
    return request.param, root


def test_round_trip_per_codec(dataset: tuple[str, Path]) -> None:
    codec, root = dataset
    want = expected(LENGTHS)
    cached = EpisodeDataset(root, cache_images=True)
    lazy = EpisodeDataset(root, cache_images=False)
    assert cached.images_cached and not lazy.images_cached
    frames = np.concatenate([cached.episode(i).observations["cam"] for i in range(3)])
    assert frames.shape == want.shape == (sum(LENGTHS), H, W, 3) and frames.dtype == np.uint8
    err = np.abs(frames.astype(int) - want).mean(axis=(1, 2, 3))
    assert err.max() <= TOLERANCE[codec], err
    if codec == "png":
        np.testing.assert_array_equal(frames, want)
    # Each frame is nearest to its own source frame (frame order kept through the codec).
    for n in range(1, want.shape[0]):
        own = np.abs(frames[n].astype(int) - want[n]).mean()
        assert own < np.abs(frames[n].astype(int) - want[n - 1]).mean() or own == 0
    # The two reading paths decode identically.
    lazy_frames = np.concatenate([lazy.episode(i).observations["cam"] for i in range(3)])
    np.testing.assert_array_equal(lazy_frames, frames)


def test_random_windows_equal_sequential_decode(dataset: tuple[str, Path], rng) -> None:
    codec, root = dataset
    cached = EpisodeDataset(root, cache_images=True)
    lazy = EpisodeDataset(root, cache_images=False)
    for _ in range(5):
        idx = rng.integers(0, len(lazy), size=16)
        a = lazy.window(idx, history=3, horizon=2)
        b = cached.window(idx, history=3, horizon=2)
        np.testing.assert_array_equal(a[OBS]["cam"], b[OBS]["cam"])
        np.testing.assert_array_equal(a[OBS]["s"], b[OBS]["s"])
    # Every frame, one at a time, in reverse order (each from the keyframe before it).
    for n in reversed(range(len(lazy))):
        np.testing.assert_array_equal(
            lazy.window(np.array([n]))[OBS]["cam"][0, 0],
            cached.window(np.array([n]))[OBS]["cam"][0, 0],
        )


def test_video_files_layout(dataset: tuple[str, Path]) -> None:
    codec, root = dataset
    path = root / "episodes" / "episode_000000" / "images.cam.npz"
    with np.load(path) as z:
        members = set(z.files)
        if codec in ("h264", "av1"):
            assert members == {"data", "offsets", "keyframe", "codec"}
            assert str(z["codec"]) == codec
            kf = z["keyframe"]
            # A keyframe at least every gop (4) frames and at every chunk start (5 steps).
            assert kf[0] and all(kf[i] for i in range(0, LENGTHS[0], 5))
            gaps = np.diff(np.flatnonzero(kf))
            assert gaps.max() <= 4
        else:  # the format of every dataset written before video storage: unchanged
            assert members == {"data", "offsets"}
    meta = json.loads((root / "meta.json").read_text())
    cam = meta["spec"]["observations"]["cam"]
    assert ("gop" in cam) == (codec in ("h264", "av1"))


@pytest.mark.parametrize("codec", ["h264", "av1"])
def test_grayscale_video(tmp_path: Path, codec: str) -> None:
    shape = (H, W, 1)
    write(tmp_path / "ds", spec_for(codec, shape), [11])
    want = expected([11], shape)
    for cache in (True, False):
        got = EpisodeDataset(tmp_path / "ds", cache_images=cache).episode(0).observations["cam"]
        assert got.shape == (11, H, W, 1) and got.dtype == np.uint8
        assert np.abs(got.astype(int) - want).mean() < 3.0


@pytest.mark.parametrize("codec", ["h264", "av1"])
@pytest.mark.parametrize("shape", [(7, 9, 3), (1, 1, 3), (13, 5, 1)])
def test_odd_and_tiny_sizes(tmp_path: Path, codec: str, shape: tuple[int, int, int]) -> None:
    write(tmp_path / "ds", spec_for(codec, shape), [6])
    got = EpisodeDataset(tmp_path / "ds", cache_images=False).episode(0).observations["cam"]
    assert got.shape == (6, *shape)


def test_spec_codec_options() -> None:
    f = FeatureSpec("image", (8, 8, 3), codec="h264", gop=30, crf=18)
    assert f.is_video and FeatureSpec.from_dict(f.to_dict()) == f
    assert FeatureSpec.from_dict({"kind": "image", "shape": [8, 8, 3], "codec": "av1"}).gop == 10
    # An old spec dict (no gop, no crf) loads as before and writes back the same.
    old = {"kind": "image", "shape": [8, 8, 3], "codec": "jpeg", "quality": 90}
    assert FeatureSpec.from_dict(old).to_dict() == old
    for bad, what in (
        ({"codec": "mp4"}, "codec"),
        ({"codec": "h264", "gop": 0}, "gop"),
        ({"codec": "h264", "crf": 52}, "crf"),
        ({"codec": "av1", "crf": -1}, "crf"),
    ):
        with pytest.raises(SpecError, match=what):
            FeatureSpec("image", (8, 8, 3), **bad)  # type: ignore[arg-type]


def test_mixed_codecs_aggregate(tmp_path: Path) -> None:
    # DAgger rounds recorded with different camera settings read as one dataset.
    write(tmp_path / "a", spec_for("jpeg"), [6])
    write(tmp_path / "b", spec_for("h264"), [7], ep0=1)
    want = expected([6, 7])
    for cache in (True, False):
        ds = EpisodeDataset([tmp_path / "a", tmp_path / "b"], cache_images=cache)
        got = ds.window(np.arange(13))[OBS]["cam"][:, 0]
        assert np.abs(got.astype(int) - want).mean() < 4.0


def _ep_file(root: Path, e: int = 0) -> Path:
    return root / "episodes" / f"episode_{e:06d}" / "images.cam.npz"


def _rewrite(path: Path, arrays: dict[str, np.ndarray]) -> None:
    blob = npz_bytes(arrays)
    path.write_bytes(blob)
    ej_path = path.parent / "episode.json"
    ej = json.loads(ej_path.read_text())
    ej["files"][path.name] = len(blob)
    ej_path.write_text(json.dumps(ej))


@pytest.mark.parametrize("codec", ["h264", "av1"])
def test_truncated_video_names_episode_file_and_key(tmp_path: Path, codec: str) -> None:
    root = tmp_path / "ds"
    write(root, spec_for(codec), [12, 12])
    path = _ep_file(root, 1)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 40])
    with pytest.raises(DatasetError, match="truncated") as exc:
        EpisodeDataset(root, cache_images=False)
    assert "episode_000001" in str(exc.value) and "images.cam.npz" in str(exc.value)
    # Truncated and episode.json edited to match: the frame data runs past the file's end.
    ej_path = path.parent / "episode.json"
    ej = json.loads(ej_path.read_text())
    ej["files"][path.name] = len(data) - 40
    ej_path.write_text(json.dumps(ej))
    for cache in (True, False):
        with pytest.raises(DatasetError) as exc:
            EpisodeDataset(root, cache_images=cache)
        assert "episode_000001" in str(exc.value) and "images.cam.npz" in str(exc.value)


@pytest.mark.parametrize("codec", ["h264", "av1"])
def test_garbage_video_names_episode_file_and_key(tmp_path: Path, codec: str) -> None:
    root = tmp_path / "ds"
    write(root, spec_for(codec), [12, 12])
    path = _ep_file(root, 0)
    with np.load(path) as z:
        arrays = {k: z[k].copy() for k in z.files}
    off = arrays["offsets"]
    # Packets 5..7 (a keyframe and what follows it) replaced by garbage, sizes kept.
    arrays["data"][off[5] : off[8]] = np.random.default_rng(0).integers(
        0, 256, int(off[8] - off[5]), dtype=np.uint8
    )
    _rewrite(path, arrays)
    with pytest.raises(DatasetError) as exc:
        EpisodeDataset(root, cache_images=True)
    msg = str(exc.value)
    assert "episode_000000" in msg and "images.cam.npz" in msg and "'cam'" in msg
    ds = EpisodeDataset(root, cache_images=False)  # the frame index is fine: opens
    ds.window(np.arange(0, 5))  # the segment before the damage still decodes
    ds.window(np.arange(12, 24))  # and the other episode
    with pytest.raises(DatasetError) as exc:
        ds.window(np.array([6]))
    msg = str(exc.value)
    assert "episode_000000" in msg and "images.cam.npz" in msg and "'cam'" in msg
    assert "frame" in msg


def test_garbage_keyframe_column(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    write(root, spec_for("h264"), [6])
    path = _ep_file(root)
    with np.load(path) as z:
        arrays = {k: z[k].copy() for k in z.files}
    arrays["keyframe"][0] = False
    _rewrite(path, arrays)
    with pytest.raises(DatasetError, match="keyframe"):
        EpisodeDataset(root, cache_images=False)
    arrays["keyframe"][0] = True
    arrays["codec"] = np.array("vp9")
    _rewrite(path, arrays)
    with pytest.raises(DatasetError, match="codec"):
        EpisodeDataset(root, cache_images=False)


def _rss_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def test_lazy_reader_keeps_frames_on_disk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # 40 episodes of 50 noisy 64x64 PNG frames: about 25 MB of frame bytes on disk.
    spec = DatasetSpec(
        {"cam": FeatureSpec("image", (64, 64, 3), codec="png")}, ActionSpec("continuous", 1), 10.0
    )
    rng = np.random.default_rng(0)
    pool = [rng.integers(0, 256, (64, 64, 3), dtype=np.uint8) for _ in range(16)]
    root = tmp_path / "ds"
    with DatasetWriter(root, spec, flush_every=50, fsync=False) as w:
        for e in range(40):
            w.start_episode()
            for t in range(50):
                w.add_step({"cam": pool[(e + t) % 16]}, np.zeros(1, np.float32), t * 0.1)
            w.end_episode()
    on_disk = sum(p.stat().st_size for p in root.glob("episodes/*/images.cam.npz"))
    assert on_disk > 20e6
    monkeypatch.setattr(reader_mod, "MAX_OPEN_FILES", 8)
    before = _rss_bytes()
    ds = EpisodeDataset(root, cache_images=False)
    grown = _rss_bytes() - before
    assert grown < on_disk / 4, (grown, on_disk)
    # What the reader holds per frame: an index (three int64), never the frame bytes.
    lazy = ds._lazy["cam"]
    held = sum(a.nbytes for a in (lazy.pos, lazy.end, lazy.key_before))
    assert held == 24 * len(ds)
    # Windows over every episode read from disk with at most 8 files open at a time.
    fds_before = len(os.listdir("/proc/self/fd"))
    for _ in range(10):
        b = ds.window(rng.integers(0, len(ds), 64), history=2)
        assert b[OBS]["cam"].shape == (64, 2, 64, 64, 3)
    assert len(lazy.files._fds) <= 8
    assert len(os.listdir("/proc/self/fd")) <= fds_before + 8
    n = 123
    np.testing.assert_array_equal(ds.window(np.array([n]))[OBS]["cam"][0, 0], pool[(2 + 23) % 16])
    ds.close()
    assert not lazy.files._fds
    # A pickled copy (a dataset sent to a worker process) opens its own files.
    copy = pickle.loads(pickle.dumps(ds))
    np.testing.assert_array_equal(copy.window(np.array([n]))[OBS]["cam"][0, 0], pool[25 % 16])


def test_info_lists_video_codec(dataset: tuple[str, Path]) -> None:
    codec, root = dataset
    summary = dataset_summary(root)
    assert summary["steps"] == sum(LENGTHS)
    assert summary["spec"]["observations"]["cam"]["codec"] == codec


@pytest.mark.parametrize("codec", ["h264", "av1"])
def test_rejected_step_never_reaches_the_encoder(tmp_path: Path, codec: str) -> None:
    # A step refused for its action (checked after the frame) must not become a frame of
    # the video: the encoder would keep it as a reference and every later frame would move.
    spec = spec_for(codec)
    with DatasetWriter(tmp_path / "ds", spec, flush_every=5, fsync=False) as w:
        w.start_episode()
        for t in range(8):
            obs = {"s": np.array([t], np.float32), "cam": scene(0, t)}
            if t == 3:
                with pytest.raises(DatasetError, match="action"):
                    w.add_step({**obs, "cam": scene(5, 40)}, np.array([np.nan]), t / 30.0)
            w.add_step(obs, np.array([t], np.float32), t / 30.0)
        w.end_episode()
    got = EpisodeDataset(tmp_path / "ds", cache_images=False).episode(0).observations["cam"]
    assert got.shape == (8, H, W, 3)
    assert np.abs(got.astype(int) - expected([8])).mean(axis=(1, 2, 3)).max() < 6.0


def test_mapping_camera_codecs() -> None:
    from il_core.config import ConfigError
    from il_core.mapping import mapping_from_dict

    def mapping(**cam: object) -> dict:
        return {
            "control_rate_hz": 30,
            "observations": {
                "front": {
                    "topic": "/cam",
                    "type": "sensor_msgs/msg/Image",
                    "shape": [48, 64, 3],
                    **cam,
                }
            },
            "action": {"topic": "/cmd", "type": "geometry_msgs/msg/Twist", "fields": ["linear.x"]},
        }

    spec = mapping_from_dict(mapping(codec="h264", gop=15, crf=20)).to_spec()
    f = spec.observations["front"]
    assert (f.codec, f.gop, f.crf) == ("h264", 15, 20)
    assert mapping_from_dict(mapping()).to_spec().observations["front"].codec == "jpeg"
    with pytest.raises(ConfigError, match="front.*crf"):
        mapping_from_dict(mapping(codec="av1", crf=99))
