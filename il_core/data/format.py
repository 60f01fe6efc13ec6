"""On-disk layout of a dataset: names, ``meta.json``, episode files and their validation.

Shared by the writer, the reader and recovery so that all three agree on one format::

    DATASET/
      meta.json                        written once (first creator wins), never modified
      episodes/
        episode_000000/                complete episode, made visible by a directory rename
          episode.json                 written last, see EPISODE_JSON_KEYS
          steps.npz                    timestamp (T,) float64, action, obs.<vector key>,
                                       extras.<key>
          images.<key>.npz             data (N,) uint8 concatenated frames, offsets (T+1,) int64;
                                       video cameras (h264/av1) also keyframe (T,) bool and
                                       codec () str, and a frame is a packet
                                       (il_core.data.videocodec)
        .inprogress-<host>-<pid>-<uuid>/
          .lock                        flock'ed by the live writer
          start.json                   episode metadata given at start_episode
          chunks/chunk_000000.npz      flushed steps (same keys as steps.npz, plus
                                       images.<key>.data / images.<key>.offsets, and
                                       images.<key>.keyframe for video cameras: each chunk
                                       is an independent video segment)
        .staging-<host>-<pid>-<uuid>/  an in-progress dir before its lock exists (short-lived)
        .trash-<host>-<pid>-<uuid>/    a discarded dir being deleted

Life of an episode: ``start_episode`` creates a staging dir, locks it and renames it to
``.inprogress-*``; every ``flush_every`` steps a chunk is written (tmp file, fsync,
``os.replace``). ``end_episode`` flushes the rest, consolidates the chunks into the final
files (:func:`consolidate_chunks`, also used by recovery), writes ``episode.json`` last,
deletes the chunks and renames the directory to the next free ``episode_NNNNNN``. Every
intermediate state is either ignored by readers or handled by :func:`il_core.data.recover`.
"""

from __future__ import annotations

import datetime as _dt
import errno
import json
import logging
import os
import re
import shutil
import struct
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

import il_core
from il_core.data._fs import (
    DirLock,
    atomic_write_bytes,
    create_exclusive_bytes,
    dumps_json,
    fsync_dir,
    npz_bytes,
    unique_suffix,
)
from il_core.data.errors import DatasetError
from il_core.spec import VIDEO_CODECS, DatasetSpec, SpecError

logger = logging.getLogger(__name__)

FORMAT = "il_core.dataset"
FORMAT_VERSION = 1
META = "meta.json"
EPISODES = "episodes"
EPISODE_JSON = "episode.json"
STEPS = "steps.npz"
START_JSON = "start.json"
CHUNKS = "chunks"
INPROGRESS_PREFIX = ".inprogress-"
STAGING_PREFIX = ".staging-"
TRASH_PREFIX = ".trash-"
EPISODE_RE = re.compile(r"^episode_(\d{6,})$")
CHUNK_RE = re.compile(r"^chunk_(\d{6,})\.npz$")

META_KEYS = frozenset({"format", "format_version", "il_core_version", "created", "spec"})
EPISODE_JSON_KEYS = frozenset(
    {
        "format_version",
        "length",
        "duration_s",
        "measured_rate_hz",
        "dt_median_s",
        "dt_max_s",
        "success",
        "recovered",
        "start_time",
        "committed",
        "files",
        "metadata",
    }
)


def now_iso() -> str:
    """Current wall-clock time, ISO 8601 with timezone."""
    return _dt.datetime.now(_dt.timezone.utc).astimezone().isoformat(timespec="seconds")


def episode_dirname(number: int) -> str:
    """``episode_000042``."""
    return f"episode_{number:06d}"


def chunk_filename(number: int) -> str:
    """``chunk_000003.npz``."""
    return f"chunk_{number:06d}.npz"


def images_filename(key: str) -> str:
    """``images.<key>.npz``."""
    return f"images.{key}.npz"


# ----------------------------------------------------------------------------- meta.json


def spec_differences(a: DatasetSpec, b: DatasetSpec) -> list[str]:
    """Differences that stop data of spec ``b`` being stored or read alongside spec ``a``.

    Symmetric and stricter than :meth:`DatasetSpec.compatible_with` (which only checks that
    ``b`` has what ``a`` needs, and ignores extras): observation keys, kinds and shapes, the
    action and the extras must all agree. Image codec settings, key order and metadata may
    differ: decoding detects the codec, and arrays are stored by name.
    """
    problems = list(a.compatible_with(b))
    problems += [
        f"observation {k!r} is only in the second spec"
        for k in b.observations
        if k not in a.observations
    ]
    for k in sorted(set(a.extras) | set(b.extras)):
        fa, fb = a.extras.get(k), b.extras.get(k)
        if fa is None or fb is None:
            which = "second" if fa is None else "first"
            problems.append(f"extra {k!r} is only in the {which} spec")
        elif fa.shape != fb.shape:
            problems.append(f"extra {k!r}: shape {fa.shape} vs {fb.shape}")
    return problems


