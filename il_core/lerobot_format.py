"""LeRobot dataset format v3.0: export our datasets to it and import LeRobot datasets.

``il-core export-lerobot DATA --out DIR`` writes what LeRobot 0.4.4's ``LeRobotDataset``
reads (layout and file schemas taken from its ``lerobot/datasets/utils.py``,
``lerobot_dataset.py``, ``compute_stats.py`` and ``video_utils.py``)::

    DIR/
      meta/info.json          codebase_version "v3.0", fps, features (dtype, shape, names,
                              video info), totals, chunks_size, file size limits, paths
      meta/stats.json         per feature min, max, mean, std, count, q01, q10, q50, q90, q99
      meta/tasks.parquet      task_index + the task string as the pandas index
      meta/episodes/chunk-000/file-000.parquet   one row per episode: tasks, length, data and
                              video file indices, dataset_from/to_index, video
                              from/to_timestamp, per-episode stats/<feature>/<stat>, and our
                              success (nullable bool) and metadata (JSON string)
      meta/il_core.json       our DatasetSpec and the layout of observation.state (makes the
                              round trip exact; LeRobot ignores the file)
      data/chunk-000/file-000.parquet            one row per step
      videos/observation.images.<key>/chunk-000/file-000.mp4   all episodes of a camera,
                              one after the other (episode e starts at its from_timestamp)

Feature mapping (our spec -> LeRobot; import reverses it):

- Vector observations -> ``observation.state`` (float32), their values concatenated in spec
  order, named ``<key>.<name or index>``; with exactly one vector key it is that key with
  its own names (``<key>_<i>`` without names). Per-key features ``observation.<key>`` are
  not written as well: LeRobot's policies treat every ``observation.*`` vector as a state
  input, so duplicates would be fed twice. ``meta/il_core.json`` records how to split
  ``observation.state`` back into our keys. Importing a LeRobot dataset without that file,
  ``observation.state`` becomes the key ``state`` and any other ``observation.<name>``
  vector (``observation.environment_state``) the key ``<name>``.
- Cameras -> ``observation.images.<key>``, dtype ``video``, shape ``(H, W, 3)``; AV1
  (``libsvtav1``, LeRobot's default, decoded by libdav1d in PyAV and torchcodec) or H.264,
  ``yuv420p``, GOP 2, CRF 30 (LeRobot's encoder settings). Grayscale cameras are written
  as RGB and turned back into one channel on import (from ``meta/il_core.json``).
  Image features stored in the Parquet files (dtype ``image``) are imported too.
- Continuous action -> ``action`` float32 ``(D,)`` with its names. A discrete action (one
  class per step) -> ``action`` int64 of shape ``(1,)`` named ``["class"]``; its number of
  classes comes back from ``meta/il_core.json`` (without it: the largest class + 1,
  reported). State-only datasets are refused (label them first).
- Extras -> ``extras.<key>`` float32. Any other numeric 1-D LeRobot feature (``next.reward``,
  ``next.done``) is imported as an extra of the same name; anything else (strings, arrays of
  more dimensions) is dropped. Both are listed in the import result, never silently.
- ``timestamp`` = ``frame_index / fps`` (LeRobot requires it; ``fps`` is our control rate,
  which must be a whole number); our own timestamps travel in ``original_timestamp``
  (float64) and are restored on import (else ``timestamp`` is used).
- Episode success -> the episode's ``success``; episode metadata -> ``metadata`` (JSON). All
  steps carry one task (``--task``, default the spec's ``task`` or ``env_id`` metadata);
  imported episodes keep their LeRobot tasks in ``metadata["lerobot"]["tasks"]``.

Both directions write into a temporary directory beside the destination and rename it into
place at the end, so a failure never leaves a half-written output; an existing non-empty
destination is refused. Bad input raises :class:`~il_core.data.DatasetError` (or
:class:`~il_core.config.ConfigError` for bad options) naming the file and the key.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from fractions import Fraction
from pathlib import Path
from typing import Any, Literal

import numpy as np

from il_core.config import ConfigError
from il_core.data.errors import DatasetError
from il_core.spec import STATE_ONLY, ActionSpec, DatasetSpec, FeatureSpec, ImageCodec, SpecError

logger = logging.getLogger(__name__)

CODEBASE_VERSION = "v3.0"
INFO_PATH = "meta/info.json"
STATS_PATH = "meta/stats.json"
TASKS_PATH = "meta/tasks.parquet"
EPISODES_DIR = "meta/episodes"
SIDE_PATH = "meta/il_core.json"
CHUNK_FILE = "chunk-{chunk_index:03d}/file-{file_index:03d}"
DATA_PATH = "data/" + CHUNK_FILE + ".parquet"
VIDEO_PATH = "videos/{video_key}/" + CHUNK_FILE + ".mp4"
EPISODES_PATH = EPISODES_DIR + "/" + CHUNK_FILE + ".parquet"
CHUNKS_SIZE = 1000  # files per chunk directory (LeRobot's DEFAULT_CHUNK_SIZE)
DATA_FILE_MB = 100  # LeRobot's DEFAULT_DATA_FILE_SIZE_IN_MB
VIDEO_FILE_MB = 200  # LeRobot's DEFAULT_VIDEO_FILE_SIZE_IN_MB
#: Per-step columns LeRobot adds to every dataset (``DEFAULT_FEATURES``).
STRUCTURAL = ("timestamp", "frame_index", "episode_index", "index", "task_index")
STATE = "observation.state"
IMAGES_PREFIX = "observation.images."
EXTRAS_PREFIX = "extras."
ORIGINAL_TIMESTAMP = "original_timestamp"
#: ``--vcodec`` choices: LeRobot's names, and the PyAV encoder each one uses (Literal names:
#: PyAV's stubs then know that ``add_stream`` gives a video stream).
VIDEO_CODECS: dict[str, Literal["libsvtav1", "libx264"]] = {
    "libsvtav1": "libsvtav1",
    "h264": "libx264",
}
QUANTILES = (0.01, 0.10, 0.50, 0.90, 0.99)
#: Frames per episode and camera that go into the image statistics.
IMAGE_STATS_FRAMES = 100
IMAGE_STATS_TOTAL = 1000
_SIDE_FORMAT = "il_core.lerobot"


# ---------------------------------------------------------------------------- helpers


@contextmanager
def _staged_output(out: Path) -> Iterator[Path]:
    """A temporary directory beside ``out`` that becomes ``out`` when the block succeeds."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ConfigError(f"{out}: exists and is not an empty directory; choose a new --out")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{uuid.uuid4().hex[:12]}"
    tmp.mkdir()
    try:
        yield tmp
        if out.exists():
            out.rmdir()  # empty (checked above)
        os.rename(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _next_file(chunk: int, file: int) -> tuple[int, int]:
    # LeRobot's update_chunk_file_indices: at most CHUNKS_SIZE files per chunk directory.
    return (chunk + 1, 0) if file == CHUNKS_SIZE - 1 else (chunk, file + 1)


def _write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=4, ensure_ascii=False) + "\n")


