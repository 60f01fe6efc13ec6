"""Crash-safe, step-by-step episode recording: :class:`DatasetWriter`."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from il_core.data._fs import (
    DirLock,
    atomic_write_bytes,
    dumps_json,
    fsync_dir,
    npz_bytes,
    unique_suffix,
)
from il_core.data.codec import CodecError, encode_image
from il_core.data.episode import EpisodeInfo
from il_core.data.errors import DatasetError
from il_core.data.format import (
    CHUNKS,
    EPISODES,
    INPROGRESS_PREFIX,
    META,
    STAGING_PREFIX,
    START_JSON,
    EpisodeArrays,
    chunk_filename,
    commit_episode_dir,
    consolidate_chunks,
    create_meta,
    now_iso,
    read_meta,
    remove_dir,
    spec_differences,
)
from il_core.data.recovery import recover
from il_core.data.videocodec import SegmentEncoder
from il_core.spec import STATE_ONLY, DatasetSpec, SpecError, check_feature

OnIncomplete = Literal["keep", "discard", "leave"]


@dataclass
class _OpenEpisode:
    """State of the episode being written.

    Only the steps since the last flush are in memory; flushed steps live in the chunk
    files, from which the final files are built at the end (as recovery does), so memory
    stays bounded however long the episode and however many cameras.
    """

    dir: Path
    lock: DirLock
    metadata: dict[str, Any]
    timestamps: list[float] = field(default_factory=list)
    actions: list[np.ndarray] = field(default_factory=list)
    vectors: dict[str, list[np.ndarray]] = field(default_factory=dict)
    extras: dict[str, list[np.ndarray]] = field(default_factory=dict)
    images: dict[str, list[np.ndarray]] = field(default_factory=dict)
    # Video cameras: the encoder of the segment being built (one per chunk, so every chunk
    # decodes on its own) and the keyframe flags of the finished segments not yet flushed.
    encoders: dict[str, SegmentEncoder | None] = field(default_factory=dict)
    keyframes: dict[str, list[np.ndarray]] = field(default_factory=dict)
    last_timestamp: float | None = None
    num_flushed: int = 0
    num_chunks: int = 0

    @property
    def length(self) -> int:
        return self.num_flushed + len(self.timestamps)

    def clear_pending(self) -> None:
        for buffers in (self.timestamps, self.actions):
            buffers.clear()
        for group in (self.vectors, self.extras, self.images, self.keyframes):
            for buffers in group.values():
                buffers.clear()


def _json_checked(metadata: Mapping[str, Any] | None, where: Path) -> dict[str, Any]:
    if metadata is None:
        return {}
    if not isinstance(metadata, Mapping):
        raise DatasetError(f"metadata must be a dict, got {type(metadata).__name__}", path=where)
    meta = dict(metadata)
    try:
        dumps_json(meta)
    except (TypeError, ValueError) as e:
        raise DatasetError(f"metadata is not JSON-serialisable: {e}", path=where) from None
    return meta


class DatasetWriter:
    """Records episodes step by step into a dataset directory, safe against crashes.

    Each episode is written into a private ``episodes/.inprogress-*`` directory, flushed to
    disk every ``flush_every`` steps, and made visible by one atomic directory rename when it
    ends. A SIGKILL at any moment therefore loses no completed episode and at most the
    unflushed steps of the current one (see :func:`il_core.data.recover`). Several writer
    processes may append to the same dataset concurrently; one writer object must not be
    used from several threads at once (serialise the calls, for example in one ROS callback
    group). The dataset must live on a local filesystem (``flock`` and atomic rename).

    Use as a context manager::

        with DatasetWriter(root, spec) as w:
            w.start_episode({"seed": 3})
            for t in ...:
                w.add_step(obs, action, timestamp)
            w.end_episode(success=True)

    Attributes:
        root: Dataset directory.
        spec: The dataset's stored spec; it governs validation and codecs even when a
            (compatible) ``spec`` argument with other codec settings was given.
        recovered: What opening the writer did to abandoned in-progress episodes.
    """

    def __init__(
        self,
        root: str | Path,
        spec: DatasetSpec | None = None,
        *,
        flush_every: int = 50,
        on_incomplete: OnIncomplete = "keep",
        commit_on_close: bool = False,
        fsync: bool = True,
    ):
        """Create a dataset, or open an existing one for appending.

        Args:
            root: Dataset directory. Created (with parents) if missing; an existing
                non-empty directory without ``meta.json`` is refused.
            spec: Required to create a dataset. When the dataset exists, it must match the
                stored spec (keys, kinds, shapes, action, extras) or DatasetError is raised.
            flush_every: Steps between flushes of the episode in progress to disk (the most
                a crash can lose). Each flush writes and fsyncs one small file.
            on_incomplete: What to do on open with in-progress episodes of dead writers:
                ``"keep"`` commits their flushed steps (flagged ``recovered``),
                ``"discard"`` deletes them, ``"leave"`` does nothing.
            commit_on_close: If True, :meth:`close` (and leaving the ``with`` block, even on
                an exception) commits an open episode with ``success=None``; if False (the
                default) it discards it, since an episode cut short by the program is
                usually not a demonstration one wants to train on.
            fsync: fsync files and directories. Without it, a process crash still loses
                nothing (the OS has the data), but a power loss may.

        Raises:
            DatasetError: no spec for a new dataset, spec mismatch, bad arguments, or a bad
                ``meta.json``.
        """
        if isinstance(flush_every, bool) or not isinstance(flush_every, int) or flush_every < 1:
            raise DatasetError(f"flush_every must be a positive integer, got {flush_every!r}")
        if on_incomplete not in ("keep", "discard", "leave"):
            raise DatasetError(
                f"on_incomplete must be 'keep', 'discard' or 'leave', got {on_incomplete!r}"
            )
        self.root = Path(root)
        self.flush_every = flush_every
        self.commit_on_close = commit_on_close
        self._fsync = fsync
        self._episode: _OpenEpisode | None = None
        self._closed = False
        if not (self.root / META).exists():
            if spec is None:
                raise DatasetError(
                    "no dataset here (no meta.json); pass a spec to create one", path=self.root
                )
            self._create(spec)
        stored = read_meta(self.root)
        if spec is not None:
            diffs = spec_differences(stored, spec)
            if spec.state_only != stored.state_only:
                diffs.append(
                    f"spec metadata {STATE_ONLY!r}: {stored.state_only} stored, "
                    f"{spec.state_only} given (observations with and without actions)"
                )
            if diffs:
                raise DatasetError(
                    "the given spec does not match the dataset's: " + "; ".join(diffs),
                    path=self.root / META,
                )
        self.spec: DatasetSpec = stored
        self._episodes_dir = self.root / EPISODES
        self._episodes_dir.mkdir(exist_ok=True)
        self.recovered: list[str] = (
            [] if on_incomplete == "leave" else recover(self.root, on_incomplete, fsync=fsync)
        )

    def _create(self, spec: DatasetSpec) -> None:
        if not isinstance(spec, DatasetSpec):
            raise DatasetError(f"spec must be a DatasetSpec, got {type(spec).__name__}")
        self.root.mkdir(parents=True, exist_ok=True)
        foreign = [
            n for n in os.listdir(self.root) if n not in (META, EPISODES) and not n.startswith(".")
        ]
        if foreign and not (self.root / META).exists():
            raise DatasetError(
                f"directory is not empty ({sorted(foreign)[:5]}) and is not a dataset; "
                "refusing to create one here",
                path=self.root,
            )
        # episodes/ first: a visible meta.json then always comes with a complete skeleton.
        (self.root / EPISODES).mkdir(exist_ok=True)
        create_meta(self.root, spec, fsync=self._fsync)

    # ------------------------------------------------------------------ properties

    @property
    def num_steps_in_episode(self) -> int:
        """Steps added to the open episode (0 when none is open)."""
        return 0 if self._episode is None else self._episode.length

    @property
    def episode_in_progress(self) -> bool:
        """Whether an episode is open."""
        return self._episode is not None

    @property
    def in_progress_dir(self) -> Path | None:
        """The open episode's ``.inprogress-*`` directory, if any."""
        return None if self._episode is None else self._episode.dir

    # ------------------------------------------------------------------ episode life cycle

    def _check_usable(self) -> None:
        if self._closed:
            raise DatasetError("the writer is closed", path=self.root)

    def _require_episode(self) -> _OpenEpisode:
        self._check_usable()
        if self._episode is None:
            raise DatasetError(
                "no episode in progress; call start_episode() first", path=self.root
            )
        return self._episode

    def start_episode(self, metadata: dict[str, Any] | None = None) -> None:
        """Open a new episode.

        Args:
            metadata: Free-form JSON-compatible metadata, saved at once (so a recovered
                episode keeps it) and merged with the metadata given to :meth:`end_episode`.

        Raises:
            DatasetError: an episode is already open, or metadata is not JSON-compatible.
        """
        self._check_usable()
        if self._episode is not None:
            raise DatasetError(
                "an episode is already in progress; end or discard it first",
                path=self._episode.dir,
            )
        meta = _json_checked(metadata, self.root)
        suffix = unique_suffix()
        # Built under a staging name and renamed once locked: recovery only considers
        # .inprogress-* dirs, so it can never see one whose lock does not exist yet.
        staging = self._episodes_dir / f"{STAGING_PREFIX}{suffix}"
        staging.mkdir()
        lock = None
        try:
            lock = DirLock.create(staging)
            (staging / CHUNKS).mkdir()
            atomic_write_bytes(
                staging / START_JSON,
                dumps_json({"metadata": meta, "started": now_iso()}),
                fsync=self._fsync,
            )
            final = self._episodes_dir / f"{INPROGRESS_PREFIX}{suffix}"
            os.rename(staging, final)
            lock.directory = final
            if self._fsync:
                fsync_dir(self._episodes_dir)
        except BaseException:
            remove_dir(staging, self._episodes_dir)
            if lock is not None:
                lock.release()
            raise
        self._episode = _OpenEpisode(
            dir=final,
            lock=lock,
            metadata=meta,
            vectors={k: [] for k in self.spec.vector_keys},
            extras={k: [] for k in self.spec.extras},
            images={k: [] for k in self.spec.image_keys},
            keyframes={k: [] for k in self.spec.image_keys if self.spec.observations[k].is_video},
        )

    def add_step(
        self,
        obs: Mapping[str, np.ndarray],
        action: Any,
        timestamp: float,
        extras: Mapping[str, np.ndarray] | None = None,
    ) -> None:
        """Validate and append one step; flush to disk every ``flush_every`` steps.

        A rejected step raises before anything is stored: the episode continues as if the
        call had not happened.

        Args:
            obs: ``{key: array}`` for every observation key of the spec: vectors ``(D,)``
                (real-valued, converted to float32), images ``(H, W, C)`` uint8 RGB.
            action: ``(D,)`` real array (continuous) or one integer class (discrete);
                ``None`` exactly when the spec is state-only (``spec.state_only``).
            timestamp: Seconds, finite, strictly greater than the previous step's.
            extras: ``{key: (D,) array}`` for every extra of the spec (required if the spec
                has extras).

        Raises:
            DatasetError: naming the in-progress episode dir, the step and the key.
        """
        ep = self._require_episode()
        step = ep.length
        where = f"step {step}"

        def fail(msg: str, key: str | None = None) -> DatasetError:
            return DatasetError(f"{where}: {msg}", path=ep.dir, key=key)

        # --- timestamp
        if isinstance(timestamp, (bool, np.bool_)) or not isinstance(
            timestamp, (int, float, np.integer, np.floating)
        ):
            raise fail(
                f"timestamp must be a real number, got {type(timestamp).__name__}", "timestamp"
            )
        ts = float(timestamp)
        if not math.isfinite(ts):
            raise fail(f"timestamp is not finite: {ts}", "timestamp")
        if ep.last_timestamp is not None and not ts > ep.last_timestamp:
            raise fail(
                f"timestamp {ts!r} is not after the previous step's {ep.last_timestamp!r} "
                "(timestamps must be strictly increasing)",
                "timestamp",
            )
        # --- observations: everything is validated and converted before anything is stored.
        if not isinstance(obs, Mapping):
            raise fail(f"obs must be a dict, got {type(obs).__name__}")
        spec = self.spec
        unknown = sorted(set(obs) - set(spec.observations))
        if unknown:
            raise fail(
                f"unknown observation keys {unknown}; spec has {list(spec.observations)}",
                unknown[0],
            )
        vectors: dict[str, np.ndarray] = {}
        images: dict[str, np.ndarray] = {}
        video: dict[str, np.ndarray] = {}
        for key, f in spec.observations.items():
            if key not in obs:
                raise fail("missing observation", key)
            try:
                check_feature(obs[key], f, "observation")
            except SpecError as e:
                raise fail(str(e), key) from None
            if f.kind == "vector":
                vectors[key] = self._vector(obs[key], fail, key)
            elif f.is_video:
                # Encoded once the whole step is accepted: the encoder keeps every frame it
                # is given as a reference, so a rejected step must never reach it.
                video[key] = obs[key]
            else:
                try:
                    images[key] = encode_image(obs[key], f)
                except CodecError as e:
                    raise fail(str(e), key) from None
        # --- action
        if spec.state_only:
            # Observations without actions: a placeholder keeps the on-disk layout (and
            # every existing reader) unchanged; readers refuse it unless told it has none.
            if action is not None:
                raise fail(
                    "this dataset holds observations without actions (spec metadata "
                    f"{STATE_ONLY!r}); pass action=None",
                    "action",
                )
            act = np.zeros(spec.action.shape, dtype=spec.action.dtype)
        elif action is None:
            raise fail(
                f"action is required (only a dataset whose spec metadata sets {STATE_ONLY!r} "
                "stores steps without one)",
                "action",
            )
        else:
            try:
                act = spec.check_action(action, "action")
            except SpecError as e:
                raise fail(str(e), "action") from None
        # --- extras
        extras = {} if extras is None else extras
        if not isinstance(extras, Mapping):
            raise fail(f"extras must be a dict, got {type(extras).__name__}")
        unknown = sorted(set(extras) - set(spec.extras))
        if unknown:
            raise fail(f"unknown extras keys {unknown}; spec has {list(spec.extras)}", unknown[0])
        extra_vals: dict[str, np.ndarray] = {}
        for key, f in spec.extras.items():
            if key not in extras:
                raise fail("missing extra", key)
            try:
                check_feature(extras[key], f, "extra")
            except SpecError as e:
                raise fail(str(e), key) from None
            extra_vals[key] = self._vector(extras[key], fail, key)
        # --- commit the step to the buffers (nothing below can fail on bad input)
        for key, img in video.items():
            enc = ep.encoders.get(key)
            if enc is None:
                enc = ep.encoders[key] = SegmentEncoder(
                    spec.observations[key], spec.control_rate_hz
                )
            try:
                enc.encode(img)
            except CodecError as e:
                raise fail(str(e), key) from None
        ep.timestamps.append(ts)
        ep.last_timestamp = ts
        ep.actions.append(act)
        for key, v in vectors.items():
            ep.vectors[key].append(v)
        for key, v in images.items():
            ep.images[key].append(v)
        for key, v in extra_vals.items():
            ep.extras[key].append(v)
        if len(ep.timestamps) >= self.flush_every:
            self.flush()

    @staticmethod
    def _vector(value: np.ndarray, fail: Any, key: str) -> np.ndarray:
        # A copy: callers often reuse one buffer per step. Finite-checked again after the
        # cast, because a finite float64 such as 1e300 overflows float32 to infinity.
        with np.errstate(over="ignore", invalid="ignore"):
            v = np.array(value, dtype=np.float32, copy=True)
        if not np.all(np.isfinite(v)):
            raise fail("contains NaN or infinity (after conversion to float32)", key)
        return v

    def _pending_arrays(self, ep: _OpenEpisode) -> EpisodeArrays:
        if self.spec.action.kind == "discrete":
            actions = np.array(ep.actions, dtype=np.int64).reshape(-1)
        else:
            actions = np.stack(ep.actions).astype(np.float32, copy=False)
        images = {}
        for key, frames in ep.images.items():
            offsets = np.zeros(len(frames) + 1, dtype=np.int64)
            np.cumsum([f.size for f in frames], out=offsets[1:])
            images[key] = (np.concatenate(frames), offsets)
        return EpisodeArrays(
            timestamps=np.array(ep.timestamps, dtype=np.float64),
            actions=actions,
            vectors={k: np.stack(v) for k, v in ep.vectors.items()},
            extras={k: np.stack(v) for k, v in ep.extras.items()},
            images=images,
            keyframes={k: np.concatenate(v) for k, v in ep.keyframes.items()},
        )

    def _finish_segments(self, ep: _OpenEpisode) -> None:
        """End the open video segments: their packets join the pending frames.

        A failed chunk write keeps them pending; the next segment then starts with its own
        keyframe in the same chunk, which decodes just as well.
        """
        for key, enc in ep.encoders.items():
            if enc is None:
                continue
            ep.encoders[key] = None
            try:
                packets, keyframe = enc.finish()
            except CodecError as e:
                raise DatasetError(str(e), path=ep.dir, key=key) from None
            ep.images[key].extend(np.frombuffer(p, dtype=np.uint8) for p in packets)
            ep.keyframes[key].append(keyframe)

    def flush(self) -> None:
        """Write the steps added since the last flush as one chunk file (no-op if none).

        After it returns, a crash of this process loses none of the steps added so far.
        """
        ep = self._require_episode()
        if not ep.timestamps:
            return
        self._finish_segments(ep)
        arrays = self._pending_arrays(ep)
        chunk_dir = ep.dir / CHUNKS
        atomic_write_bytes(
            chunk_dir / chunk_filename(ep.num_chunks),
            npz_bytes(arrays.chunk_arrays()),
            fsync=self._fsync,
        )
        if self._fsync:
            fsync_dir(chunk_dir)
        ep.num_chunks += 1
        ep.num_flushed += arrays.length
        ep.clear_pending()

    def end_episode(
        self, success: bool | None = None, metadata: dict[str, Any] | None = None
    ) -> EpisodeInfo:
        """Commit the open episode: write its final files and make it visible atomically.

        Args:
            success: Outcome label, or None if unknown.
            metadata: Merged over (overriding) the metadata given to :meth:`start_episode`.

        Returns:
            The committed episode's info (``index`` is the number in its directory name).

        Raises:
            DatasetError: no open episode, no steps (the episode stays open: add steps or
                call :meth:`discard_episode`), or bad ``success``/``metadata``.
        """
        ep = self._require_episode()
        if ep.length == 0:
            raise DatasetError(
                "cannot commit an episode with no steps; add steps or call discard_episode()",
                path=ep.dir,
            )
        if success is not None:
            if not isinstance(success, (bool, np.bool_)):
                raise DatasetError(
                    f"success must be True, False or None, got {success!r}", path=ep.dir
                )
            success = bool(success)
        meta = {**ep.metadata, **_json_checked(metadata, ep.dir)}
        self.flush()
        info = consolidate_chunks(
            ep.dir,
            self.spec,
            success=success,
            recovered=False,
            metadata=meta,
            fsync=self._fsync,
        )
        if info is None or info["length"] != ep.length:  # only if someone tampered with it
            raise DatasetError(
                f"flushed chunks hold {0 if info is None else info['length']} steps, "
                f"expected {ep.length}",
                path=ep.dir / CHUNKS,
            )
        number, path = commit_episode_dir(ep.dir, self._episodes_dir, fsync=self._fsync)
        ep.lock.release()
        self._episode = None
        return EpisodeInfo.from_json(number, path, info)

    def discard_episode(self) -> None:
        """Delete the open episode and everything flushed for it (no-op if none is open)."""
        self._check_usable()
        ep = self._episode
        if ep is None:
            return
        self._episode = None
        try:
            remove_dir(ep.dir, self._episodes_dir)
        finally:
            ep.lock.release()

    def close(self) -> None:
        """Finish writing; idempotent, and the writer is unusable afterwards.

        An open episode is committed with ``success=None`` if ``commit_on_close`` is True and
        it has steps, else discarded.

        If committing fails, the episode's directory is left for :func:`recover` (its lock
        is released) and the error propagates.
        """
        if self._closed:
            return
        ep = self._episode
        try:
            if ep is not None:
                if self.commit_on_close and ep.length > 0:
                    self.end_episode(success=None)
                else:
                    self.discard_episode()
        finally:
            if self._episode is not None:
                self._episode.lock.release()
                self._episode = None
            self._closed = True

    def __enter__(self) -> DatasetWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"{self.num_steps_in_episode} steps in episode"
        return f"DatasetWriter({str(self.root)!r}, {state})"