def meta_dict(spec: DatasetSpec) -> dict[str, Any]:
    """Content of a new ``meta.json``."""
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "il_core_version": il_core.__version__,
        "created": now_iso(),
        "spec": spec.to_dict(),
    }


def create_meta(root: Path, spec: DatasetSpec, *, fsync: bool = True) -> bool:
    """Write ``meta.json`` unless it exists. Returns True if this call created it."""
    created = create_exclusive_bytes(root / META, dumps_json(meta_dict(spec)), fsync=fsync)
    if created and fsync:
        fsync_dir(root)
    return created


def read_meta(root: Path) -> DatasetSpec:
    """Read and validate ``<root>/meta.json``.

    Raises:
        DatasetError: naming the file and the problem (missing, not JSON, unknown keys, wrong
            format or version, invalid spec).
    """
    path = root / META
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DatasetError("file is missing: not a dataset directory", path=path) from None
    except OSError as e:
        raise DatasetError(f"cannot read: {e}", path=path) from None
    try:
        meta = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as e:
        raise DatasetError(f"not valid JSON ({e})", path=path) from None
    if not isinstance(meta, dict):
        raise DatasetError(f"expected a JSON object, got {type(meta).__name__}", path=path)
    unknown = set(meta) - META_KEYS
    if unknown:
        raise DatasetError(
            f"unknown keys {sorted(unknown)}; allowed {sorted(META_KEYS)}",
            path=path,
            key=sorted(unknown)[0],
        )
    missing = META_KEYS - {"il_core_version", "created"} - set(meta)
    if missing:
        raise DatasetError(f"missing keys {sorted(missing)}", path=path, key=sorted(missing)[0])
    if meta["format"] != FORMAT:
        raise DatasetError(
            f"format is {meta['format']!r}, expected {FORMAT!r}", path=path, key="format"
        )
    version = meta["format_version"]
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise DatasetError(
            f"format_version must be a positive integer, got {version!r}",
            path=path,
            key="format_version",
        )
    if version > FORMAT_VERSION:
        raise DatasetError(
            f"format_version {version} is newer than this il_core supports ({FORMAT_VERSION})",
            path=path,
            key="format_version",
        )
    try:
        return DatasetSpec.from_dict(meta["spec"], where="spec")
    except SpecError as e:
        raise DatasetError(f"invalid spec: {e}", path=path, key="spec") from None


# ----------------------------------------------------------------------------- episode arrays


def concat_frames(
    per_episode: list[tuple[np.ndarray, np.ndarray]],
) -> tuple[np.ndarray, np.ndarray]:
    """Join ``(data, offsets)`` frame stores into one with global ``(N + 1,)`` offsets.

    Shifts come from the offsets (``offsets[-1]`` is each store's data size), so stores
    whose data was left out (empty ``data``) still give correct global offsets.
    """
    if not per_episode:
        return np.zeros(0, np.uint8), np.zeros(1, np.int64)
    shifts = np.cumsum([0] + [int(o[-1]) for _, o in per_episode[:-1]], dtype=np.int64)
    offsets = [np.zeros(1, np.int64)] + [
        o[1:] + s for (_, o), s in zip(per_episode, shifts, strict=True)
    ]
    return np.concatenate([d for d, _ in per_episode]), np.concatenate(offsets)


@dataclass(frozen=True)
class FrameFile:
    """Where the frame bytes of one ``images.<key>.npz`` lie, for reading them lazily.

    ``np.savez`` and the consolidation store members uncompressed (ZIP_STORED), so the
    ``data.npy`` member's bytes are a contiguous byte range of the file.

    Attributes:
        path: The file.
        member_start: Offset of the ``data.npy`` member's content (its ``.npy`` header).
        member_size: Size of that content (for the zip CRC check).
        data_start: Offset of frame byte 0 (``data[0]``).
        size: Number of frame bytes (``offsets[-1]``).
        crc: The member's zip CRC-32.
    """

    path: Path
    member_start: int
    member_size: int
    data_start: int
    size: int
    crc: int

    def read_all(self) -> np.ndarray:
        """All frame bytes, ``(size,)`` uint8, after checking the member's zip CRC.

        Raises:
            DatasetError: naming the file if it is short or its bytes changed.
        """
        with open(self.path, "rb") as f:
            f.seek(self.member_start)
            buf = f.read(self.member_size)
        if len(buf) != self.member_size:
            raise DatasetError("truncated (frame data ends early)", path=self.path, key="data")
        if zlib.crc32(buf) != self.crc:
            raise DatasetError(
                "corrupt archive (CRC-32 of the frame data does not match)",
                path=self.path,
                key="data",
            )
        skip = self.data_start - self.member_start
        return np.frombuffer(buf, dtype=np.uint8, count=self.size, offset=skip)