def _stats(values: np.ndarray, image: bool = False) -> dict[str, np.ndarray]:
    """LeRobot's statistics of one feature (``compute_stats.get_feature_stats``).

    Args:
        values: ``(N, D)`` numbers, or ``(N, H, W, C)`` uint8 frames when ``image``.
        image: Frames: statistics per channel of the values scaled to ``[0, 1]``, shape
            ``(C, 1, 1)`` as LeRobot stores them.

    Returns:
        ``min, max, mean, std, count, q01, q10, q50, q90, q99``.
    """
    if image:
        x = values.reshape(-1, values.shape[-1]).astype(np.float64) / 255.0
        shape: tuple[int, ...] = (values.shape[-1], 1, 1)
    else:
        x = values.reshape(len(values), -1)
        shape = (x.shape[1],)
    out = {
        "min": x.min(axis=0).reshape(shape),
        "max": x.max(axis=0).reshape(shape),
        "mean": x.astype(np.float64).mean(axis=0).reshape(shape),
        "std": x.astype(np.float64).std(axis=0).reshape(shape),
        "count": np.array([len(values)]),
    }
    qs = np.quantile(x.astype(np.float64), QUANTILES, axis=0)
    for q, v in zip(QUANTILES, qs, strict=True):
        out[f"q{round(q * 100):02d}"] = v.reshape(shape)
    return out


def _sample(n: int, k: int) -> np.ndarray:
    return np.unique(np.linspace(0, n - 1, min(n, k)).round().astype(np.int64))


# ---------------------------------------------------------------------------- export


def _fps(spec: DatasetSpec) -> int:
    rate = float(spec.control_rate_hz)
    if not math.isclose(rate, round(rate), abs_tol=1e-9):
        raise ConfigError(
            f"LeRobot datasets have a whole-number fps; this dataset's control_rate_hz is "
            f"{rate}. Resample it to a whole-number rate first."
        )
    return int(round(rate))


def _vector_names(key: str, f: FeatureSpec, prefix: bool) -> list[str]:
    names = list(f.names) if f.names is not None else [str(i) for i in range(f.shape[0])]
    if prefix:
        return [f"{key}.{n}" for n in names]
    return names if f.names is not None else [f"{key}_{n}" for n in names]


def _export_features(spec: DatasetSpec) -> dict[str, dict[str, Any]]:
    """LeRobot ``features`` of our spec, without the video ``info`` (added once encoded)."""
    feats: dict[str, dict[str, Any]] = {}
    vkeys = spec.vector_keys
    if vkeys:
        names = [n for k in vkeys for n in _vector_names(k, spec.observations[k], len(vkeys) > 1)]
        feats[STATE] = {"dtype": "float32", "shape": [len(names)], "names": names}
    for k in spec.image_keys:
        h, w, _ = spec.observations[k].shape
        feats[IMAGES_PREFIX + k] = {
            "dtype": "video",
            "shape": [h, w, 3],
            "names": ["height", "width", "channels"],
        }
    a = spec.action
    if a.kind == "continuous":
        names = list(a.names) if a.names is not None else [f"action_{i}" for i in range(a.dim)]
        feats["action"] = {"dtype": "float32", "shape": [a.dim], "names": names}
    else:
        feats["action"] = {"dtype": "int64", "shape": [1], "names": ["class"]}
    for k, f in spec.extras.items():
        feats[EXTRAS_PREFIX + k] = {
            "dtype": "float32",
            "shape": list(f.shape),
            "names": _vector_names(k, f, False),
        }
    feats[ORIGINAL_TIMESTAMP] = {"dtype": "float64", "shape": [1], "names": None}
    feats["timestamp"] = {"dtype": "float32", "shape": [1], "names": None}
    for k in ("frame_index", "episode_index", "index", "task_index"):
        feats[k] = {"dtype": "int64", "shape": [1], "names": None}
    return feats


def _arrow_type(ft: dict[str, Any]) -> Any:
    import pyarrow as pa

    value = {"float32": pa.float32(), "float64": pa.float64(), "int64": pa.int64()}[ft["dtype"]]
    shape = list(ft["shape"])
    return value if shape == [1] else pa.list_(value, shape[0])


def _hf_schema_metadata(feats: dict[str, dict[str, Any]], columns: list[str]) -> bytes:
    # The `huggingface` schema metadata that datasets.Dataset.to_parquet writes.
    out: dict[str, Any] = {}
    for k in columns:
        ft = feats[k]
        value = {"dtype": ft["dtype"], "_type": "Value"}
        out[k] = (
            value
            if list(ft["shape"]) == [1]
            else {"feature": value, "length": ft["shape"][0], "_type": "List"}
        )
    return json.dumps({"info": {"features": out}}).encode()


