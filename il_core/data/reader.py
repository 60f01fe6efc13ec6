"""Random-access training windows over one or several datasets: :class:`EpisodeDataset`."""

from __future__ import annotations

import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal

import numpy as np

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
from il_core.data.codec import CodecError, decode_image
from il_core.data.episode import Episode, EpisodeInfo
from il_core.data.errors import DatasetError
from il_core.data.format import (
    EPISODES,
    INPROGRESS_PREFIX,
    META,
    EpisodeArrays,
    images_filename,
    list_episode_numbers,
    load_episode_dir,
    read_meta,
    spec_differences,
)
from il_core.data.videocodec import decode_run, keyframe_before
from il_core.recording import EXTRA_HAS_LABEL
from il_core.spec import DatasetSpec

logger = logging.getLogger(__name__)


DEFAULT_CACHE_BUDGET = 2 * 1024**3
IMAGE_STATS_SAMPLES = 256
#: Most image files a dataset keeps open for reading frames (least recently used closed).
MAX_OPEN_FILES = 64


class _FrameFiles:
    """Reads byte ranges of the episodes' image files with ``os.pread``, files kept open.

    ``pread`` rather than ``mmap``: mapped pages that training touches count in the
    process's RSS (so a dataset larger than memory would look as if it were loaded), and
    each mapping holds a file descriptor. With ``pread`` the frames live in the kernel's
    page cache only, which it shrinks under pressure. Thread-safe; after a ``fork`` the
    inherited descriptors still work (``pread`` has no shared file position).
    """

    def __init__(self, paths: list[Path], max_open: int | None = None):
        self.paths = paths
        self._max_open = MAX_OPEN_FILES if max_open is None else max_open
        self._fds: OrderedDict[int, int] = OrderedDict()
        self._lock = threading.Lock()

    def read(self, file: int, start: int, size: int) -> bytes:
        with self._lock:
            fd = self._fds.get(file)
            if fd is None:
                fd = os.open(self.paths[file], os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
                self._fds[file] = fd
                while len(self._fds) > self._max_open:
                    os.close(self._fds.popitem(last=False)[1])
            else:
                self._fds.move_to_end(file)
            # Under the lock too: an fd evicted by another thread must not be closed mid-read.
            buf = os.pread(fd, size, start)
        if len(buf) != size:
            raise CodecError(f"file ends early ({len(buf)} of {size} bytes at {start})")
        return buf

    def close(self) -> None:
        with self._lock:
            while self._fds:
                os.close(self._fds.popitem()[1])

    def __getstate__(self) -> dict[str, Any]:
        # Pickled (a dataset sent to a worker process): the paths travel, descriptors and
        # the lock do not; the copy opens its own files.
        return {"paths": self.paths, "max_open": self._max_open}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["paths"], state["max_open"])  # type: ignore[misc]


class _LazyFrames:
    """One camera's frames over all episodes, left on disk: only an index is in memory.

    Attributes:
        pos: ``(N,)`` int64 byte offset of each frame (packet) in its episode's file.
        end: ``(N,)`` int64 byte offset just past it.
        key_before: ``(N,)`` int64 global index of the keyframe at or before each frame
            (the frame itself for JPEG/PNG episodes).
        codecs: Per episode, the file's video codec or None (JPEG/PNG).
        files: The episodes' files.
    """

    def __init__(self, parts: list[EpisodeArrays], key: str, starts: np.ndarray):
        n = int(sum(p.length for p in parts))
        self.pos = np.empty(n, dtype=np.int64)
        self.end = np.empty(n, dtype=np.int64)
        self.key_before = np.empty(n, dtype=np.int64)
        self.codecs: list[str | None] = []
        for e, p in enumerate(parts):
            lo, hi = int(starts[e]), int(starts[e]) + p.length
            offsets = p.images[key][1]
            base = p.frame_files[key].data_start
            self.pos[lo:hi] = base + offsets[:-1]
            self.end[lo:hi] = base + offsets[1:]
            kf = p.keyframes.get(key)
            if kf is None:
                self.key_before[lo:hi] = np.arange(lo, hi)
            else:
                self.key_before[lo:hi] = lo + keyframe_before(kf)
            self.codecs.append(p.codecs.get(key))
        self.files = _FrameFiles([p.frame_files[key].path for p in parts])