def locate_frame_data(path: Path, size: int) -> FrameFile:
    """Find the byte range of the ``data.npy`` member of an images file.

    Raises:
        DatasetError: naming the file if the member is missing, compressed, or not a
            ``(size,)`` uint8 array that fits in the file.
    """
    try:
        with open(path, "rb") as f, zipfile.ZipFile(f) as zf:
            info = zf.getinfo("data.npy")
            if info.compress_type != zipfile.ZIP_STORED:
                raise DatasetError("frame data is compressed", path=path, key="data")
            f.seek(info.header_offset)
            local = f.read(30)
            if len(local) != 30 or local[:4] != b"PK\x03\x04":
                raise DatasetError("bad zip local header", path=path, key="data")
            name_len, extra_len = struct.unpack("<HH", local[26:30])
            member_start = info.header_offset + 30 + name_len + extra_len
            f.seek(member_start)
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
            else:
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
            data_start = f.tell()
            file_size = os.fstat(f.fileno()).st_size
    except KeyError:
        raise DatasetError("array is missing", path=path, key="data") from None
    except FileNotFoundError:
        raise DatasetError("file is missing", path=path) from None
    except DatasetError:
        raise
    except Exception as e:  # any failure to parse untrusted bytes means corruption
        raise DatasetError(
            f"unreadable ({type(e).__name__}: {e})", path=path, key="data"
        ) from None
    if dtype != np.uint8 or fortran or shape != (size,):
        raise DatasetError(
            f"frame data must be ({size},) uint8, got {dtype} {shape}", path=path, key="data"
        )
    if data_start + size > member_start + info.file_size or member_start + info.file_size > (
        file_size
    ):
        raise DatasetError("frame data runs past the end of the file", path=path, key="data")
    return FrameFile(path, member_start, int(info.file_size), data_start, int(size), info.CRC)


@dataclass
class EpisodeArrays:
    """One episode's columns, as stored (images still encoded).

    Attributes:
        timestamps: ``(T,)`` float64, strictly increasing.
        actions: ``(T, D)`` float32 or ``(T,)`` int64.
        vectors: ``{obs key: (T, D) float32}`` for the spec's vector observations.
        extras: ``{extra key: (T, D) float32}``.
        images: ``{image key: (data (N,) uint8, offsets (T + 1,) int64)}``; frame ``t`` is
            ``data[offsets[t]:offsets[t + 1]]`` (a packet for a video camera). ``data`` is
            empty where the frames were left on disk (see ``frame_files``).
        keyframes: ``{video key: (T,) bool}``: which packets are keyframes.
        codecs: ``{image key: codec}`` as the file records it (``"h264"``, ``"av1"``), or
            None for JPEG/PNG frames (detected from their bytes).
        frame_files: ``{image key: FrameFile}``: where the frame bytes lie on disk, when
            they were not loaded (``load_episode_dir(..., lazy_frames=True)``).
    """

    timestamps: np.ndarray
    actions: np.ndarray
    vectors: dict[str, np.ndarray] = field(default_factory=dict)
    extras: dict[str, np.ndarray] = field(default_factory=dict)
    images: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    keyframes: dict[str, np.ndarray] = field(default_factory=dict)
    codecs: dict[str, str | None] = field(default_factory=dict)
    frame_files: dict[str, FrameFile] = field(default_factory=dict)

    @property
    def length(self) -> int:
        """Number of steps ``T``."""
        return int(self.timestamps.shape[0])

    def step_arrays(self) -> dict[str, np.ndarray]:
        """The ``steps.npz`` columns."""
        out = {"timestamp": self.timestamps, "action": self.actions}
        out.update({f"obs.{k}": v for k, v in self.vectors.items()})
        out.update({f"extras.{k}": v for k, v in self.extras.items()})
        return out

    def chunk_arrays(self) -> dict[str, np.ndarray]:
        """The columns of a flushed chunk: steps plus encoded images."""
        out = self.step_arrays()
        for k, (data, offsets) in self.images.items():
            out[f"images.{k}.data"] = data
            out[f"images.{k}.offsets"] = offsets
        for k, kf in self.keyframes.items():
            out[f"images.{k}.keyframe"] = kf
        return out

    @staticmethod
    def concatenate(parts: list[EpisodeArrays]) -> EpisodeArrays:
        """Join consecutive pieces of one episode (chunks) into one."""
        first = parts[0]
        return EpisodeArrays(
            timestamps=np.concatenate([p.timestamps for p in parts]),
            actions=np.concatenate([p.actions for p in parts]),
            vectors={k: np.concatenate([p.vectors[k] for p in parts]) for k in first.vectors},
            extras={k: np.concatenate([p.extras[k] for p in parts]) for k in first.extras},
            images={k: concat_frames([p.images[k] for p in parts]) for k in first.images},
            keyframes={
                k: np.concatenate([p.keyframes[k] for p in parts]) for k in first.keyframes
            },
            codecs=dict(first.codecs),
        )


