"""BackgroundWriter: the same dataset as DatasetWriter, never blocking the caller on disk I/O."""

from __future__ import annotations

import threading
import time

import numpy as np

from il_core.data import DatasetWriter, EpisodeDataset
from il_core.data.background import BackgroundWriter, WriterCallbacks
from il_core.spec import ActionSpec, DatasetSpec, FeatureSpec


def _spec() -> DatasetSpec:
    return DatasetSpec(
        observations={"state": FeatureSpec("vector", (3,))},
        action=ActionSpec("continuous", dim=2, low=(-1.0, -1.0), high=(1.0, 1.0)),
        control_rate_hz=20.0,
    )


class _Recorder:
    def __init__(self) -> None:
        self.saved, self.discarded, self.errors = [], [], []
        self.callbacks = WriterCallbacks(
            on_saved=lambda info, why: self.saved.append((info, why)),
            on_discarded=lambda reason, n: self.discarded.append((reason, n)),
            on_error=self.errors.append,
        )


def _step(bg: BackgroundWriter, i: int, state: np.ndarray) -> bool:
    state[:] = i  # one reused buffer: the writer must copy it
    return bg.add_step({"state": state}, np.array([0.1, -0.1]), 100.0 + 0.05 * i)


def test_round_trip_with_labels_discards_and_rejected_steps(tmp_path):
    rec = _Recorder()
    bg = BackgroundWriter(DatasetWriter(tmp_path, _spec(), flush_every=4), rec.callbacks)
    buf = np.zeros(3)
    bg.start_episode({"operator": "ana"})
    assert bg.episode_open
    for i in range(10):
        assert _step(bg, i, buf)
    # A NaN step is rejected on the worker; the episode goes on.
    assert bg.add_step({"state": np.full(3, np.nan)}, np.zeros(2), 200.0)
    assert bg.end_episode(success=True, metadata={"recording": {"ticks": 11}})
    assert not bg.episode_open and not bg.end_episode()
    bg.start_episode()
    _step(bg, 0, buf)
    assert bg.discard_episode()
    bg.start_episode()  # no step: the end becomes a discard
    bg.end_episode(success=False)
    assert bg.flush(10)
    bg.close(10)
    assert [why for _, why in rec.saved] == ["stopped"]
    assert rec.discarded == [("requested", 1), ("no recorded step", 0)]
    assert bg.rejected_steps == 1 and len(rec.errors) == 1 and "NaN" in str(rec.errors[0])
    ds = EpisodeDataset(tmp_path)
    assert ds.num_episodes == 1
    ep = ds.episode(0)
    np.testing.assert_array_equal(ep.observations["state"][:, 0], np.arange(10))
    info = ds.episodes[0]
    assert info.success is True and info.metadata["operator"] == "ana"
    assert info.metadata["recording"] == {"ticks": 11}


def test_a_stalled_disk_never_blocks_the_caller_and_drops_are_counted(tmp_path, monkeypatch):
    writer = DatasetWriter(tmp_path, _spec(), flush_every=1)
    gate = threading.Event()
    real_flush = writer.flush

    def stalled_flush() -> None:
        gate.wait(10)  # the disk hangs until the test releases it
        real_flush()

    monkeypatch.setattr(writer, "flush", stalled_flush)
    bg = BackgroundWriter(writer, max_queue=20)
    bg.start_episode()
    buf = np.zeros(3)
    t0 = time.perf_counter()
    accepted = sum(_step(bg, i, buf) for i in range(50))
    elapsed = time.perf_counter() - t0
    # The queue holds 20 calls (the start among them until the worker takes it), the worker
    # one more step in the stalled flush.
    assert elapsed < 1.0, f"add_step blocked for {elapsed:.2f} s behind a stalled disk"
    assert 19 <= accepted <= 21 and bg.dropped_steps == 50 - accepted
    # Episode control is never dropped and never waits behind the stalled disk either.
    t0 = time.perf_counter()
    assert bg.end_episode()
    assert time.perf_counter() - t0 < 0.5
    gate.set()
    bg.close(10)
    ds = EpisodeDataset(tmp_path)
    assert ds.num_episodes == 1 and ds.num_steps == accepted


def test_close_commits_an_open_episode(tmp_path):
    bg = BackgroundWriter(DatasetWriter(tmp_path, _spec()))
    bg.start_episode()
    buf = np.zeros(3)
    for i in range(3):
        _step(bg, i, buf)
    bg.close(10)
    assert not bg.add_step({"state": buf}, np.zeros(2), 999.0)
    assert EpisodeDataset(tmp_path).num_steps == 3
