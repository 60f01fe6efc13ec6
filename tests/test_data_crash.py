"""Crash safety: SIGKILL a writer process at chosen and at random moments, then reload.

The child writer is this file run as a script (``python tests/test_data_crash.py child ...``):
it generates every step deterministically from ``(episode id, step)``, so the parent can
check stored contents exactly, and reports progress on stdout. The camera is stored as PNG
(compared exactly) or as video (h264, av1: every chunk is its own segment; compared within
a coding tolerance), so the same crashes are checked for every storage.
"""

from __future__ import annotations

import logging
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from il_core.data import DatasetWriter, EpisodeDataset, recover
from il_core.data import writer as writer_mod
from il_core.spec import ActionSpec, DatasetSpec, FeatureSpec

REPO = Path(__file__).resolve().parents[1]
FLUSH_EVERY = 4
CODECS = ["png", "h264", "av1"]
# Mean absolute error allowed for the lossy video codecs on the smooth frames of make_step.
VIDEO_TOLERANCE = 6.0


def crash_spec(codec: str = "png") -> DatasetSpec:
    return DatasetSpec(
        observations={
            "q": FeatureSpec("vector", (3,)),
            "cam": FeatureSpec(
                "image", (12, 16, 3), codec=codec, gop=3, crf=None if codec == "png" else 12
            ),  # type: ignore[arg-type]
        },
        action=ActionSpec("continuous", dim=2),
        control_rate_hz=30.0,
        extras={"flag": FeatureSpec("vector", (1,))},
    )


def episode_length(ep: int) -> int:
    return 5 + (ep * 7) % 11


def make_step(ep: int, t: int, codec: str = "png") -> tuple[dict, np.ndarray, float, dict]:
    rng = np.random.default_rng([ep, t])
    if codec == "png":
        cam = rng.integers(0, 256, size=(12, 16, 3), dtype=np.uint8)
    else:
        # Distinct per step, smooth in brightness and one tint per frame: what 4:2:0 video
        # keeps within a small error even at 12x16 (random colours per pixel it does not).
        coarse = rng.integers(30, 200, size=(3, 4), dtype=np.uint8)
        luma = cv2.resize(coarse, (16, 12), interpolation=cv2.INTER_LINEAR)
        tint = rng.integers(0, 50, size=3)
        cam = (luma[:, :, None].astype(int) + tint).astype(np.uint8)
    obs = {"q": rng.normal(size=3).astype(np.float32), "cam": cam}
    return obs, rng.normal(size=2).astype(np.float32), 10.0 * ep + t / 30.0, {"flag": [t % 2]}


def child_main(root: str, first_ep: int, block_ep: int, block_steps: int, codec: str) -> None:
    """Write episodes first_ep, first_ep + 1, ... forever; block inside episode block_ep."""
    w = DatasetWriter(root, crash_spec(codec), flush_every=FLUSH_EVERY, on_incomplete="keep")
    print("START", flush=True)
    ep = first_ep
    while True:
        w.start_episode({"ep": ep})
        for t in range(episode_length(ep)):
            obs, action, ts, extras = make_step(ep, t, codec)
            w.add_step(obs, action, ts, {k: np.asarray(v, np.float32) for k, v in extras.items()})
            if ep == block_ep and t + 1 == block_steps:
                print(f"READY {ep} {t + 1}", flush=True)
                time.sleep(3600)
        info = w.end_episode(success=ep % 2 == 0, metadata={"len": episode_length(ep)})
        print(f"DONE {ep} {info.path.name}", flush=True)
        ep += 1