def timing(timestamps: np.ndarray) -> dict[str, float | None]:
    """Duration and measured rate from step timestamps.

    The rate is ``(T - 1) / (t_last - t_first)``; median and max step intervals expose gaps
    (a stalled sensor shows as ``dt_max_s`` far above ``dt_median_s``). With one step there
    is no interval, so rate and intervals are None.
    """
    t = timestamps
    if t.shape[0] < 2:
        return {"duration_s": 0.0, "measured_rate_hz": None, "dt_median_s": None, "dt_max_s": None}
    dt = np.diff(t)
    duration = float(t[-1] - t[0])
    return {
        "duration_s": duration,
        "measured_rate_hz": float((t.shape[0] - 1) / duration),
        "dt_median_s": float(np.median(dt)),
        "dt_max_s": float(dt.max()),
    }


def _expected_columns(spec: DatasetSpec) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    cols = {
        "timestamp": ((), np.dtype(np.float64)),
        "action": (spec.action.shape, spec.action.dtype),
    }
    for k in spec.vector_keys:
        cols[f"obs.{k}"] = (spec.observations[k].shape, np.dtype(np.float32))
    for k, f in spec.extras.items():
        cols[f"extras.{k}"] = (f.shape, np.dtype(np.float32))
    return cols


def load_npz(path: Path) -> dict[str, np.ndarray]:
    """Read every array of an ``.npz`` file.

    Raises:
        DatasetError: naming the file if it is missing, truncated, corrupt (zip CRC checks
            catch flipped bytes) or holds pickled objects.
    """
    try:
        with np.load(path, allow_pickle=False) as z:
            if not isinstance(z, np.lib.npyio.NpzFile):
                raise DatasetError("is a single .npy array, expected an .npz archive", path=path)
            return {k: z[k] for k in z.files}
    except FileNotFoundError:
        raise DatasetError("file is missing", path=path) from None
    except DatasetError:
        raise
    except (zipfile.BadZipFile, EOFError) as e:
        raise DatasetError(f"truncated or corrupt archive ({e})", path=path) from None
    except Exception as e:  # any failure to parse untrusted bytes means corruption
        raise DatasetError(f"unreadable ({type(e).__name__}: {e})", path=path) from None


def check_columns(
    cols: dict[str, np.ndarray],
    spec: DatasetSpec,
    path: Path,
    *,
    extra_allowed: frozenset[str] = frozenset(),
) -> int:
    """Validate the step columns of ``steps.npz`` or a chunk against the spec.

    Checks key set, dtypes, shapes, a common length, finite values, strictly increasing
    timestamps and discrete action range.

    Returns:
        The number of steps ``T``.

    Raises:
        DatasetError: naming ``path`` and the key.
    """
    expected = _expected_columns(spec)
    unknown = sorted(set(cols) - set(expected) - extra_allowed)
    if unknown:
        raise DatasetError(
            f"unknown arrays {unknown}; expected {sorted(expected)}", path=path, key=unknown[0]
        )
    for key in expected:
        if key not in cols:
            raise DatasetError("array is missing", path=path, key=key)
    n = cols["timestamp"].shape[0] if cols["timestamp"].ndim == 1 else -1
    for key, (shape, dtype) in expected.items():
        arr = cols[key]
        if arr.dtype != dtype:
            raise DatasetError(f"expected dtype {dtype}, got {arr.dtype}", path=path, key=key)
        if arr.ndim < 1 or arr.shape != (n, *shape):
            raise DatasetError(
                f"expected shape {('T', *shape)} with T={n}, got {arr.shape}", path=path, key=key
            )
        if dtype.kind == "f" and not np.all(np.isfinite(arr)):
            raise DatasetError("contains NaN or infinity", path=path, key=key)
    if n < 1:
        raise DatasetError("no steps", path=path, key="timestamp")
    if n > 1 and not np.all(np.diff(cols["timestamp"]) > 0):
        raise DatasetError("timestamps are not strictly increasing", path=path, key="timestamp")
    if spec.action.kind == "discrete":
        a = cols["action"]
        num_classes = spec.action.num_classes
        assert num_classes is not None  # ActionSpec.__post_init__ requires it for discrete
        if a.min() < 0 or a.max() >= int(num_classes):
            raise DatasetError(
                f"class indices outside 0..{num_classes - 1}", path=path, key="action"
            )
    return int(n)


