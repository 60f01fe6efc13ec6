"""Look at an episode: every camera, observation, action and flag in Rerun (``il-core view``).

One recorded episode becomes a Rerun recording (``.rrd``) on two timelines: ``step`` (the
step index) and ``time`` (the episode's own timestamps, seconds from its first step), so
a camera frame, the joint states, the command and the intervention flags of one moment
line up. Entities:

- ``cameras/<key>``: each image observation (``(H, W, 3)`` RGB);
- ``observations/<key>``: each vector observation, one series per dimension;
- ``action``: the action (a discrete action as its index);
- ``extras/<key>``: per-step extras (``intervention``, ``has_expert_label``, ages...);
- ``episode``: a text log with the episode's length, rate and ``success`` label at its end.

The file opens in the Rerun viewer (``rerun FILE.rrd``, or ``--spawn``). ``rerun-sdk`` is an
optional dependency (``pip install rerun-sdk``, 0.23 or newer): a clear error says so when
it is missing.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

from il_core.config import ConfigError
from il_core.data import EpisodeDataset

#: The first rerun-sdk with the API used here (``set_time``, ``Scalars``).
_MIN_RERUN = (0, 23)


def _series(values: np.ndarray) -> list[float]:
    return [float(v) for v in np.atleast_1d(values)]


def view_episode(
    data: str | Path,
    episode: int = 0,
    out: str | Path | None = None,
    spawn: bool | None = None,
) -> dict[str, Any]:
    """Write episode ``episode`` of dataset ``data`` as a Rerun recording.

    Args:
        data: A dataset directory.
        episode: Episode index (negative counts from the end).
        out: The ``.rrd`` file (default ``<dataset name>_episode_<N>.rrd`` in the current
            folder).
        spawn: Open the Rerun viewer on it; ``None``: only where a display is available.

    Returns:
        ``rrd`` (the file), ``episode``, ``steps``, ``entities`` (the logged entity paths),
        ``spawned``.

    Raises:
        ConfigError: ``rerun-sdk`` is not installed, or ``episode`` is out of range.
    """
    if importlib.util.find_spec("rerun") is None:
        raise ConfigError("il-core view needs the Rerun SDK: pip install rerun-sdk")
    import rerun as rr

    version = tuple(int(x) for x in rr.__version__.split(".")[:2] if x.isdigit())
    if version < _MIN_RERUN:
        raise ConfigError(
            f"il-core view needs rerun-sdk >= {'.'.join(map(str, _MIN_RERUN))} "
            f"(set_time, Scalars), found {rr.__version__}: pip install -U rerun-sdk"
        )
    data = Path(data)
    ds = EpisodeDataset(data)
    n = ds.num_episodes
    if not -n <= episode < n:
        raise ConfigError(f"{data}: no episode {episode}; the dataset has {n} (0..{n - 1})")
    index = episode % n
    ep = ds.episode(index)
    out = Path(out) if out is not None else Path(f"{data.name}_episode_{index}.rrd")
    out.parent.mkdir(parents=True, exist_ok=True)

    rec = rr.RecordingStream(application_id="il_ros", recording_id=f"{data.name}/{index}")
    rec.save(str(out))
    t0 = float(ep.timestamps[0]) if len(ep) else 0.0
    images = {k: v for k, v in ep.observations.items() if v.ndim == 4}
    vectors = {k: v for k, v in ep.observations.items() if v.ndim != 4}
    entities = (
        [f"cameras/{k}" for k in images]
        + [f"observations/{k}" for k in vectors]
        + ["action"]
        + [f"extras/{k}" for k in ep.extras]
    )
    for t in range(len(ep)):
        rec.set_time("step", sequence=t)
        rec.set_time("time", duration=float(ep.timestamps[t]) - t0)
        for k, v in images.items():
            rec.log(f"cameras/{k}", rr.Image(v[t], color_model="RGB"))
        for k, v in vectors.items():
            rec.log(f"observations/{k}", rr.Scalars(_series(v[t])))
        rec.log("action", rr.Scalars(_series(ep.actions[t])))
        for k, v in ep.extras.items():
            rec.log(f"extras/{k}", rr.Scalars(_series(v[t])))
    info = ep.info
    rate = info.measured_rate_hz
    rate_text = f"{rate:.1f} Hz measured" if rate else "rate not measured"
    rec.log(
        "episode",
        rr.TextLog(f"{info.path.name}: {len(ep)} steps, {rate_text}, success={info.success}"),
    )
    rec.flush()
    rec.disconnect()
    entities.append("episode")

    if spawn is None:
        spawn = bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    if spawn:
        # The viewer ships in the rerun-sdk wheel; it runs on its own, this command returns.
        subprocess.Popen([sys.executable, "-m", "rerun", str(out)], start_new_session=True)
    return {
        "rrd": str(out),
        "episode": index,
        "steps": len(ep),
        "success": info.success,
        "entities": entities,
        "spawned": spawn,
    }