class EpisodeDataset:
    """Committed episodes of one or several datasets, loaded for training.

    All vector data (observations, actions, extras, timestamps) is concatenated into flat
    ``(N, ...)`` arrays at construction, so :meth:`window` is a handful of vectorised
    gathers. Camera frames are either decoded once at construction and kept in memory
    (``cache_images``), or left in their files and read (``os.pread``) and decoded per
    window, so that a dataset larger than memory trains: memory then holds an index of
    three int64 per frame, nothing that grows with the frames' size. Video cameras decode
    from the keyframe at or before each frame (:mod:`il_core.data.videocodec`).

    Global step indices run over all episodes in order (roots in the given order, episodes
    by number within a root); episode ``e`` covers
    ``episode_starts[e] : episode_starts[e] + episode_lengths[e]``.

    Attributes:
        spec: The spec of the first root (the others were checked to match).
        roots: The dataset directories.
        episodes: :class:`EpisodeInfo` per episode, ``index`` = global episode index.
        episode_starts: ``(E,)`` int64 global index of each episode's first step.
        episode_lengths: ``(E,)`` int64 steps per episode.
        images_cached: Whether decoded frames are held in memory.
    """

    def __init__(
        self,
        roots: str | Path | Sequence[str | Path],
        *,
        cache_images: bool | None = None,
        cache_budget_bytes: int = DEFAULT_CACHE_BUDGET,
        on_error: Literal["raise", "skip"] = "raise",
        num_threads: int | None = None,
        allow_state_only: bool = False,
    ):
        """Load and validate every committed episode.

        In-progress directories (episodes being written, or left by a crash) are ignored
        with a warning; run :func:`il_core.data.recover` to commit or delete abandoned ones.

        Args:
            roots: One dataset directory or a sequence of them (for example the rounds of
                DAgger). Their specs must match (codec settings and metadata may differ).
            cache_images: True to decode all frames at construction and keep them, False to
                read and decode them per window (frames stay on disk; their zip CRCs are
                then not checked at open, and a damaged frame fails when decoded), None to
                cache if the decoded frames fit in ``cache_budget_bytes``.
            cache_budget_bytes: Memory budget for the automatic choice (default 2 GiB).
            on_error: ``"raise"`` (default) raises on the first bad episode; ``"skip"``
                logs it and loads the others.
            num_threads: Threads decoding the cache at construction (OpenCV and FFmpeg
                release the GIL while decoding); default: the number of CPUs.
            allow_state_only: Also load datasets of observations without actions
                (``spec.state_only``), for algorithms that read only their observations
                (BCO). Their windows have ``ACTION_MASK`` all False and placeholder
                actions. Off by default, so training never fits placeholders; state-only
                and labelled datasets are never aggregated.

        Raises:
            DatasetError: naming the root, episode, file and key of bad data, or both roots
                when their specs differ.
        """
        if isinstance(roots, (str, os.PathLike)):
            roots = [roots]
        self.roots: list[Path] = [Path(r) for r in roots]
        if not self.roots:
            raise DatasetError("no dataset directory given")
        if on_error not in ("raise", "skip"):
            raise DatasetError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
        specs = [read_meta(r) for r in self.roots]
        self.spec: DatasetSpec = specs[0]
        for root, spec in zip(self.roots[1:], specs[1:], strict=True):
            diffs = spec_differences(self.spec, spec)
            if diffs:
                raise DatasetError(
                    f"spec of {root} does not match spec of {self.roots[0]}: " + "; ".join(diffs),
                    path=root / META,
                )
        for root, spec in zip(self.roots, specs, strict=True):
            if spec.state_only and not allow_state_only:
                raise DatasetError(
                    "this dataset holds observations without actions (spec metadata "
                    "'state_only'); label them first (il-core bco), or pass "
                    "allow_state_only=True to read its observations only",
                    path=root / META,
                )
            if spec.state_only != self.spec.state_only:
                raise DatasetError(
                    f"cannot aggregate a state-only dataset with a labelled one "
                    f"({self.roots[0]} and {root})",
                    path=root / META,
                )
        #: Whether the steps hold observations only (placeholder actions, masked out).
        self.state_only: bool = self.spec.state_only

        loaded: list[tuple[Path, dict[str, Any], EpisodeArrays]] = []
        for root in self.roots:
            loaded += self._load_root(root, on_error)
        image_keys = self.spec.image_keys
        frame_bytes = sum(int(np.prod(self.spec.observations[k].shape)) for k in image_keys)
        total_bytes = frame_bytes * sum(arrays.length for *_, arrays in loaded)
        self.images_cached: bool = bool(
            image_keys
            and (cache_images if cache_images is not None else total_bytes <= cache_budget_bytes)
        )
        decoded: dict[str, np.ndarray] = {}
        if self.images_cached:
            threads = max(1, num_threads or os.cpu_count() or 1)
            decoded, loaded = self._decode_episodes(loaded, threads, on_error)
        self.episodes: list[EpisodeInfo] = [
            EpisodeInfo.from_json(i, path, info) for i, (path, info, _) in enumerate(loaded)
        ]
        parts = [arrays for *_, arrays in loaded]
        self._assemble(parts)
        self._images: dict[str, np.ndarray] = decoded
        # Not cached: the frames stay in their files and are read and decoded per window;
        # memory holds only a few int64 per frame (position, end, keyframe before it).
        self._lazy: dict[str, _LazyFrames] = {}
        if not self.images_cached:
            for k in image_keys:
                self._lazy[k] = _LazyFrames(parts, k, self.episode_starts)

    def close(self) -> None:
        """Close the image files kept open for reading frames (reopened when needed)."""
        for lazy in self._lazy.values():
            lazy.files.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # interpreter shutdown: nothing left to clean up properly
            pass

    # ------------------------------------------------------------------ loading

    def _load_root(
        self, root: Path, on_error: str
    ) -> list[tuple[Path, dict[str, Any], EpisodeArrays]]:
        episodes_dir = root / EPISODES
        if not episodes_dir.is_dir():
            return []
        pending = [n for n in os.listdir(episodes_dir) if n.startswith(INPROGRESS_PREFIX)]
        if pending:
            logger.warning(
                "%s: ignoring %d in-progress episode dir(s) %s (being written, or abandoned: "
                "il_core.data.recover() commits or deletes abandoned ones)",
                root,
                len(pending),
                sorted(pending)[:3],
            )
        out = []
        for _, name in list_episode_numbers(episodes_dir):
            path = episodes_dir / name
            try:
                info, arrays = load_episode_dir(path, self.spec, lazy_frames=True)
            except DatasetError as e:
                if on_error == "raise":
                    raise
                logger.warning("skipping bad episode: %s", e)
                continue
            out.append((path, info, arrays))
        return out

    def _assemble(self, parts: list[EpisodeArrays]) -> None:
        spec = self.spec
        lengths = np.array([p.length for p in parts], dtype=np.int64)
        starts = np.zeros(len(parts), dtype=np.int64)
        if len(parts) > 1:
            np.cumsum(lengths[:-1], out=starts[1:])
        self.episode_lengths: np.ndarray = lengths
        self.episode_starts: np.ndarray = starts
        n = int(lengths.sum())
        self._n = n

        def cat(arrs: list[np.ndarray], shape: tuple[int, ...], dtype: Any) -> np.ndarray:
            return np.concatenate(arrs) if arrs else np.zeros((0, *shape), dtype=dtype)

        self._timestamps = cat([p.timestamps for p in parts], (), np.float64)
        self._actions = cat([p.actions for p in parts], spec.action.shape, spec.action.dtype)
        self._vectors = {
            k: cat([p.vectors[k] for p in parts], spec.observations[k].shape, np.float32)
            for k in spec.vector_keys
        }
        self._extras = {
            k: cat([p.extras[k] for p in parts], f.shape, np.float32)
            for k, f in spec.extras.items()
        }
        # Steps whose action is no expert label (il_core.recording): kept for the record and
        # for observation histories, but masked out of the loss and the action statistics.
        label = self._extras.get(EXTRA_HAS_LABEL)
        #: ``(N,)`` bool: the step's action is an expert label (all True without the extra).
        self.labelled: np.ndarray = np.ones(n, dtype=bool) if label is None else label[:, 0] > 0.5
        if self.state_only:
            self.labelled[:] = False
        # Per-step lookups make window() a few gathers instead of a search over episodes.
        self._step_episode = np.repeat(np.arange(len(parts), dtype=np.int64), lengths)
        self._step_start = np.repeat(starts, lengths)
        self._step_end = self._step_start + np.repeat(lengths, lengths) - 1

    def _decode_episodes(
        self,
        loaded: list[tuple[Path, dict[str, Any], EpisodeArrays]],
        threads: int,
        on_error: str,
    ) -> tuple[dict[str, np.ndarray], list[tuple[Path, dict[str, Any], EpisodeArrays]]]:
        """Decode every frame into ``{key: (N, H, W, C)}``; drop bad episodes if skipping."""
        spec = self.spec
        lengths = [arrays.length for *_, arrays in loaded]
        starts = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        out = {
            k: np.empty((int(starts[-1]), *spec.observations[k].shape), dtype=np.uint8)
            for k in spec.image_keys
        }

        def work(i: int) -> DatasetError | None:
            path, _, arrays = loaded[i]
            for k in spec.image_keys:
                _, offsets = arrays.images[k]
                dst, shape = out[k][starts[i] : starts[i + 1]], spec.observations[k].shape
                file = path / images_filename(k)
                try:
                    # One episode's encoded frames at a time, CRC-checked as they are read.
                    data = arrays.frame_files[k].read_all()
                except DatasetError as err:
                    return err
                codec = arrays.codecs.get(k)
                if codec is not None:
                    packets = [data[offsets[t] : offsets[t + 1]] for t in range(arrays.length)]
                    try:
                        decode_run(codec, packets, shape, into=dst)
                    except CodecError as err:
                        return DatasetError(f"{codec} video: {err}", path=file, key=k)
                    continue
                for t in range(arrays.length):
                    try:
                        dst[t] = decode_image(data[offsets[t] : offsets[t + 1]], shape)
                    except CodecError as err:
                        return DatasetError(f"frame {t}: {err}", path=file, key=k)
            return None

        # OpenCV and FFmpeg release the GIL while decoding, so threads decode in parallel.
        if threads > 1 and len(loaded) > 1:
            with ThreadPoolExecutor(threads) as pool:
                errors = list(pool.map(work, range(len(loaded))))
        else:
            errors = [work(i) for i in range(len(loaded))]
        bad = [i for i, e in enumerate(errors) if e is not None]
        if not bad:
            return out, loaded
        if on_error == "raise":
            raise errors[bad[0]]  # type: ignore[misc]
        keep = np.ones(int(starts[-1]), dtype=bool)
        for i in bad:
            logger.warning("skipping bad episode: %s", errors[i])
            keep[starts[i] : starts[i + 1]] = False
        good = [x for i, x in enumerate(loaded) if errors[i] is None]
        return {k: v[keep] for k, v in out.items()}, good

    def _frame_error(self, key: str, n: int, err: Exception, last: int = -1) -> DatasetError:
        e = int(self._step_episode[n])
        path = self.episodes[e].path / images_filename(key)
        frame = n - int(self.episode_starts[e])
        what = f"frame {frame}" if last <= n else f"frames {frame}..{last - n + frame}"
        return DatasetError(f"{what}: {err}", path=path, key=key)

    def _read_frames(self, key: str, uniq: np.ndarray, frames: np.ndarray) -> None:
        """Decode the frames at sorted unique global indices ``uniq`` into ``frames``.

        Video frames are grouped by the keyframe before them: each group is one read of
        the bytes from that keyframe to the group's last frame and one decoding run.
        """
        lazy = self._lazy[key]
        shape = self.spec.observations[key].shape
        kb = lazy.key_before[uniq]
        # uniq is sorted, so kb is non-decreasing: groups are runs of equal kb.
        cut = np.flatnonzero(np.diff(kb)) + 1
        los = np.concatenate([[0], cut]).astype(np.int64)
        his = np.concatenate([cut, [uniq.size]]).astype(np.int64)
        firsts, lasts = kb[los], uniq[his - 1]
        # Python ints for the loop: numpy scalar arithmetic costs more than the pread.
        rows = zip(
            los.tolist(),
            his.tolist(),
            firsts.tolist(),
            lasts.tolist(),
            self._step_episode[firsts].tolist(),
            lazy.pos[firsts].tolist(),
            lazy.end[lasts].tolist(),
            strict=True,
        )
        for lo, hi, g, last, e, start, stop in rows:
            codec = lazy.codecs[e]
            try:
                buf = lazy.files.read(e, start, stop - start)
                if codec is None:
                    frames[lo] = decode_image(np.frombuffer(buf, np.uint8), shape)
                    continue
                cuts = (lazy.end[g:last] - start).tolist()
                view = memoryview(buf)
                packets = [view[a:b] for a, b in zip([0, *cuts], [*cuts, len(buf)], strict=True)]
                decode_run(
                    codec, packets, shape, want=(uniq[lo:hi] - g).tolist(), into=frames[lo:hi]
                )
            except (CodecError, OSError) as err:
                raise self._frame_error(key, g, err, last) from None

    # ------------------------------------------------------------------ sizes

    @property
    def num_episodes(self) -> int:
        """Number of episodes ``E``."""
        return len(self.episodes)

    @property
    def num_steps(self) -> int:
        """Number of steps ``N`` over all episodes."""
        return self._n

    def __len__(self) -> int:
        return self._n

    def __repr__(self) -> str:
        return (
            f"EpisodeDataset({[str(r) for r in self.roots]}, episodes={self.num_episodes}, "
            f"steps={self.num_steps}, images_cached={self.images_cached})"
        )

    # ------------------------------------------------------------------ access

    def _check_indices(self, indices: Any) -> np.ndarray:
        idx = np.asarray(indices)
        if idx.ndim != 1 or not (idx.dtype.kind in "iu" or idx.size == 0):
            raise DatasetError(
                f"indices must be a 1-D integer array, got {idx.dtype} of shape {idx.shape}"
            )
        if idx.size and (idx.min() < 0 or idx.max() >= self._n):
            raise DatasetError(
                f"step indices must lie in 0..{self._n - 1}, got {idx.min()}..{idx.max()}"
            )
        return idx.astype(np.int64, copy=False)

    def step_indices(self, episodes: Sequence[int] | np.ndarray | None = None) -> np.ndarray:
        """Global step indices of the given episodes (all if None), in order.

        Returns:
            ``(M,)`` int64.
        """
        if episodes is None:
            return np.arange(self._n, dtype=np.int64)
        eps = np.asarray(episodes, dtype=np.int64).reshape(-1)
        if eps.size and (eps.min() < 0 or eps.max() >= self.num_episodes):
            raise DatasetError(f"episode indices must lie in 0..{self.num_episodes - 1}")
        lengths = self.episode_lengths[eps]
        # arange per episode without a Python loop: repeat the starts, add a running offset.
        first = np.repeat(self.episode_starts[eps], lengths)
        within = np.arange(int(lengths.sum()), dtype=np.int64) - np.repeat(
            np.cumsum(lengths) - lengths, lengths
        )
        return first + within

    def labelled_anchors(self, indices: Any, horizon: int = 1) -> np.ndarray:
        """The anchors among ``indices`` whose action chunk holds at least one expert label.

        A window anchored at ``t`` trains on actions ``t .. t+h-1`` of its episode; where
        none of them is labelled (see :attr:`labelled`) its loss is zero, so training
        samples only the others.

        Args:
            indices: ``(M,)`` global step indices.
            horizon: ``h >= 1`` actions per window.

        Returns:
            ``(M',)`` int64, in the order given.
        """
        idx = self._check_indices(indices)
        if self.labelled.all() or idx.size == 0:
            return idx
        # Labels in [t, min(t + h - 1, end)] from a running count: O(M), no Python loop.
        count = np.concatenate([[0], np.cumsum(self.labelled, dtype=np.int64)])
        stop = np.minimum(idx + horizon - 1, self._step_end[idx]) + 1
        return idx[count[stop] - count[idx] > 0]

    def episode(self, i: int) -> Episode:
        """The whole episode ``i`` (negative counts from the end), images decoded.

        Returns copies: modifying them does not modify the dataset.
        """
        e = int(i) + self.num_episodes if int(i) < 0 else int(i)
        if not 0 <= e < self.num_episodes:
            raise IndexError(f"episode {i} out of range for {self.num_episodes} episodes")
        lo = int(self.episode_starts[e])
        hi = lo + int(self.episode_lengths[e])
        obs: dict[str, np.ndarray] = {}
        for k in self.spec.observations:
            if k in self._vectors:
                obs[k] = self._vectors[k][lo:hi].copy()
            else:
                obs[k] = self._image_frames(k, np.arange(lo, hi))
        return Episode(
            info=self.episodes[e],
            observations=obs,
            actions=self._actions[lo:hi].copy(),
            timestamps=self._timestamps[lo:hi].copy(),
            extras={k: v[lo:hi].copy() for k, v in self._extras.items()},
        )

    def _image_frames(self, key: str, idx: np.ndarray) -> np.ndarray:
        """Frames at global indices of any shape ``S`` -> ``(*S, H, W, C)`` uint8."""
        if self.images_cached:
            return self._images[key][idx]
        shape = self.spec.observations[key].shape
        flat = idx.reshape(-1)
        # History windows overlap: decode each distinct frame once.
        uniq, inverse = np.unique(flat, return_inverse=True)
        frames = np.empty((uniq.size, *shape), dtype=np.uint8)
        self._read_frames(key, uniq, frames)
        return frames[inverse.reshape(-1)].reshape(*idx.shape, *shape)

    def window(self, indices: Any, history: int = 1, horizon: int = 1) -> dict[str, Any]:
        """Training windows anchored at global step indices.

        For anchor step ``t`` of an episode with steps ``0..T-1``: observations
        ``t-k+1 .. t`` and actions (and extras) ``t .. t+h-1``. History before the episode
        start repeats step 0 (``OBS_MASK`` False there); a chunk past the end repeats the
        last action (``ACTION_MASK`` False there). Windows never cross episodes.

        Args:
            indices: ``(B,)`` integer global step indices.
            history: ``k >= 1`` observations per window.
            horizon: ``h >= 1`` actions per window.

        Returns:
            A dict with keys from :mod:`il_core.constants`:

            - ``OBS``: ``{key: (B, k, D) float32 | (B, k, H, W, C) uint8}``
            - ``OBS_MASK``: ``(B, k)`` bool
            - ``TIMESTAMP``: ``(B, k)`` float64, timestamps of the observations
            - ``ACTION``: ``(B, h, D)`` float32 or ``(B, h)`` int64
            - ``ACTION_MASK``: ``(B, h)`` bool
            - ``EXTRAS``: ``{key: (B, h, D) float32}``
            - ``EPISODE_INDEX``: ``(B,)`` int64 global episode index
            - ``FRAME_INDEX``: ``(B,)`` int64 step ``t`` within its episode

            Arrays are fresh copies.

        Raises:
            DatasetError: bad indices, ``history`` or ``horizon``.
        """
        if history < 1 or horizon < 1:
            raise DatasetError(f"history and horizon must be >= 1, got {history}, {horizon}")
        idx = self._check_indices(indices)
        start = self._step_start[idx][:, None]
        end = self._step_end[idx][:, None]
        obs_idx = idx[:, None] + np.arange(1 - history, 1)
        obs_mask = obs_idx >= start
        np.maximum(obs_idx, start, out=obs_idx)
        act_idx = idx[:, None] + np.arange(horizon)
        act_mask = act_idx <= end
        np.minimum(act_idx, end, out=act_idx)
        obs: dict[str, np.ndarray] = {}
        for k in self.spec.observations:
            if k in self._vectors:
                obs[k] = self._vectors[k][obs_idx]
            else:
                obs[k] = self._image_frames(k, obs_idx)
        return {
            OBS: obs,
            OBS_MASK: obs_mask,
            TIMESTAMP: self._timestamps[obs_idx],
            ACTION: self._actions[act_idx],
            # Past the episode end, unlabelled steps and state-only data hold no real action.
            ACTION_MASK: act_mask & self.labelled[act_idx],
            EXTRAS: {k: v[act_idx] for k, v in self._extras.items()},
            EPISODE_INDEX: self._step_episode[idx],
            FRAME_INDEX: idx - start[:, 0],
        }

    # ------------------------------------------------------------------ statistics

    def stats(self, indices: Any = None) -> dict[str, dict[str, np.ndarray]]:
        """Normalisation statistics over the given global steps (all if None).

        Returns:
            ``{name: {stat: array}}`` with

            - ``"obs.<vector key>"``, ``"extras.<key>"`` and, for continuous actions,
              ``"action"``: ``"mean"``, ``"std"`` (population, unfloored), ``"min"``,
              ``"max"``, each ``(D,)`` float32;
            - discrete ``"action"``: ``"counts"`` ``(num_classes,)`` int64;
            - ``"obs.<image key>"``: per-channel ``"mean"``, ``"std"`` ``(C,)`` float32 of
              pixel values scaled to [0, 1], from at most 256 evenly spaced frames.

        Raises:
            DatasetError: if there are no steps to compute statistics on.
        """
        idx = np.arange(self._n) if indices is None else self._check_indices(indices)
        if idx.size == 0:
            raise DatasetError("cannot compute statistics over zero steps")
        out: dict[str, dict[str, np.ndarray]] = {}

        def moments(x: np.ndarray) -> dict[str, np.ndarray]:
            x64 = x.astype(np.float64)  # float32 sums lose digits over millions of steps
            return {
                "mean": x64.mean(axis=0).astype(np.float32),
                "std": x64.std(axis=0).astype(np.float32),
                "min": x.min(axis=0).astype(np.float32),
                "max": x.max(axis=0).astype(np.float32),
            }

        for k in self.spec.observations:
            if k in self._vectors:
                out[f"obs.{k}"] = moments(self._vectors[k][idx])
            else:
                out[f"obs.{k}"] = self._image_stats(k, idx)
        # Actions of labelled steps only: a released deadman's zeros are no part of the
        # expert's action distribution (all steps when none is labelled, e.g. state-only).
        act_idx = idx[self.labelled[idx]] if self.labelled[idx].any() else idx
        if self.spec.action.kind == "continuous":
            out["action"] = moments(self._actions[act_idx])
        else:
            num_classes = self.spec.action.num_classes
            assert num_classes is not None  # ActionSpec requires it for discrete actions
            counts = np.bincount(self._actions[act_idx], minlength=int(num_classes))
            out["action"] = {"counts": counts.astype(np.int64)}
        for k, v in self._extras.items():
            out[f"extras.{k}"] = moments(v[idx])
        return out

    def _image_stats(self, key: str, idx: np.ndarray) -> dict[str, np.ndarray]:
        num = min(idx.size, IMAGE_STATS_SAMPLES)
        pick = np.unique(np.linspace(0, idx.size - 1, num).astype(np.int64))
        channels = self.spec.observations[key].shape[2]
        total = np.zeros(channels)
        total_sq = np.zeros(channels)
        count = 0
        for lo in range(0, pick.size, 32):
            frames = self._image_frames(key, idx[pick[lo : lo + 32]]).reshape(-1, channels)
            x = frames.astype(np.float64) / 255.0
            total += x.sum(axis=0)
            total_sq += np.square(x).sum(axis=0)
            count += x.shape[0]
        mean = total / count
        std = np.sqrt(np.maximum(total_sq / count - mean**2, 0.0))
        return {"mean": mean.astype(np.float32), "std": std.astype(np.float32)}