class Child:
    """A child writer process whose stdout lines are collected by a thread."""

    alive: list[Child] = []  # killed at test teardown, so a failing test leaves no sleeper

    def __init__(
        self,
        root: Path,
        first_ep: int = 0,
        block_ep: int = -1,
        block_steps: int = 0,
        codec: str = "png",
    ):
        paths = [str(REPO), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(paths))
        self.proc = subprocess.Popen(
            [
                sys.executable,
                __file__,
                "child",
                str(root),
                str(first_ep),
                str(block_ep),
                str(block_steps),
                codec,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        self._thread = threading.Thread(target=self._pump, daemon=True)
        self._thread.start()
        Child.alive.append(self)

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.strip())

    def wait_for(self, prefix: str, timeout: float = 30.0) -> str:
        """Consume lines until one starts with ``prefix``; return it."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                err = self.proc.stderr.read() if self.proc.poll() is not None else ""
                raise AssertionError(f"child never printed {prefix!r}; stderr: {err}") from None
            self.seen.append(line)
            if line.startswith(prefix):
                return line

    def kill(self) -> list[str]:
        """SIGKILL, reap, and return every line the child printed."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)
        if self in Child.alive:
            Child.alive.remove(self)
        self._thread.join(timeout=30)
        while not self.lines.empty():
            self.seen.append(self.lines.get())
        assert self.proc.stderr is not None
        self.proc.stderr.close()
        return self.seen


@pytest.fixture(autouse=True)
def _kill_children():
    yield
    while Child.alive:
        Child.alive[0].kill()


def done_episodes(lines: list[str]) -> dict[int, str]:
    return {int(p[1]): p[2] for p in (ln.split() for ln in lines) if p[0] == "DONE"}


def check_dataset(root: Path, codec: str = "png") -> EpisodeDataset:
    """Load, and compare every episode with what the child generated for it.

    Frames are read both ways: decoded per window (from the keyframe before, for video)
    and decoded once into the cache.
    """
    ds = EpisodeDataset(root, cache_images=False)
    cached = EpisodeDataset(root, cache_images=True)
    assert cached.num_episodes == ds.num_episodes
    for i in range(ds.num_episodes):
        ep = ds.episode(i)
        np.testing.assert_array_equal(
            cached.episode(i).observations["cam"], ep.observations["cam"]
        )
        e = ep.info.metadata["ep"]
        n = ep.info.length
        full = episode_length(e)
        if ep.info.recovered:
            # Flushed prefix only, no label, start metadata kept.
            # (All of it if the writer died inside end_episode, after its final flush but
            # before episode.json.)
            assert 0 < n <= full and (n % FLUSH_EVERY == 0 or n == full), (e, n)
            assert ep.info.success is None and ep.info.metadata == {"ep": e}
        else:
            assert n == full, (e, n)
            assert ep.info.success is (e % 2 == 0)
            assert ep.info.metadata == {"ep": e, "len": full}
        for t in range(n):
            obs, action, ts, extras = make_step(e, t, codec)
            np.testing.assert_array_equal(ep.observations["q"][t], obs["q"])
            if codec == "png":
                np.testing.assert_array_equal(ep.observations["cam"][t], obs["cam"])
            else:
                err = np.abs(ep.observations["cam"][t].astype(int) - obs["cam"]).mean()
                assert err < VIDEO_TOLERANCE, (e, t, err)
            np.testing.assert_array_equal(ep.actions[t], action)
            assert ep.timestamps[t] == ts
            assert ep.extras["flag"][t, 0] == extras["flag"][0]
    return ds


def in_progress_dirs(root: Path) -> list[Path]:
    return sorted((root / "episodes").glob(".inprogress-*"))


@pytest.mark.parametrize("codec", CODECS)
@pytest.mark.parametrize("mode", ["keep", "discard"])
def test_sigkill_mid_episode(
    tmp_path: Path, mode: str, codec: str, caplog: pytest.LogCaptureFixture
) -> None:
    root = tmp_path / "ds"
    # Episode 3 has 5 + 21 % 11 = 15 steps; block after 10 of them: 8 flushed, 2 not.
    child = Child(root, block_ep=3, block_steps=10, codec=codec)
    child.wait_for("READY")
    # While the writer lives, its in-progress dir is untouchable from another process.
    (inprog,) = in_progress_dirs(root)
    assert recover(root, mode) == []
    with DatasetWriter(root, on_incomplete=mode) as other:
        assert other.recovered == []
    with caplog.at_level(logging.WARNING):
        assert EpisodeDataset(root).num_episodes == 3
    assert inprog.exists() and "in-progress" in caplog.text
    lines = child.kill()
    assert sorted(done_episodes(lines)) == [0, 1, 2]

    # Completed episodes are intact before any recovery.
    ds = check_dataset(root, codec)
    assert ds.num_episodes == 3 and not any(e.recovered for e in ds.episodes)
    done = recover(root, mode)
    assert len(done) == 1 and inprog.name in done[0]
    assert in_progress_dirs(root) == []
    ds = check_dataset(root, codec)
    if mode == "keep":
        assert ds.num_episodes == 4
        last = ds.episodes[3]
        assert last.recovered and last.length == 8 and last.metadata == {"ep": 3}
        assert last.path.name == "episode_000003"
    else:
        assert ds.num_episodes == 3
    assert sorted(p.name for p in (root / "episodes").iterdir()) == [
        f"episode_{i:06d}" for i in range(ds.num_episodes)
    ]
    assert recover(root, mode) == []  # nothing left to do


@pytest.mark.parametrize("codec", CODECS)
def test_sigkill_at_random_moments(tmp_path: Path, codec: str) -> None:
    root = tmp_path / "ds"
    rng = np.random.default_rng(1234)
    reported: dict[int, str] = {}
    # One kill as early as possible (during the writer's own recovery / first episode).
    delays = [0.0, *rng.uniform(0.05, 0.4, size=5)]
    for run, delay in enumerate(delays):
        # Each child first recovers what the previous one left (on_incomplete="keep").
        child = Child(root, first_ep=1000 * run, codec=codec)
        child.wait_for("START")
        time.sleep(float(delay))
        reported.update(done_episodes(child.kill()))
        ds = check_dataset(root, codec)
        stored = {e.metadata["ep"] for e in ds.episodes}
        assert set(reported) <= stored  # every episode reported as done survived
        assert len(in_progress_dirs(root)) <= 1
    recover(root, "keep")
    ds = check_dataset(root, codec)
    assert in_progress_dirs(root) == []
    assert not [p for p in (root / "episodes").iterdir() if p.name.startswith(".")]
    assert len(reported) >= 3, reported  # the children did get work done
    names = [e.path.name for e in ds.episodes]
    assert len(set(names)) == len(names)


def _write_steps(w: DatasetWriter, ep: int, n: int) -> None:
    for t in range(n):
        obs, action, ts, extras = make_step(ep, t)
        w.add_step(obs, action, ts, {k: np.asarray(v, np.float32) for k, v in extras.items()})


def test_crash_between_episode_json_and_rename(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "ds"
    w = DatasetWriter(root, crash_spec(), flush_every=FLUSH_EVERY)
    w.start_episode({"ep": 0})
    _write_steps(w, 0, episode_length(0))

    def die(*_a: object, **_k: object) -> None:
        raise KeyboardInterrupt  # stands for the process dying right before the rename

    monkeypatch.setattr(writer_mod, "commit_episode_dir", die)
    with pytest.raises(KeyboardInterrupt):
        w.end_episode(success=True, metadata={"len": episode_length(0)})
    inprog = w.in_progress_dir
    assert inprog is not None and (inprog / "episode.json").exists()
    w._episode.lock.release()  # what the kernel does on SIGKILL
    monkeypatch.undo()
    (line,) = recover(root, "keep")
    assert "complete" in line
    ds = check_dataset(root)
    # Complete data: not flagged recovered, label and metadata kept.
    assert ds.num_episodes == 1 and not ds.episodes[0].recovered
    assert ds.episodes[0].success is True


def test_recovery_keeps_valid_chunk_prefix(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    w = DatasetWriter(root, crash_spec(), flush_every=FLUSH_EVERY)
    w.start_episode({"ep": 3})
    _write_steps(w, 3, 14)  # chunks 0, 1, 2 (12 steps) flushed, 2 steps only in memory
    chunks = (w.in_progress_dir / "chunks").glob("chunk_*.npz")
    assert sorted(p.name for p in chunks) == [f"chunk_{i:06d}.npz" for i in range(3)]
    chunk_dir = w.in_progress_dir / "chunks"
    # A crash in the middle of a flush leaves a partial temporary: ignored.
    (chunk_dir / ".chunk_000003.npz.tmp-dead").write_bytes(b"PK\x03\x04partial")
    # A damaged chunk (disk error) ends the usable prefix.
    data = bytearray((chunk_dir / "chunk_000002.npz").read_bytes())
    data[len(data) // 2 : len(data) // 2 + 64] = b"\xff" * 64
    (chunk_dir / "chunk_000002.npz").write_bytes(bytes(data))
    (chunk_dir.parent / "start.json").write_text("{not json")  # metadata lost, data kept
    # A consolidation interrupted by an earlier crash left a partial temporary.
    (chunk_dir.parent / ".steps.npz.tmp-dead").write_bytes(b"PK")
    w._episode.lock.release()
    (line,) = recover(root, "keep")
    assert "8 flushed steps" in line
    ds = EpisodeDataset(root)
    assert ds.episodes[0].recovered and ds.episodes[0].length == 8
    assert ds.episodes[0].metadata == {}
    assert sorted(p.name for p in ds.episodes[0].path.iterdir()) == [
        "episode.json",
        "images.cam.npz",
        "steps.npz",
    ]
    np.testing.assert_array_equal(ds.episode(0).observations["cam"][7], make_step(3, 7)[0]["cam"])


def test_recovery_cleans_leftovers(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    DatasetWriter(root, crash_spec()).close()
    eps = root / "episodes"
    (eps / ".trash-x").mkdir()
    (eps / ".trash-x" / "junk").write_bytes(b"x")
    # A staging dir of a dead process on this host, and one of a live process (ours).
    from il_core.data._fs import host_tag

    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    (eps / f".staging-{host_tag()}-{int(dead.stdout)}-abc").mkdir()
    (eps / f".staging-{host_tag()}-{os.getpid()}-abc").mkdir()
    # An in-progress dir with no flushed step (died right after start_episode).
    w = DatasetWriter(root, on_incomplete="leave")
    w.start_episode()
    empty = w.in_progress_dir
    w._episode.lock.release()
    done = recover(root, "keep")
    assert len(done) == 3 and any("no flushed steps" in d for d in done)
    assert sorted(p.name for p in eps.iterdir()) == [f".staging-{host_tag()}-{os.getpid()}-abc"]
    assert not empty.exists()
    assert EpisodeDataset(root).num_episodes == 0


if __name__ == "__main__" and len(sys.argv) > 1 and sys.argv[1] == "child":
    child_main(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), sys.argv[6])
