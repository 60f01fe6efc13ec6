"""Camera storage per codec: bytes per frame, recording and decoding speed, training windows.

Run from the repository root::

    PYTHONPATH=. python bench/bench_video_storage.py [--repeats 5]

Frames: ``bench/_scenes.py``, a synthetic camera panning across a multi-scale texture with
sharp-edged patches, three moving discs and Gaussian sensor noise (sigma 2), at 96x96 and
640x480 (the lane simulator renders at most 256x256, so it cannot give 640x480 frames).
For each codec (JPEG q90, the default; H.264 and AV1 at their default CRF with keyframes
every ``gop`` frames) a dataset is recorded with :class:`DatasetWriter` (flush every 50
steps, no fsync): 96x96 with two cameras, 4 episodes of 300 steps; 640x480 with one camera,
2 episodes of 150 steps. Then:

- ``bytes_per_frame``: the images files' size over the frames, and the disk that 100 hours
  of three cameras at 30 Hz would take at that rate;
- ``record_frames_per_s``: frames the writer encodes (and stores) per second, one thread;
- ``decode_frames_per_s``: sequential decoding, loading the dataset into the decoded cache
  on one thread (file reads included);
- ``windows_per_s``: random training windows (``window(idx, k, 1)``, batch 64, anchors
  uniform over the dataset, one thread) with frames decoded per window, the path a dataset
  too large for memory takes (k = 1 and k = 2);
- ``mean_abs_error`` and ``psnr_db`` of the decoded frames against the source frames.

At 96x96 the same run times the training step of the shipped image ``bc`` policy on two
cameras (default sizes, batch 64, torch on 1 and 2 threads, the faster), the baseline that
the window rates are compared with: below it, training would be data-bound. An H.264
keyframe-interval sweep shows the size / random-access trade-off behind the default
``gop``. Medians over
``--repeats``; one JSON line per measurement.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _bc_step import bc_step_seconds
from _scenes import SceneCamera

from il_core.constants import OBS
from il_core.data import DatasetWriter, EpisodeDataset
from il_core.spec import ActionSpec, DatasetSpec, FeatureSpec

BATCH = 64
HOURS, CAMS_100H, HZ = 100, 3, 30


def emit(**fields: object) -> None:
    """Print one result as a JSON line."""
    print(json.dumps(fields), flush=True)


def record(root: Path, feature: FeatureSpec, cams: int, episodes: int, steps: int, frames):
    """Write the dataset; returns (seconds, source frames per camera in global order)."""
    keys = [f"cam{c}" for c in range(cams)]
    spec = DatasetSpec(
        {"state": FeatureSpec("vector", (2,)), **{k: feature for k in keys}},
        ActionSpec("continuous", dim=2),
        float(HZ),
    )
    t0 = time.perf_counter()
    with DatasetWriter(root, spec, flush_every=50, fsync=False) as w:
        for e in range(episodes):
            w.start_episode()
            for t in range(steps):
                n = e * steps + t
                obs = {"state": np.zeros(2, np.float32)}
                obs.update({k: frames[c][n] for c, k in enumerate(keys)})
                w.add_step(obs, np.zeros(2, np.float32), t / HZ)
            w.end_episode()
    return time.perf_counter() - t0


def measure(tmp: Path, name: str, feature: FeatureSpec, size, cams, episodes, steps, repeats):
    """Record, then time decoding and windows; returns the emitted fields."""
    h, w = size
    n = episodes * steps
    frames = [
        np.stack([SceneCamera(h, w, seed=c).frame(t) for t in range(n)]) for c in range(cams)
    ]
    root = tmp / name
    rec_s = record(root, feature, cams, episodes, steps, frames)
    files = list(root.glob("episodes/*/images.*.npz"))
    bpf = sum(f.stat().st_size for f in files) / (n * cams)
    dec = []
    for _ in range(repeats):
        t = time.perf_counter()
        cached = EpisodeDataset(root, cache_images=True, num_threads=1)
        dec.append(n * cams / (time.perf_counter() - t))
    got = cached.window(np.arange(n))[OBS]
    err = np.concatenate(
        [(got[f"cam{c}"][:, 0].astype(np.int16) - frames[c]).ravel() for c in range(cams)]
    ).astype(np.float64)
    mse = float(np.mean(err**2))
    lazy = EpisodeDataset(root, cache_images=False)
    rng = np.random.default_rng(1)
    rates = {}
    for k in (1, 2):
        runs = []
        lazy.window(rng.integers(0, n, BATCH), k, 1)  # warm-up
        for _ in range(repeats):
            t = time.perf_counter()
            for _ in range(5):
                lazy.window(rng.integers(0, n, BATCH), k, 1)
            runs.append(5 * BATCH / (time.perf_counter() - t))
        rates[k] = statistics.median(runs)
    lazy.close()
    fields = dict(
        bench="video_storage",
        size=f"{w}x{h}",
        storage=name,
        cameras=cams,
        frames=n * cams,
        bytes_per_frame=round(bpf),
        disk_100h_3cams_30hz_gb=round(bpf * HOURS * 3600 * HZ * CAMS_100H / 1e9, 1),
        record_frames_per_s=round(n * cams / rec_s),
        decode_frames_per_s=round(statistics.median(dec)),
        windows_per_s_k1=round(rates[1]),
        windows_per_s_k2=round(rates[2]),
        mean_abs_error=round(float(np.mean(np.abs(err))), 2),
        psnr_db=round(10 * math.log10(255**2 / mse), 1) if mse > 0 else None,
    )
    emit(**fields)
    return fields, cached


def main() -> None:
    """Run every case and print JSON lines."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    import av

    emit(
        bench="environment",
        python=platform.python_version(),
        pyav=av.__version__,
        cpus=os.cpu_count(),
        loadavg_1m=os.getloadavg()[0],
    )
    storages = [
        ("jpeg q90", dict(codec="jpeg", quality=90)),
        ("h264 crf23 gop10", dict(codec="h264")),
        ("av1 crf35 gop10", dict(codec="av1")),
    ]
    with tempfile.TemporaryDirectory(prefix="bench_video_") as d:
        tmp = Path(d)
        rates96 = {}
        for name, kw in storages:
            f = FeatureSpec("image", (96, 96, 3), **kw)  # type: ignore[arg-type]
            fields, cached = measure(tmp, f"96_{name}", f, (96, 96), 2, 4, 300, args.repeats)
            rates96[name] = fields["windows_per_s_k1"]
        step = min(bc_step_seconds(cached, BATCH, args.repeats).values())
        emit(
            bench="bc_train_step_vs_windows",
            policy="bc defaults (CNN 32-32-64 strides 2-2-1, spatial softmax, MLP 256-256)",
            cameras="2 x 96x96",
            batch=BATCH,
            torch_threads="1 or 2, the faster",
            step_ms=round(step * 1e3, 1),
            train_samples_per_s=round(BATCH / step),
            windows_over_training={k: round(v * step / BATCH, 1) for k, v in rates96.items()},
        )
        for gop in (1, 5, 30):
            f = FeatureSpec("image", (96, 96, 3), codec="h264", gop=gop)
            measure(tmp, f"96_h264 crf23 gop{gop}", f, (96, 96), 2, 4, 300, args.repeats)
        for name, kw in storages:
            f = FeatureSpec("image", (480, 640, 3), **kw)  # type: ignore[arg-type]
            measure(tmp, f"640_{name}", f, (480, 640), 1, 2, 150, max(3, args.repeats // 2))
    emit(bench="done", loadavg_1m=os.getloadavg()[0])


if __name__ == "__main__":
    main()