class _VideoFile:
    """One MP4 being written: frames of consecutive episodes of one camera."""

    def __init__(self, path: Path, fps: int, codec: str, crf: int, h: int, w: int):
        import av

        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.frames = 0
        self.bytes = 0
        self._fps = fps
        self._out = av.open(str(path), mode="w")
        options = {"g": "2", "crf": str(crf)}
        if codec == "libsvtav1":
            options["preset"] = "12"
        try:
            self._stream = self._out.add_stream(VIDEO_CODECS[codec], rate=fps, options=options)
            self._stream.width, self._stream.height, self._stream.pix_fmt = w, h, "yuv420p"
        except Exception:
            self._out.close()
            raise

    def add(self, frame: np.ndarray) -> None:
        import av

        vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
        vf.pts = self.frames
        vf.time_base = Fraction(1, self._fps)
        self.frames += 1
        for packet in self._stream.encode(vf):
            self.bytes += packet.size
            self._out.mux(packet)

    def close(self) -> None:
        for packet in self._stream.encode():
            self._out.mux(packet)
        self._out.close()


def _video_info(path: Path, fps: int) -> dict[str, Any]:
    """What LeRobot's ``video_utils.get_video_info`` records for a file."""
    import av

    with av.open(str(path)) as f:
        s = f.streams.video[0]
        return {
            "video.height": s.codec_context.height,
            "video.width": s.codec_context.width,
            "video.codec": s.codec.canonical_name,
            "video.pix_fmt": s.codec_context.pix_fmt,
            "video.is_depth_map": False,
            "video.fps": fps,
            "video.channels": 3,
            "has_audio": False,
        }


def _write_parquet(path: Path, columns: dict[str, Any], schema_metadata: bytes | None) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table(columns)
    if schema_metadata is not None:
        table = table.replace_schema_metadata({b"huggingface": schema_metadata})
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path, compression="snappy")