def check_image_index(
    data: np.ndarray, offsets: np.ndarray, length: int, path: Path, key: str
) -> None:
    """Validate a camera's encoded-frame index: one non-empty frame per step, in bounds."""
    if data.dtype != np.uint8 or data.ndim != 1:
        raise DatasetError(
            f"frame data must be (N,) uint8, got {data.dtype} {data.shape}", path=path, key=key
        )
    if offsets.dtype != np.int64 or offsets.shape != (length + 1,):
        raise DatasetError(
            f"offsets must be ({length + 1},) int64, got {offsets.dtype} {offsets.shape}",
            path=path,
            key=key,
        )
    if offsets[0] != 0 or offsets[-1] != data.size or not np.all(np.diff(offsets) > 0):
        raise DatasetError(
            "offsets do not index non-empty frames covering the data", path=path, key=key
        )


def arrays_from_columns(
    cols: dict[str, np.ndarray], spec: DatasetSpec
) -> tuple[EpisodeArrays, dict[str, np.ndarray]]:
    """Split validated columns into an :class:`EpisodeArrays` (no images) and the rest."""
    rest = dict(cols)
    arrays = EpisodeArrays(
        timestamps=rest.pop("timestamp"),
        actions=rest.pop("action"),
        vectors={k: rest.pop(f"obs.{k}") for k in spec.vector_keys},
        extras={k: rest.pop(f"extras.{k}") for k in spec.extras},
    )
    return arrays, rest


def check_keyframes(keyframe: np.ndarray | None, length: int, path: Path, key: str) -> np.ndarray:
    """Validate a video camera's ``(T,)`` bool keyframe column (frame 0 a keyframe).

    Returns:
        ``keyframe``, now known to be present and valid.
    """
    if keyframe is None:
        raise DatasetError("keyframe flags are missing", path=path, key=key)
    if keyframe.dtype != np.bool_ or keyframe.shape != (length,) or not keyframe[0]:
        raise DatasetError(
            f"keyframe must be ({length},) bool starting with a keyframe, got "
            f"{keyframe.dtype} {keyframe.shape}",
            path=path,
            key=key,
        )
    return keyframe


def load_chunk(path: Path, spec: DatasetSpec) -> EpisodeArrays:
    """Read and validate one flushed chunk of an in-progress episode."""
    cols = load_npz(path)
    image_cols = frozenset(
        f"images.{k}.{part}"
        for k in spec.image_keys
        for part in ("data", "offsets", "keyframe")
        if part != "keyframe" or spec.observations[k].is_video
    )
    n = check_columns(cols, spec, path, extra_allowed=image_cols)
    arrays, rest = arrays_from_columns(cols, spec)
    for k in spec.image_keys:
        data, offsets = rest.get(f"images.{k}.data"), rest.get(f"images.{k}.offsets")
        if data is None or offsets is None:
            raise DatasetError("encoded frames are missing", path=path, key=f"images.{k}")
        check_image_index(data, offsets, n, path, f"images.{k}")
        arrays.images[k] = (data, offsets)
        f = spec.observations[k]
        arrays.codecs[k] = f.codec if f.is_video else None
        if f.is_video:
            kf = rest.get(f"images.{k}.keyframe")
            arrays.keyframes[k] = check_keyframes(kf, n, path, f"images.{k}.keyframe")
    return arrays


# ----------------------------------------------------------------------------- episode.json


def read_episode_json(episode_dir: Path) -> dict[str, Any]:
    """Read and validate an ``episode.json`` (keys and types; files are checked on load)."""
    path = episode_dir / EPISODE_JSON
    try:
        info = json.loads(path.read_bytes())
    except FileNotFoundError:
        raise DatasetError("file is missing (incomplete or damaged episode)", path=path) from None
    except (ValueError, UnicodeDecodeError) as e:
        raise DatasetError(f"not valid JSON ({e})", path=path) from None
    if not isinstance(info, dict):
        raise DatasetError("expected a JSON object", path=path)
    unknown = sorted(set(info) - EPISODE_JSON_KEYS)
    if unknown:
        raise DatasetError(f"unknown keys {unknown}", path=path, key=unknown[0])
    missing = sorted(EPISODE_JSON_KEYS - set(info))
    if missing:
        raise DatasetError("missing key", path=path, key=missing[0])

    def _num(key: str, nullable: bool = False) -> None:
        v = info[key]
        if v is None and nullable:
            return
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise DatasetError(f"expected a number, got {v!r}", path=path, key=key)

    if info["format_version"] != FORMAT_VERSION:
        raise DatasetError(
            f"unsupported format_version {info['format_version']!r}",
            path=path,
            key="format_version",
        )
    if not isinstance(info["length"], int) or isinstance(info["length"], bool):
        raise DatasetError(f"expected an integer, got {info['length']!r}", path=path, key="length")
    if info["length"] < 1:
        raise DatasetError("episode has no steps", path=path, key="length")
    for key in ("duration_s", "start_time"):
        _num(key)
    for key in ("measured_rate_hz", "dt_median_s", "dt_max_s"):
        _num(key, nullable=True)
    if info["success"] is not None and not isinstance(info["success"], bool):
        raise DatasetError("expected true, false or null", path=path, key="success")
    if not isinstance(info["recovered"], bool):
        raise DatasetError("expected true or false", path=path, key="recovered")
    files = info["files"]
    if not isinstance(files, dict) or not all(
        isinstance(k, str) and isinstance(v, int) for k, v in files.items()
    ):
        raise DatasetError("expected {file name: byte size}", path=path, key="files")
    if not isinstance(info["metadata"], dict):
        raise DatasetError("expected an object", path=path, key="metadata")
    return info


