"""Reading a dataset larger than memory: reader RSS and window sampling vs a BC training step.

Run from the repository root::

    PYTHONPATH=. python bench/bench_large_dataset.py [--steps 1000000] [--root /tmp/il_large]

Generates (once; reused if ``ROOT`` exists) a synthetic dataset of ``--steps`` steps in
episodes of 1000, with a 6-d state, a 2-d action and two 96x96 cameras stored as JPEG q90
(``bench/_scenes.py``: a panned multi-scale texture with moving objects and sensor noise,
about 3.6 kB per frame, so 1M steps hold about 7 GB of frames). Frames come from a pool of
2048 encoded frames per camera that each episode walks through from a random start, and the
episode files are written directly in the dataset format (``il_core.data.format``): the
writer's JPEG encoding would take most of an hour on 2 cores, and the reader sees the same
files. A smaller in-memory dataset (``--small-steps``, decoded once into memory) is
generated the same way for the baseline path.

Each reader is then measured in a fresh process (so its RSS is its own): RSS after imports,
after opening, and the peak while sampling training windows of batch ``--batch``
(``window(idx, 1, 1)``, uniformly random anchors, as ``il-core train`` samples them; one
thread); then the training step of the shipped image ``bc`` policy at its default sizes
(CNN 32-32-64, strides 2-2-1, spatial softmax, MLP 256-256) on the same batch size with
torch on 1 and on 2 threads (the faster is the baseline). Training is data-bound when
sampling gives fewer samples/s than the step consumes. The large dataset's sampling is
timed with its files in the page cache (read once first, as after an epoch; 7.4 GB fits
this machine's memory), and ``cold`` repeats it after dropping the image files from the
page cache (``posix_fadvise(DONTNEED)`` on our own files only), so frames come from disk.
Rates are medians over ``--repeats``. Prints one JSON line per measurement.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

EPISODE_STEPS = 1000
SIZE = 96
CAMERAS = ("cam0", "cam1")
POOL = 2048


def emit(**fields: object) -> None:
    """Print one result as a JSON line."""
    print(json.dumps(fields), flush=True)


def memory() -> dict[str, float]:
    """VmRSS and VmHWM (peak RSS) of this process, in MiB."""
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(("VmRSS:", "VmHWM:")):
                name, kb = line.split()[:2]
                out[name[:-1]] = round(int(kb) / 1024, 1)
    return out


def spec():
    """The benchmark dataset spec: 6-d state, 2-d action, two 96x96 JPEG q90 cameras."""
    from il_core.spec import ActionSpec, DatasetSpec, FeatureSpec

    obs = {"state": FeatureSpec("vector", (6,))}
    obs.update(
        {c: FeatureSpec("image", (SIZE, SIZE, 3), codec="jpeg", quality=90) for c in CAMERAS}
    )
    return DatasetSpec(obs, ActionSpec("continuous", dim=2), 30.0)


def generate(root: Path, steps: int) -> None:
    """Write ``steps`` steps (episodes of 1000) directly in the dataset format."""
    from _scenes import SceneCamera

    from il_core.data._fs import dumps_json, npz_bytes
    from il_core.data.codec import encode_image
    from il_core.data.format import (
        EPISODE_JSON,
        EPISODES,
        FORMAT_VERSION,
        STEPS,
        create_meta,
        episode_dirname,
        images_filename,
        now_iso,
        timing,
    )

    t0 = time.perf_counter()
    s = spec()
    tmp = root.with_name(root.name + ".partial")
    (tmp / EPISODES).mkdir(parents=True, exist_ok=True)
    create_meta(tmp, s, fsync=False)
    pools = []
    for c, key in enumerate(CAMERAS):
        cam = SceneCamera(SIZE, SIZE, seed=c)
        frames = [encode_image(cam.frame(t), s.observations[key]).tobytes() for t in range(POOL)]
        sizes = np.array([len(f) for f in frames], dtype=np.int64)
        pools.append((frames, sizes))
    rng = np.random.default_rng(0)
    n_eps = -(-steps // EPISODE_STEPS)
    for e in range(n_eps):
        n = min(EPISODE_STEPS, steps - e * EPISODE_STEPS)
        d = tmp / EPISODES / episode_dirname(e)
        d.mkdir(exist_ok=True)
        ts = np.arange(n, dtype=np.float64) / 30.0
        phase = rng.uniform(0, 2 * np.pi, 8)
        tt = np.arange(n)[:, None] / 50.0
        cols = {
            "timestamp": ts,
            "action": np.sin(tt + phase[:2]).astype(np.float32),
            "obs.state": np.cos(tt * 0.7 + phase[2:]).astype(np.float32),
        }
        files = {}
        (d / STEPS).write_bytes(npz_bytes(cols))
        files[STEPS] = (d / STEPS).stat().st_size
        for (frames, sizes), key in zip(pools, CAMERAS, strict=True):
            ids = (int(rng.integers(POOL)) + np.arange(n)) % POOL
            offsets = np.zeros(n + 1, dtype=np.int64)
            np.cumsum(sizes[ids], out=offsets[1:])
            data = np.frombuffer(b"".join(frames[i] for i in ids), dtype=np.uint8)
            name = images_filename(key)
            (d / name).write_bytes(npz_bytes({"offsets": offsets, "data": data}))
            files[name] = (d / name).stat().st_size
        info = {
            "format_version": FORMAT_VERSION,
            "length": n,
            **timing(ts),
            "success": True,
            "recovered": False,
            "start_time": 0.0,
            "committed": now_iso(),
            "files": files,
            "metadata": {"synthetic": True},
        }
        (d / EPISODE_JSON).write_bytes(dumps_json(info))
    os.rename(tmp, root)
    size = sum(f.stat().st_size for f in root.rglob("*") if f.is_file())
    emit(
        bench="generate",
        root=str(root),
        steps=steps,
        episodes=n_eps,
        disk_gb=round(size / 1e9, 2),
        seconds=round(time.perf_counter() - t0, 1),
    )


def drop_page_cache(root: Path) -> None:
    """Evict this dataset's image files (only ours) from the page cache."""
    for p in root.glob("episodes/*/images.*.npz"):
        fd = os.open(p, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def measure(root: Path, label: str, batch: int, repeats: int, cache: bool | None) -> None:
    """One reader in this (fresh) process: memory, sampling and the training step."""
    import torch

    from il_core.data import EpisodeDataset

    torch.set_num_threads(1)
    mem0 = memory()
    t0 = time.perf_counter()
    ds = EpisodeDataset(root, cache_images=cache)
    open_s = time.perf_counter() - t0
    mem1 = memory()
    emit(
        bench="open",
        dataset=label,
        steps=len(ds),
        episodes=ds.num_episodes,
        images_cached=ds.images_cached,
        seconds=round(open_s, 2),
        rss_after_imports_mib=mem0["VmRSS"],
        rss_after_open_mib=mem1["VmRSS"],
        peak_rss_mib=mem1["VmHWM"],
    )
    rng = np.random.default_rng(0)
    n_batches = 30 if not ds.images_cached else 300

    def sample_rate(n: int) -> tuple[float, float]:
        t = time.perf_counter()
        peak = 0.0
        for _ in range(n):
            ds.window(rng.integers(0, len(ds), batch), history=1, horizon=1)
            peak = max(peak, memory()["VmRSS"])
        return n * batch / (time.perf_counter() - t), peak

    if not ds.images_cached:
        # Warm page cache: read every image file once (os.read into a reused buffer, so
        # this process's RSS does not grow), as after a first epoch on a machine whose
        # memory holds the files; "cold" below drops them again.
        t = time.perf_counter()
        buf = bytearray(1 << 24)
        for p in root.glob("episodes/*/images.*.npz"):
            with open(p, "rb", buffering=0) as f:
                while f.readinto(buf):
                    pass
        emit(
            bench="page_cache_warm_read", dataset=label, seconds=round(time.perf_counter() - t, 1)
        )
    sample_rate(3)  # warm-up (decoders, allocator)
    runs = [sample_rate(n_batches) for _ in range(repeats)]
    rate = statistics.median(r for r, _ in runs)
    emit(
        bench="sample_windows",
        dataset=label,
        batch=batch,
        history=1,
        horizon=1,
        threads=1,
        samples_per_s=round(rate),
        rss_peak_while_sampling_mib=max(p for _, p in runs),
        vm_hwm_mib=memory()["VmHWM"],
    )
    if not ds.images_cached:
        cold = []
        for _ in range(repeats):
            drop_page_cache(root)
            cold.append(sample_rate(10)[0])
        emit(
            bench="sample_windows_cold_page_cache",
            dataset=label,
            batch=batch,
            samples_per_s=round(statistics.median(cold)),
        )
    # The training step of the shipped image BC policy at its default sizes, on 1 and 2
    # torch threads (on a loaded 2-core machine 2 threads can be slower); the faster one
    # is the baseline, the stricter test of "not data-bound".
    from _bc_step import bc_step_seconds

    step_ms = {k: v * 1e3 for k, v in bc_step_seconds(ds, batch, repeats).items()}
    step_s = min(step_ms.values()) / 1e3
    emit(
        bench="bc_train_step",
        dataset=label,
        policy="bc defaults: CNN 32-32-64 strides 2-2-1 spatial softmax, MLP 256-256",
        batch=batch,
        step_ms_1_thread=round(step_ms[1], 1),
        step_ms_2_threads=round(step_ms[2], 1),
        train_samples_per_s=round(batch / step_s),
        sampling_over_training=round(rate * step_s / batch, 2),
        data_bound=bool(rate < batch / step_s),
        data_share_if_sequential=round((batch / rate) / (batch / rate + step_s), 3),
        vm_hwm_mib=memory()["VmHWM"],
        loadavg_1m=os.getloadavg()[0],
    )


def main() -> None:
    """Generate the datasets if needed, then measure each reader in its own process."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=1_000_000)
    ap.add_argument("--small-steps", type=int, default=10_000)
    ap.add_argument("--root", type=Path, default=Path("/tmp/il_large"))
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--measure", choices=["large", "small"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    large = args.root / f"jpeg96x2_{args.steps}"
    small = args.root / f"jpeg96x2_{args.small_steps}"
    if args.measure:
        root, cache = (large, None) if args.measure == "large" else (small, True)
        measure(root, f"{args.measure} ({root.name})", args.batch, args.repeats, cache)
        return
    emit(
        bench="environment",
        python=platform.python_version(),
        numpy=np.__version__,
        cpus=os.cpu_count(),
        loadavg_1m=os.getloadavg()[0],
    )
    args.root.mkdir(parents=True, exist_ok=True)
    for root, steps in ((large, args.steps), (small, args.small_steps)):
        if not root.exists():
            generate(root, steps)
    for which in ("large", "small"):
        subprocess.run(
            [sys.executable, __file__, "--measure", which, *sys.argv[1:]],
            check=True,
            env=dict(os.environ, OMP_NUM_THREADS="2"),
        )
    emit(bench="done", loadavg_1m=os.getloadavg()[0])


if __name__ == "__main__":
    main()