def _write_tasks(path: Path, tasks: list[str]) -> None:
    """``meta/tasks.parquet`` as pandas writes LeRobot's DataFrame (tasks as the index)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table(
        {
            "task_index": pa.array(range(len(tasks)), pa.int64()),
            "__index_level_0__": pa.array(tasks, pa.large_string()),
        }
    )
    pandas_meta = {
        "index_columns": ["__index_level_0__"],
        "column_indexes": [
            {
                "name": None,
                "field_name": None,
                "pandas_type": "unicode",
                "numpy_type": "str",
                "metadata": {"encoding": "UTF-8"},
            }
        ],
        "columns": [
            {
                "name": "task_index",
                "field_name": "task_index",
                "pandas_type": "int64",
                "numpy_type": "int64",
                "metadata": None,
            },
            {
                "name": None,
                "field_name": "__index_level_0__",
                "pandas_type": "unicode",
                "numpy_type": "str",
                "metadata": None,
            },
        ],
        "attributes": {},
        "creator": {"library": "pyarrow", "version": pa.__version__},
        "pandas_version": "2.2.0",
    }
    table = table.replace_schema_metadata({b"pandas": json.dumps(pandas_meta).encode()})
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)


def export_lerobot(
    data: str | Path,
    out: str | Path,
    *,
    task: str | None = None,
    vcodec: str = "libsvtav1",
    crf: int = 30,
) -> dict[str, Any]:
    """Write the dataset at ``data`` as a LeRobot v3.0 dataset directory ``out``.

    Args:
        data: Our dataset directory.
        out: The LeRobot dataset directory; must not exist or be empty.
        task: The task string of every step (default: the spec's ``task`` or ``env_id``
            metadata).
        vcodec: ``"libsvtav1"`` (AV1, LeRobot's default) or ``"h264"``.
        crf: Encoder quality (lower is better; LeRobot uses 30).

    Returns:
        ``{"out", "episodes", "frames", "fps", "features", "video_codec", "cameras"}``.

    Raises:
        ConfigError: Bad options, a non-integer control rate, a state-only dataset, an
            existing non-empty ``out``.
        DatasetError: A bad input dataset.
    """
    from il_core.data import EpisodeDataset

    if vcodec not in VIDEO_CODECS:
        raise ConfigError(f"--vcodec must be one of {sorted(VIDEO_CODECS)}, got {vcodec!r}")
    top = 63 if vcodec == "libsvtav1" else 51  # the encoders' CRF ranges
    if isinstance(crf, bool) or not isinstance(crf, int) or not 0 <= crf <= top:
        raise ConfigError(f"--crf must be an integer in 0..{top} for {vcodec}, got {crf!r}")
    ds = EpisodeDataset(data, allow_state_only=True, cache_images=False)
    spec = ds.spec
    if spec.state_only:
        raise ConfigError(
            f"{data}: this dataset holds observations without actions (spec metadata "
            f"{STATE_ONLY!r}); LeRobot datasets need an action per step: label it first"
        )
    if ds.num_episodes == 0:
        raise DatasetError("no committed episodes to export", path=data)
    fps = _fps(spec)
    for k in spec.image_keys:
        h, w, _ = spec.observations[k].shape
        if h % 2 or w % 2:
            raise ConfigError(
                f"camera {k!r} is {h}x{w}: LeRobot videos are yuv420p, which needs an even "
                "height and width"
            )
    task = task or str(spec.metadata.get("task") or spec.metadata.get("env_id") or "il_ros")
    feats = _export_features(spec)
    columns_order = [k for k, ft in feats.items() if ft["dtype"] != "video"]
    hf_meta = _hf_schema_metadata(feats, columns_order)
    row_bytes = sum(
        8 * (1 if list(feats[k]["shape"]) == [1] else feats[k]["shape"][0]) for k in columns_order
    )
    out = Path(out)
    with _staged_output(out) as tmp:
        episodes_rows: list[dict[str, Any]] = []
        all_stats: dict[str, list[np.ndarray]] = {k: [] for k in feats}
        data_loc, data_rows = (0, 0), 0
        data_cols: dict[str, list[np.ndarray]] | None = None
        videos: dict[str, _VideoFile] = {}
        video_loc: dict[str, tuple[int, int]] = {k: (0, 0) for k in spec.image_keys}
        index = 0

        def flush_data() -> None:
            nonlocal data_cols, data_rows
            if data_cols is not None:
                path = tmp / DATA_PATH.format(chunk_index=data_loc[0], file_index=data_loc[1])
                _write_parquet(
                    path,
                    {k: _column(data_cols[k], feats[k]) for k in columns_order},
                    hf_meta,
                )
            data_cols, data_rows = None, 0

        try:
            for e in range(ds.num_episodes):
                ep = ds.episode(e)
                n = len(ep)
                frame_index = np.arange(n, dtype=np.int64)
                values: dict[str, np.ndarray] = {}
                if spec.vector_keys:
                    values[STATE] = np.concatenate(
                        [ep.observations[k] for k in spec.vector_keys], axis=1
                    ).astype(np.float32)
                values["action"] = (
                    ep.actions.astype(np.float32)
                    if spec.action.kind == "continuous"
                    else ep.actions.astype(np.int64).reshape(n, 1)
                )
                for k in spec.extras:
                    values[EXTRAS_PREFIX + k] = ep.extras[k].astype(np.float32)
                values[ORIGINAL_TIMESTAMP] = ep.timestamps.astype(np.float64).reshape(n, 1)
                values["timestamp"] = (frame_index / fps).astype(np.float32).reshape(n, 1)
                values["frame_index"] = frame_index.reshape(n, 1)
                values["episode_index"] = np.full((n, 1), e, np.int64)
                values["index"] = (index + frame_index).reshape(n, 1)
                values["task_index"] = np.zeros((n, 1), np.int64)
                # --- tabular data: an episode never spans two files (as in LeRobot)
                if data_cols is not None and (data_rows + n) * row_bytes > DATA_FILE_MB * 2**20:
                    flush_data()
                    data_loc = _next_file(*data_loc)
                if data_cols is None:
                    data_cols = {k: [] for k in columns_order}
                for k in columns_order:
                    data_cols[k].append(values[k])
                data_rows += n
                row: dict[str, Any] = {
                    "episode_index": e,
                    "tasks": [task],
                    "length": n,
                    "data/chunk_index": data_loc[0],
                    "data/file_index": data_loc[1],
                    "dataset_from_index": index,
                    "dataset_to_index": index + n,
                }
                # --- videos: consecutive episodes share a file up to VIDEO_FILE_MB
                ep_stats: dict[str, dict[str, np.ndarray]] = {}
                for k in spec.image_keys:
                    vkey = IMAGES_PREFIX + k
                    frames = ep.observations[k]
                    if frames.shape[-1] == 1:
                        frames = np.repeat(frames, 3, axis=-1)
                    vf = videos.get(k)
                    if vf is not None and vf.bytes > VIDEO_FILE_MB * 2**20:
                        vf.close()
                        video_loc[k] = _next_file(*video_loc[k])
                        vf = None
                    if vf is None:
                        path = tmp / VIDEO_PATH.format(
                            video_key=vkey, chunk_index=video_loc[k][0], file_index=video_loc[k][1]
                        )
                        h, w = frames.shape[1:3]
                        vf = videos[k] = _VideoFile(path, fps, vcodec, crf, h, w)
                    start = vf.frames
                    for frame in frames:
                        vf.add(frame)
                    row[f"videos/{vkey}/chunk_index"] = video_loc[k][0]
                    row[f"videos/{vkey}/file_index"] = video_loc[k][1]
                    row[f"videos/{vkey}/from_timestamp"] = start / fps
                    row[f"videos/{vkey}/to_timestamp"] = (start + n) / fps
                    ep_stats[vkey] = _stats(frames[_sample(n, IMAGE_STATS_FRAMES)], image=True)
                    # The dataset's image statistics: about IMAGE_STATS_TOTAL frames in all.
                    per_episode = max(1, IMAGE_STATS_TOTAL // ds.num_episodes)
                    all_stats[vkey].append(frames[_sample(n, per_episode)])
                for k, v in values.items():
                    ep_stats[k] = _stats(v)
                    all_stats[k].append(v)
                for k, st in ep_stats.items():
                    for name, v in st.items():
                        row[f"stats/{k}/{name}"] = v.tolist()
                row["success"] = ep.info.success
                row["metadata"] = json.dumps(ep.info.metadata)
                row["meta/episodes/chunk_index"] = 0
                row["meta/episodes/file_index"] = 0
                episodes_rows.append(row)
                index += n
            flush_data()
        finally:
            for vf in videos.values():
                vf.close()
        for k in spec.image_keys:
            vkey = IMAGES_PREFIX + k
            first = tmp / VIDEO_PATH.format(video_key=vkey, chunk_index=0, file_index=0)
            feats[vkey]["info"] = _video_info(first, fps)
        _write_episodes(tmp / EPISODES_PATH.format(chunk_index=0, file_index=0), episodes_rows)
        _write_tasks(tmp / TASKS_PATH, [task])
        stats = {
            k: {
                n: v.tolist()
                for n, v in _stats(np.concatenate(vs), k.startswith(IMAGES_PREFIX)).items()
            }
            for k, vs in all_stats.items()
            if vs
        }
        _write_json(tmp / STATS_PATH, stats)
        info = {
            "codebase_version": CODEBASE_VERSION,
            "robot_type": spec.metadata.get("robot_type"),
            "total_episodes": ds.num_episodes,
            "total_frames": index,
            "total_tasks": 1,
            "chunks_size": CHUNKS_SIZE,
            "data_files_size_in_mb": DATA_FILE_MB,
            "video_files_size_in_mb": VIDEO_FILE_MB,
            "fps": fps,
            "splits": {"train": f"0:{ds.num_episodes}"},
            "data_path": DATA_PATH,
            "video_path": VIDEO_PATH if spec.image_keys else None,
            "features": feats,
        }
        _write_json(tmp / INFO_PATH, info)
        _write_json(
            tmp / SIDE_PATH,
            {
                "format": _SIDE_FORMAT,
                "version": 1,
                "spec": spec.to_dict(),
                "state_keys": [[k, spec.observations[k].shape[0]] for k in spec.vector_keys],
            },
        )
    return {
        "out": str(out),
        "episodes": ds.num_episodes,
        "frames": index,
        "fps": fps,
        "video_codec": vcodec if spec.image_keys else None,
        "cameras": [IMAGES_PREFIX + k for k in spec.image_keys],
        "features": {k: {"dtype": ft["dtype"], "shape": ft["shape"]} for k, ft in feats.items()},
    }


def _column(parts: list[np.ndarray], ft: dict[str, Any]) -> Any:
    import pyarrow as pa

    arr = np.concatenate(parts)
    typ = _arrow_type(ft)
    if list(ft["shape"]) == [1]:
        return pa.array(arr.reshape(-1), type=typ)
    flat = pa.array(arr.reshape(-1), type=typ.value_type)
    return pa.FixedSizeListArray.from_arrays(flat, ft["shape"][0])


def _write_episodes(path: Path, rows: list[dict[str, Any]]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    cols = {k: [r.get(k) for r in rows] for k in rows[0]}
    arrays = {k: pa.array(v, pa.bool_() if k == "success" else None) for k, v in cols.items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(arrays), path, compression="snappy")


# ---------------------------------------------------------------------------- import


def _load_json(path: Path) -> Any:
    if not path.is_file():
        raise DatasetError(
            "not a LeRobot dataset: the file is missing (a LeRobot v3.0 dataset has "
            "meta/info.json, meta/tasks.parquet, meta/episodes/, data/)",
            path=path,
        )
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DatasetError(f"cannot read JSON: {e}", path=path) from None


def _read_table(path: Path) -> Any:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return pq.read_table(path)
    except (OSError, pa.ArrowException) as e:
        raise DatasetError(f"cannot read Parquet: {e}", path=path) from None


def _parquet_files(root: Path, sub: str) -> list[Path]:
    files = sorted((root / sub).glob("chunk-*/file-*.parquet"))
    if not files:
        raise DatasetError(f"no {sub}/chunk-*/file-*.parquet files", path=root / sub)
    return files


def _check_info(root: Path) -> dict[str, Any]:
    path = root / INFO_PATH
    info = _load_json(path)
    if not isinstance(info, dict):
        raise DatasetError("expected a JSON object", path=path)
    version = info.get("codebase_version")
    if version != CODEBASE_VERSION:
        raise DatasetError(
            f"codebase_version is {version!r}, expected {CODEBASE_VERSION!r} (convert older "
            "datasets with LeRobot's lerobot/datasets/v30/convert_dataset_v21_to_v30.py)",
            path=path,
            key="codebase_version",
        )
    fps = info.get("fps")
    if isinstance(fps, bool) or not isinstance(fps, (int, float)) or not fps > 0:
        raise DatasetError(f"fps must be a positive number, got {fps!r}", path=path, key="fps")
    feats = info.get("features")
    if not isinstance(feats, dict) or not feats:
        raise DatasetError("features must be a non-empty mapping", path=path, key="features")
    for name, ft in feats.items():
        if (
            not isinstance(ft, dict)
            or not isinstance(ft.get("dtype"), str)
            or not isinstance(ft.get("shape"), list)
            or not all(isinstance(s, int) and s >= 1 for s in ft["shape"])
        ):
            raise DatasetError(
                f"feature must have a dtype string and a shape list of positive integers, "
                f"got {ft!r}",
                path=path,
                key=f"features.{name}",
            )
        if ft["dtype"] in ("video", "image") and len(ft["shape"]) != 3:
            raise DatasetError(
                f"a {ft['dtype']} feature needs shape [height, width, channels], got "
                f"{ft['shape']}",
                path=path,
                key=f"features.{name}",
            )
    for k in ("timestamp", "episode_index", "frame_index"):
        if k not in feats:
            raise DatasetError(f"feature {k!r} is missing", path=path, key="features")
    return info


def _read_side(root: Path, feats: dict[str, Any], warnings: list[str]) -> dict[str, Any] | None:
    path = root / SIDE_PATH
    if not path.exists():
        return None
    try:
        side = json.loads(path.read_text())
        spec = DatasetSpec.from_dict(side["spec"])
        state_keys = [(str(k), int(d)) for k, d in side.get("state_keys", [])]
    except (OSError, ValueError, KeyError, TypeError, SpecError) as e:
        warnings.append(f"{path}: ignored ({e}); the spec is inferred from meta/info.json")
        return None
    # The side file must describe these features (a LeRobot tool may have edited the data).
    problems = []
    total = sum(d for _, d in state_keys)
    if state_keys and feats.get(STATE, {}).get("shape") != [total]:
        problems.append(f"{STATE} does not hold {total} values")
    for k in spec.image_keys:
        h, w, _ = spec.observations[k].shape
        ft = feats.get(IMAGES_PREFIX + k)
        if ft is None or list(ft["shape"][:2]) != [h, w]:
            problems.append(f"camera {k!r} is not {IMAGES_PREFIX + k} of {h}x{w}")
    if problems:
        warnings.append(
            f"{path}: ignored, it does not match meta/info.json ({'; '.join(problems)}); the "
            "spec is inferred from meta/info.json"
        )
        return None
    return {"spec": spec, "state_keys": state_keys}


def _import_plan(
    root: Path, info: dict[str, Any], side: dict[str, Any] | None, action_max: int | None
) -> tuple[DatasetSpec, dict[str, Any], list[dict[str, str]]]:
    """Our spec for the LeRobot features, how to fill each key, and what has no counterpart.

    Returns:
        ``spec``; ``plan`` with ``vectors`` (``{key: (feature, start, stop)}``: the slice of
        a LeRobot vector feature that fills each vector observation), ``images``
        (``{key: (feature, dtype)}``, dtype ``video`` or ``image``) and ``extras``
        (``{key: feature}``); ``unmapped`` as ``[{"feature", "action"}]``.
    """
    feats = info["features"]
    path = root / INFO_PATH
    old = side["spec"] if side else None
    obs: dict[str, FeatureSpec] = {}
    extras: dict[str, FeatureSpec] = {}
    vec_src: dict[str, tuple[str, int, int]] = {}
    img_src: dict[str, tuple[str, str]] = {}
    extra_src: dict[str, str] = {}
    unmapped: list[dict[str, str]] = []
    for name, ft in feats.items():
        dtype, shape = ft["dtype"], list(ft["shape"])
        names = ft.get("names")
        if name in STRUCTURAL or name == ORIGINAL_TIMESTAMP or name == "action":
            continue
        numeric = dtype in ("float32", "float64", "int64", "int32", "int16", "int8", "uint8")
        numeric = numeric or dtype in ("bool", "float16")
        vec_names = (
            tuple(str(n) for n in names)
            if isinstance(names, list) and len(names) == (shape[0] if shape else -1)
            else None
        )
        if name.startswith(IMAGES_PREFIX) and dtype in ("video", "image"):
            key = name[len(IMAGES_PREFIX) :]
            if shape[2] not in (1, 3):
                unmapped.append(
                    {"feature": name, "action": f"dropped: {shape[2]} channels (1 or 3 only)"}
                )
                continue
            c = shape[2]
            codec: ImageCodec = "jpeg"
            quality = 90
            if old is not None and key in old.observations:
                f = old.observations[key]
                c, codec, quality = f.shape[2], f.codec, f.quality
            obs[key] = FeatureSpec("image", (shape[0], shape[1], c), codec=codec, quality=quality)
            img_src[key] = (name, dtype)
        elif name == STATE and numeric and len(shape) == 1:
            if side and side["state_keys"]:
                assert old is not None  # side["spec"], which _read_side always sets
                start = 0
                for key, d in side["state_keys"]:
                    f = old.observations[key]
                    obs[key] = FeatureSpec("vector", (d,), names=f.names, units=f.units)
                    vec_src[key] = (name, start, start + d)
                    start += d
            else:
                obs["state"] = FeatureSpec("vector", (shape[0],), names=vec_names)
                vec_src["state"] = (name, 0, shape[0])
        elif name.startswith("observation.") and numeric and len(shape) == 1:
            key = name[len("observation.") :]
            obs[key] = FeatureSpec("vector", (shape[0],), names=vec_names)
            vec_src[key] = (name, 0, shape[0])
        elif numeric and len(shape) == 1:
            key = name[len(EXTRAS_PREFIX) :] if name.startswith(EXTRAS_PREFIX) else name
            f = old.extras.get(key) if old is not None else None
            f = f if f is not None and f.shape == (shape[0],) else None
            extras[key] = FeatureSpec(
                "vector",
                (shape[0],),
                names=f.names if f else vec_names,
                units=f.units if f else None,
            )
            extra_src[key] = name
            if not name.startswith(EXTRAS_PREFIX):
                unmapped.append({"feature": name, "action": f"imported as extra {key!r}"})
        else:
            unmapped.append(
                {
                    "feature": name,
                    "action": f"dropped: {dtype} of shape {shape} has no counterpart "
                    "(observations are vectors or images, extras are vectors)",
                }
            )
    if "action" not in feats:
        raise DatasetError("feature 'action' is missing", path=path, key="features.action")
    aft = feats["action"]
    if len(aft["shape"]) != 1:
        raise DatasetError(
            f"action must have shape [D], got {aft['shape']}", path=path, key="features.action"
        )
    if aft["dtype"].startswith("int") and aft["shape"] == [1]:
        if old is not None and old.action.kind == "discrete":
            action = old.action
        else:
            classes = max(2, (action_max or 0) + 1)
            action = ActionSpec("discrete", num_classes=classes)
            unmapped.append(
                {
                    "feature": "action",
                    "action": f"integer action read as discrete with {classes} classes "
                    "(the largest class + 1)",
                }
            )
    elif aft["dtype"] in ("float32", "float64", "float16"):
        d = aft["shape"][0]
        if old is not None and old.action.kind == "continuous" and old.action.dim == d:
            action = old.action
        else:
            names = aft.get("names")
            ok = isinstance(names, list) and len(names) == d
            action = ActionSpec("continuous", dim=d, names=tuple(map(str, names)) if ok else None)
    else:
        raise DatasetError(
            f"action dtype {aft['dtype']!r} is neither a float vector nor one integer class",
            path=path,
            key="features.action",
        )
    if not obs:
        raise DatasetError(
            "no observation feature (observation.state, observation.<name> or "
            "observation.images.<camera>) to import",
            path=path,
            key="features",
        )
    clash = set(obs) & set(extras)
    for key in clash:  # an extra named like an observation key: keep it under its LeRobot name
        name = extra_src.pop(key)
        extras[name] = extras.pop(key)
        extra_src[name] = name
    if old is not None:
        # Our key order (vectors and cameras interleave in a spec), new keys last.
        rank = {k: i for i, k in enumerate(old.observations)}
        obs = dict(sorted(obs.items(), key=lambda kv: rank.get(kv[0], len(rank))))
        metadata = dict(old.metadata)
    else:
        metadata = {"lerobot": {"robot_type": info.get("robot_type")}}
    try:
        spec = DatasetSpec(
            observations=obs,
            action=action,
            control_rate_hz=float(info["fps"]),
            extras=extras,
            metadata=metadata,
        )
    except SpecError as e:
        raise DatasetError(f"cannot map the features to a dataset spec: {e}", path=path) from None
    plan = {"vectors": vec_src, "images": img_src, "extras": extra_src}
    return spec, plan, unmapped


def _column_array(table: Any, name: str, ft: dict[str, Any], path: Path) -> np.ndarray:
    """A data column as ``(N, D)`` numpy, checked against the feature's shape."""
    import pyarrow as pa

    if name not in table.column_names:
        raise DatasetError(f"column {name!r} of meta/info.json is missing", path=path, key=name)
    col = table.column(name).combine_chunks()
    d = int(ft["shape"][0])
    if (
        pa.types.is_list(col.type)
        or pa.types.is_fixed_size_list(col.type)
        or (pa.types.is_large_list(col.type))
    ):
        lengths = col.value_lengths().to_numpy(zero_copy_only=False)
        if col.null_count or not np.all(lengths == d):
            bad = sorted(set(lengths.tolist()) - {d})
            raise DatasetError(
                f"feature shape mismatch: meta/info.json says [{d}], the column holds "
                f"{bad or 'null'} values per row",
                path=path,
                key=name,
            )
        return col.flatten().to_numpy(zero_copy_only=False).reshape(len(col), d)
    if d != 1:
        raise DatasetError(
            f"feature shape mismatch: meta/info.json says [{d}], the column holds one value "
            "per row",
            path=path,
            key=name,
        )
    if col.null_count:
        raise DatasetError("column has null values", path=path, key=name)
    return col.to_numpy(zero_copy_only=False).reshape(len(col), 1)


def _decode_video(
    path: Path, start: float, stop: float, n: int, fps: float, shape: tuple[int, ...], key: str
) -> np.ndarray:
    """The ``n`` frames of ``[start, stop)`` seconds of a video, ``(n, H, W, 3)`` uint8."""
    import av

    if not path.is_file():
        raise DatasetError("video file is missing", path=path, key=key)
    frames: dict[int, np.ndarray] = {}
    try:
        with av.open(str(path)) as f:
            s = f.streams.video[0]
            if start > 0:
                f.seek(int(start / s.time_base), stream=s, backward=True, any_frame=False)
            for fr in f.decode(s):
                if fr.time is None:
                    continue
                i = round((fr.time - start) * fps)
                if i >= n:
                    break
                if i >= 0 and abs(fr.time - (start + i / fps)) < 0.5 / fps:
                    frames[i] = fr.to_ndarray(format="rgb24")
    except av.FFmpegError as e:
        raise DatasetError(f"cannot decode video: {e}", path=path, key=key) from None
    if len(frames) != n:
        raise DatasetError(
            f"expected {n} frames between {start:.4f} s and {stop:.4f} s, decoded {len(frames)}",
            path=path,
            key=key,
        )
    out = np.stack([frames[i] for i in range(n)])
    if out.shape[1:3] != tuple(shape[:2]):
        raise DatasetError(
            f"frames are {out.shape[1]}x{out.shape[2]}, meta/info.json says {shape[0]}x{shape[1]}",
            path=path,
            key=key,
        )
    return out


def _decode_png_column(values: list[Any], path: Path, key: str) -> np.ndarray:
    import cv2

    out = []
    for v in values:
        raw = v.get("bytes") if isinstance(v, dict) else None
        img = None if raw is None else cv2.imdecode(np.frombuffer(raw, np.uint8), cv2.IMREAD_COLOR)
        if img is None:
            raise DatasetError("an image cell holds no decodable image bytes", path=path, key=key)
        out.append(cv2.cvtColor(img, cv2.COLOR_BGR2RGB))
    return np.stack(out)


def import_lerobot(src: str | Path, out: str | Path) -> dict[str, Any]:
    """Write the LeRobot v3.0 dataset at ``src`` as our dataset at ``out``.

    The tabular data (with image features stored in it) is read into memory; video frames
    are decoded one episode at a time.

    Args:
        src: LeRobot dataset directory (``meta/info.json`` ...).
        out: Our dataset directory; must not exist or be empty.

    Returns:
        ``{"out", "episodes", "steps", "spec", "mapping", "unmapped", "warnings"}``:
        ``mapping`` names the LeRobot feature behind each of our keys, ``unmapped`` every
        LeRobot feature without a direct counterpart and what the import did with it.

    Raises:
        DatasetError: naming the file and key of anything malformed.
        ConfigError: an existing non-empty ``out``.
    """
    import pyarrow as pa

    from il_core.data import DatasetWriter

    root = Path(src)
    info = _check_info(root)
    feats = {k: dict(v) for k, v in info["features"].items()}
    fps = float(info["fps"])
    warnings: list[str] = []
    side = _read_side(root, feats, warnings)
    ep_tables = [_read_table(p) for p in _parquet_files(root, EPISODES_DIR)]
    episodes = pa.concat_tables(
        [t.select([c for c in t.column_names if not c.startswith("stats/")]) for t in ep_tables],
        promote_options="permissive",
    ).to_pylist()
    ep_columns = set().union(*(t.column_names for t in ep_tables))
    required = {"episode_index", "length"}
    for name, ft in feats.items():
        if ft["dtype"] == "video":
            required |= {f"videos/{name}/{c}" for c in ("chunk_index", "file_index")}
            required.add(f"videos/{name}/from_timestamp")
    missing = sorted(required - ep_columns)
    if missing:
        raise DatasetError(f"episode tables lack the columns {missing}", path=root / EPISODES_DIR)
    if any(feats[n]["dtype"] == "video" for n in feats) and not info.get("video_path"):
        raise DatasetError("video features but no video_path", path=root / INFO_PATH)
    episodes.sort(key=lambda r: r["episode_index"])
    tasks = _read_tasks(root)
    data_files = _parquet_files(root, "data")
    # One pass over the data files for the integer action's classes (when needed).
    tables = [(p, _read_table(p)) for p in data_files]
    action_max = None
    if feats.get("action", {}).get("dtype", "").startswith("int"):
        vals = np.concatenate([_column_array(t, "action", feats["action"], p) for p, t in tables])
        action_max = int(vals.max()) if vals.size else 0
        if vals.size and int(vals.min()) < 0:
            raise DatasetError(
                "integer action has negative classes", path=data_files[0], key="action"
            )
    spec, plan, unmapped = _import_plan(root, info, side, action_max)
    for u in unmapped:
        warnings.append(f"feature {u['feature']!r}: {u['action']}")
    for msg in warnings:
        logger.warning("%s: %s", root, msg)

    # Per-step columns of every data file, by episode.
    by_episode: dict[int, dict[str, np.ndarray]] = {}
    needed = ["episode_index", "frame_index", "timestamp", "action"]
    needed += sorted({name for name, *_ in plan["vectors"].values()})
    needed += list(plan["extras"].values())
    if ORIGINAL_TIMESTAMP in feats:
        needed.append(ORIGINAL_TIMESTAMP)
    if "task_index" in feats:
        needed.append("task_index")
    image_cols = [k for k, (name, dtype) in plan["images"].items() if dtype == "image"]
    for p, t in tables:
        cols = {n: _column_array(t, n, feats[n], p) for n in needed}
        for k in image_cols:
            name = plan["images"][k][0]
            if name not in t.column_names:
                raise DatasetError(f"column {name!r} is missing", path=p, key=name)
            cols[name] = np.arange(len(t)).reshape(-1, 1)
        ep_idx = cols["episode_index"][:, 0]
        for e in np.unique(ep_idx):
            sel = ep_idx == e
            part = {n: v[sel] for n, v in cols.items()}
            for k in image_cols:
                name = plan["images"][k][0]
                rows = part[name][:, 0].tolist()
                part[name] = _decode_png_column(t.column(name).take(rows).to_pylist(), p, name)
            prev = by_episode.setdefault(int(e), {})
            for col, v in part.items():
                prev[col] = np.concatenate([prev[col], v]) if col in prev else v
    known = {int(r["episode_index"]) for r in episodes}
    extra_eps = sorted(set(by_episode) - known)
    if extra_eps:
        raise DatasetError(
            f"data has episodes {extra_eps[:5]} that meta/episodes does not list",
            path=root / "data",
            key="episode_index",
        )

    out = Path(out)
    steps = 0
    with _staged_output(out) as tmp:
        with DatasetWriter(tmp, spec, flush_every=1000) as w:
            for r in episodes:
                e = int(r["episode_index"])
                found = by_episode.get(e)
                n = int(r["length"])
                where = root / EPISODES_DIR
                if found is None or len(found["frame_index"]) != n:
                    got = 0 if found is None else len(found["frame_index"])
                    raise DatasetError(
                        f"episode {e}: meta/episodes says {n} frames, data/ holds {got}",
                        path=where,
                        key="length",
                    )
                order = np.argsort(found["frame_index"][:, 0], kind="stable")
                cols = {k: v[order] for k, v in found.items()}
                images = {}
                for key, (name, dtype) in plan["images"].items():
                    if dtype == "image":
                        frames = cols[name]
                    else:
                        vpath = root / info["video_path"].format(
                            video_key=name,
                            chunk_index=int(r[f"videos/{name}/chunk_index"]),
                            file_index=int(r[f"videos/{name}/file_index"]),
                        )
                        start = float(r[f"videos/{name}/from_timestamp"])
                        frames = _decode_video(
                            vpath, start, start + n / fps, n, fps, feats[name]["shape"], name
                        )
                    if spec.observations[key].shape[2] == 1:
                        frames = frames.mean(axis=-1, keepdims=True).round().astype(np.uint8)
                    images[key] = frames
                ts = (
                    cols[ORIGINAL_TIMESTAMP][:, 0]
                    if ORIGINAL_TIMESTAMP in cols
                    else cols["timestamp"][:, 0].astype(np.float64)
                )
                meta = _episode_metadata(r, cols.get("task_index"), tasks, warnings)
                w.start_episode(meta)
                for i in range(n):
                    ob = {k: v[i] for k, v in images.items()}
                    for key, (name, a, b) in plan["vectors"].items():
                        ob[key] = cols[name][i, a:b]
                    act = cols["action"][i]
                    act = np.int64(act[0]) if spec.action.kind == "discrete" else act
                    ex = {
                        k: cols[name][i].astype(np.float32) for k, name in plan["extras"].items()
                    }
                    w.add_step(ob, act, float(ts[i]), ex)
                success = r.get("success")
                w.end_episode(success=None if success is None else bool(success))
                steps += n
    mapping = {k: v[0] for k, v in plan["vectors"].items()}
    mapping.update({k: v[0] for k, v in plan["images"].items()})
    mapping.update({f"extras.{k}": v for k, v in plan["extras"].items()})
    mapping["action"] = "action"
    return {
        "out": str(out),
        "episodes": len(episodes),
        "steps": steps,
        "spec": spec.to_dict(),
        "mapping": mapping,
        "unmapped": unmapped,
        "warnings": warnings,
    }


def _read_tasks(root: Path) -> list[str]:
    """Task strings by task_index (``meta/tasks.parquet``: a pandas index or a column)."""
    path = root / TASKS_PATH
    if not path.is_file():
        return []
    t = _read_table(path)
    name = next(
        (c for c in ("task", "__index_level_0__") if c in t.column_names),
        None,
    )
    if name is None or "task_index" not in t.column_names:
        return []
    idx = t.column("task_index").to_pylist()
    names = t.column(name).to_pylist()
    out = [""] * (max(idx) + 1 if idx else 0)
    for i, s in zip(idx, names, strict=True):
        out[int(i)] = str(s)
    return out


def _episode_metadata(
    row: dict[str, Any], task_index: np.ndarray | None, tasks: list[str], warnings: list[str]
) -> dict:
    """Our episode metadata: the exported ``metadata`` JSON, and the LeRobot tasks."""
    meta: dict[str, Any] = {}
    raw = row.get("metadata")
    if isinstance(raw, str):
        try:
            loaded = json.loads(raw)
            if isinstance(loaded, dict):
                meta.update(loaded)
        except json.JSONDecodeError:
            warnings.append(f"episode {row['episode_index']}: metadata is not JSON; dropped")
    e = int(row["episode_index"])
    used = [] if task_index is None else sorted({int(i) for i in task_index[:, 0]})
    names = list(row.get("tasks") or [tasks[i] for i in used if i < len(tasks)])
    if len(used) > 1:
        warnings.append(
            f"episode {e}: {len(used)} tasks; which step had which (task_index) is dropped, "
            "the episode's metadata lerobot.tasks lists them"
        )
    meta["lerobot"] = {"episode_index": e, "tasks": names}
    return meta