def check_file_sizes(episode_dir: Path, info: dict[str, Any], spec: DatasetSpec) -> None:
    """Check that every data file exists with the size ``episode.json`` recorded.

    A size mismatch is the cheap, certain sign of truncation or of a file that was replaced.
    """
    needed = [STEPS] + [images_filename(k) for k in spec.image_keys]
    for name in needed:
        if name not in info["files"]:
            raise DatasetError(
                f"{EPISODE_JSON} does not list this file", path=episode_dir / name, key="files"
            )
    for name, size in info["files"].items():
        path = episode_dir / name
        if os.sep in name or name.startswith("."):
            raise DatasetError(f"invalid file name {name!r}", path=episode_dir / EPISODE_JSON)
        try:
            actual = path.stat().st_size
        except FileNotFoundError:
            raise DatasetError("file is missing", path=path) from None
        if actual != size:
            raise DatasetError(
                f"file has {actual} bytes but {EPISODE_JSON} records {size} "
                "(truncated or modified)",
                path=path,
            )


def load_episode_dir(
    episode_dir: Path, spec: DatasetSpec, *, lazy_frames: bool = False
) -> tuple[dict[str, Any], EpisodeArrays]:
    """Read, validate and return a committed episode (images still encoded).

    With ``lazy_frames`` the frame bytes stay on disk (``arrays.frame_files`` says where)
    and only the frame index is read; their zip CRC is then not checked here (reading them
    all would be the cost avoided), but file sizes are, and a bad frame fails when decoded.

    Raises:
        DatasetError: naming the episode directory, file and key of the first problem.
    """
    info = read_episode_json(episode_dir)
    check_file_sizes(episode_dir, info, spec)
    steps_path = episode_dir / STEPS
    cols = load_npz(steps_path)
    n = check_columns(cols, spec, steps_path)
    if n != info["length"]:
        raise DatasetError(
            f"has {n} steps but {EPISODE_JSON} records length {info['length']}",
            path=steps_path,
            key="timestamp",
        )
    arrays, _ = arrays_from_columns(cols, spec)
    for k in spec.image_keys:
        load_images_file(episode_dir / images_filename(k), k, n, arrays, lazy_frames)
    return info, arrays


def load_images_file(
    path: Path, key: str, length: int, arrays: EpisodeArrays, lazy_frames: bool
) -> None:
    """Read and validate ``images.<key>.npz`` into ``arrays`` (frames left on disk if lazy).

    The file says how its frames are coded: with a ``codec`` member (video: ``h264`` or
    ``av1``, plus ``keyframe``), else JPEG/PNG frames detected from their bytes (every file
    written before video storage existed). So datasets whose cameras use different codecs
    (rounds recorded with different settings) read alike.
    """
    if lazy_frames:
        try:
            with np.load(path, allow_pickle=False) as z:
                members = set(z.files)
                icols = {m: z[m] for m in members - {"data"}}
        except FileNotFoundError:
            raise DatasetError("file is missing", path=path) from None
        except (zipfile.BadZipFile, EOFError) as e:
            raise DatasetError(f"truncated or corrupt archive ({e})", path=path) from None
        except Exception as e:  # any failure to parse untrusted bytes means corruption
            raise DatasetError(f"unreadable ({type(e).__name__}: {e})", path=path) from None
    else:
        icols = load_npz(path)
        members = set(icols)
    unknown = sorted(members - {"data", "offsets", "keyframe", "codec"})
    if unknown:
        raise DatasetError(f"unknown arrays {unknown}", path=path, key=unknown[0])
    for part in ("data", "offsets"):
        if part not in members:
            raise DatasetError("array is missing", path=path, key=part)
    codec = None
    if "codec" in icols:
        c = icols["codec"]
        if c.dtype.kind != "U" or c.shape != () or str(c) not in VIDEO_CODECS:
            raise DatasetError(
                f"codec must be one of {VIDEO_CODECS}, got {c!r}", path=path, key="codec"
            )
        codec = str(c)
        check_keyframes(icols.get("keyframe"), length, path, "keyframe")
        arrays.keyframes[key] = icols["keyframe"]
    elif "keyframe" in icols:
        raise DatasetError("keyframe flags without a codec", path=path, key="keyframe")
    offsets = icols["offsets"]
    if lazy_frames:
        if offsets.dtype != np.int64 or offsets.shape != (length + 1,):
            raise DatasetError(
                f"offsets must be ({length + 1},) int64, got {offsets.dtype} {offsets.shape}",
                path=path,
                key=key,
            )
        if offsets[0] != 0 or not np.all(np.diff(offsets) > 0):
            raise DatasetError(
                "offsets do not index non-empty frames covering the data", path=path, key=key
            )
        # Checks that data.npy is (offsets[-1],) uint8, so the offsets cover it exactly.
        loc = locate_frame_data(path, int(offsets[-1]))
        arrays.frame_files[key] = loc
        data = np.zeros(0, np.uint8)
    else:
        data = icols["data"]
        check_image_index(data, offsets, length, path, key)
    arrays.images[key] = (data, offsets)
    arrays.codecs[key] = codec


# ----------------------------------------------------------------------------- commit


def _chunk_files(chunk_dir: Path) -> list[tuple[int, Path]]:
    try:
        names = os.listdir(chunk_dir)
    except FileNotFoundError:
        return []
    return sorted((int(m.group(1)), chunk_dir / n) for n in names if (m := CHUNK_RE.match(n)))


def _scan_chunks(
    episode_dir: Path, spec: DatasetSpec, truncate: bool
) -> tuple[list[Path], list[EpisodeArrays]]:
    """Validate chunks ``0, 1, ...`` one at a time; keep their columns but not their frames.

    Returns:
        The chunk paths and their step columns, with ``images`` holding
        ``(empty data, offsets)`` so that frame data is never all in memory at once.

    Raises:
        DatasetError: on a missing, invalid or out-of-order chunk, unless ``truncate``, in
            which case the valid prefix before it is returned (recovery after a crash).
    """
    paths: list[Path] = []
    parts: list[EpisodeArrays] = []
    last_t = -np.inf
    for expected, (number, path) in enumerate(_chunk_files(episode_dir / CHUNKS)):
        try:
            if number != expected:
                raise DatasetError(f"chunk {expected} is missing", path=path.parent)
            part = load_chunk(path, spec)
            if not part.timestamps[0] > last_t:
                raise DatasetError(
                    "timestamps go back before the previous chunk", path=path, key="timestamp"
                )
        except DatasetError as e:
            if not truncate:
                raise
            logger.warning("keeping the %d chunks before this one: %s", expected, e)
            break
        last_t = float(part.timestamps[-1])
        part.images = {k: (np.zeros(0, np.uint8), o) for k, (_, o) in part.images.items()}
        paths.append(path)
        parts.append(part)
    return paths, parts


def _stream_frames(
    key: str,
    offsets: np.ndarray,
    chunk_paths: list[Path],
    keyframe: np.ndarray | None = None,
    codec: str | None = None,
) -> Any:
    """A writer for :func:`atomic_write_bytes` of ``images.<key>.npz``, one chunk at a time.

    The result is exactly what ``np.savez(data=..., offsets=...)`` writes (an uncompressed
    zip of ``.npy`` members), but the frame data is copied chunk by chunk, so consolidating a
    long camera episode never holds all its frames in memory.
    """
    video_members: list[tuple[str, np.ndarray]] = []
    if codec is not None:
        if keyframe is None:
            raise ValueError(f"images.{key}: a video camera ({codec}) needs its keyframe flags")
        video_members = [("keyframe", keyframe), ("codec", np.array(codec))]

    def write(f: Any) -> None:
        with zipfile.ZipFile(f, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
            with zf.open("offsets.npy", "w", force_zip64=True) as member:
                np.lib.format.write_array(member, offsets, allow_pickle=False)
            # Video: the packets decode from a keyframe on; the file names its codec.
            for name, arr in video_members:
                with zf.open(f"{name}.npy", "w", force_zip64=True) as member:
                    np.lib.format.write_array(member, arr, allow_pickle=False)
            with zf.open("data.npy", "w", force_zip64=True) as member:
                header = {"descr": "|u1", "fortran_order": False, "shape": (int(offsets[-1]),)}
                np.lib.format.write_array_header_1_0(member, header)
                for path in chunk_paths:
                    with np.load(path, allow_pickle=False) as z:
                        member.write(z[f"images.{key}.data"].tobytes())

    return write


def consolidate_chunks(
    episode_dir: Path,
    spec: DatasetSpec,
    *,
    success: bool | None,
    recovered: bool,
    metadata: dict[str, Any],
    truncate: bool = False,
    fsync: bool = True,
) -> dict[str, Any] | None:
    """Turn an in-progress dir's chunks into the final episode files, ``episode.json`` last.

    Used both by the writer at the end of an episode and by recovery after a crash, so that
    the one path that commits data is exercised by every normal commit. Data files are
    written and fsync'ed (and the directory fsync'ed) before ``episode.json`` appears, so a
    present ``episode.json`` always implies complete data files.

    Args:
        episode_dir: The in-progress directory.
        spec: Dataset spec.
        success: Outcome label for ``episode.json``.
        recovered: Whether this salvages a crashed writer's episode.
        metadata: Episode metadata.
        truncate: Keep the valid prefix of chunks instead of raising on a bad one.
        fsync: fsync files and directory.

    Returns:
        The ``episode.json`` content, or None if there was no (valid) chunk.
    """
    chunk_paths, parts = _scan_chunks(episode_dir, spec, truncate)
    if not parts:
        return None
    steps = EpisodeArrays.concatenate(parts)
    files: dict[str, int] = {}
    atomic_write_bytes(episode_dir / STEPS, npz_bytes(steps.step_arrays()), fsync=fsync)
    files[STEPS] = (episode_dir / STEPS).stat().st_size
    for k in spec.image_keys:
        path = episode_dir / images_filename(k)
        writer = _stream_frames(
            k, steps.images[k][1], chunk_paths, steps.keyframes.get(k), steps.codecs.get(k)
        )
        atomic_write_bytes(path, writer, fsync=fsync)
        files[path.name] = path.stat().st_size
    if fsync:
        fsync_dir(episode_dir)
    info: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "length": steps.length,
        **timing(steps.timestamps),
        "success": success,
        "recovered": recovered,
        "start_time": float(steps.timestamps[0]),
        "committed": now_iso(),
        "files": files,
        "metadata": metadata,
    }
    atomic_write_bytes(episode_dir / EPISODE_JSON, dumps_json(info), fsync=fsync)
    if fsync:
        fsync_dir(episode_dir)
    return info


def list_episode_numbers(episodes_dir: Path) -> list[tuple[int, str]]:
    """``(number, dir name)`` of committed episodes, sorted by number."""
    out = []
    for name in os.listdir(episodes_dir):
        m = EPISODE_RE.match(name)
        if m:
            out.append((int(m.group(1)), name))
    out.sort()
    return out


def commit_episode_dir(src: Path, episodes_dir: Path, *, fsync: bool = True) -> tuple[int, Path]:
    """Atomically rename a finished in-progress dir to the next free ``episode_NNNNNN``.

    Another writer process may take the same number first: renaming a directory onto an
    existing non-empty directory fails (``ENOTEMPTY``/``EEXIST``), and we move on to the next
    number. Committed episodes are never empty, so no committed episode can be replaced.

    Returns:
        ``(number, new path)``.
    """
    # The chunks are redundant once episode.json is durable (recovery then commits the final
    # files as they are), so they go before the rename: a committed episode never shows
    # them. The lock file must stay until the rename, or recovery could take an in-progress
    # dir whose writer is alive.
    shutil.rmtree(src / CHUNKS, ignore_errors=True)
    # Also partial temporaries of a consolidation that a crash interrupted before recovery
    # redid it.
    for name in os.listdir(src):
        if name == START_JSON or (name.startswith(".") and ".tmp-" in name):
            try:
                (src / name).unlink()
            except FileNotFoundError:
                pass
    existing = list_episode_numbers(episodes_dir)
    number = existing[-1][0] + 1 if existing else 0
    while True:
        dst = episodes_dir / episode_dirname(number)
        try:
            os.rename(src, dst)
        except (FileExistsError, IsADirectoryError, NotADirectoryError):
            number += 1
            continue
        except OSError as e:
            if e.errno in (errno.ENOTEMPTY, errno.EEXIST):
                number += 1
                continue
            raise
        break
    # A crash right here leaves an empty .lock behind, which is harmless: readers only look
    # at the files listed in episode.json.
    try:
        (dst / DirLock.NAME).unlink()
    except FileNotFoundError:
        pass
    if fsync:
        fsync_dir(episodes_dir)
    return number, dst


def remove_dir(path: Path, episodes_dir: Path) -> None:
    """Delete a directory so that a crash mid-way never leaves a half-deleted lookalike.

    The directory is first renamed to ``.trash-*`` (atomic), then deleted; leftover trash is
    removed by :func:`il_core.data.recover`.
    """
    trash = episodes_dir / f"{TRASH_PREFIX}{unique_suffix()}"
    try:
        os.rename(path, trash)
    except FileNotFoundError:
        return
    shutil.rmtree(trash, ignore_errors=True)
