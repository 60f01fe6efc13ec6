"""Benchmarks of the dataset layer: window sampling, image codecs, writer throughput.

Run from the repository root::

    PYTHONPATH=. python bench/bench_data.py [--repeats 7]

Prints one JSON object per line; timings are medians over ``--repeats`` repeats (each repeat
averages many calls). Datasets are written to a temporary directory and deleted afterwards.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
import timeit
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from il_core.data import DatasetWriter, EpisodeDataset
from il_core.data.codec import decode_image, encode_image
from il_core.spec import ActionSpec, DatasetSpec, FeatureSpec


def emit(**fields: object) -> None:
    """Print one result as a JSON line."""
    print(json.dumps(fields), flush=True)


def per_call_us(fn: Callable[[], object], number: int, repeats: int) -> float:
    """Median over repeats of the mean time per call, in microseconds."""
    fn()  # warm-up
    times = timeit.repeat(fn, number=number, repeat=repeats)
    return statistics.median(times) / number * 1e6


def camera_frame(rng: np.random.Generator, size: int) -> np.ndarray:
    """A camera-like RGB frame: smooth gradient background, a few objects, sensor noise.

    Pure noise would make JPEG and PNG look far worse than on real images; a flat image far
    better. This sits in between.
    """
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / size
    img = np.stack([80 + 100 * x, 90 + 60 * y, 120 + 50 * x * y], axis=-1)
    for _ in range(4):
        cx, cy = rng.integers(0, size, 2)
        r = int(rng.integers(size // 12, size // 5))
        color = tuple(int(c) for c in rng.integers(0, 256, 3))
        img = cv2.circle(np.ascontiguousarray(img), (int(cx), int(cy)), r, color, -1)
    img = img + rng.normal(0, 3, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def cartpole_spec() -> DatasetSpec:
    """4-d state, 2 discrete actions, 50 Hz (like gymnasium CartPole)."""
    return DatasetSpec(
        observations={"state": FeatureSpec("vector", (4,))},
        action=ActionSpec("discrete", num_classes=2),
        control_rate_hz=50.0,
    )


def bench_windows(tmp: Path, repeats: int) -> None:
    """window() on a 10k-step vector dataset, B=256, (k, h) = (1, 1) and (2, 16)."""
    rng = np.random.default_rng(0)
    root = tmp / "cartpole"
    with DatasetWriter(root, cartpole_spec(), fsync=False) as w:
        for _ in range(50):  # 50 episodes x 200 steps = 10k steps
            w.start_episode()
            for t in range(200):
                w.add_step({"state": rng.normal(size=4)}, int(rng.integers(2)), t * 0.02)
            w.end_episode(success=True)
    t0 = time.perf_counter()
    ds = EpisodeDataset(root)
    emit(
        bench="load_vector_dataset",
        steps=len(ds),
        episodes=ds.num_episodes,
        seconds=round(time.perf_counter() - t0, 4),
    )
    batch = 256
    for k, h in ((1, 1), (2, 16)):
        # Fresh random indices per call, as a sampler would give (cycled from a pool so that
        # generating them is not timed).
        idx_sets = [rng.integers(0, len(ds), batch) for _ in range(64)]
        counter = iter(range(10**9))

        def call(k: int = k, h: int = h, idx_sets: list = idx_sets, it=counter) -> object:
            return ds.window(idx_sets[next(it) % 64], history=k, horizon=h)

        us = per_call_us(call, number=2000, repeats=repeats)
        emit(
            bench="window_vector",
            dataset="cartpole-like 4-d obs, discrete, 10k steps",
            batch=batch,
            history=k,
            horizon=h,
            median_us=round(us, 2),
            samples_per_s=round(batch / us * 1e6),
        )


def bench_codecs(repeats: int) -> None:
    """Encode/decode cost of one 84x84x3 frame, JPEG q90 and PNG, one thread."""
    rng = np.random.default_rng(1)
    frames = [camera_frame(rng, 84) for _ in range(64)]
    for codec, quality in (("jpeg", 90), ("png", 90)):
        f = FeatureSpec("image", (84, 84, 3), codec=codec, quality=quality)  # type: ignore[arg-type]
        encoded = [encode_image(img, f) for img in frames]

        def enc(f: FeatureSpec = f) -> None:
            for img in frames:
                encode_image(img, f)

        def dec(encoded: list[np.ndarray] = encoded) -> None:
            for buf in encoded:
                decode_image(buf, (84, 84, 3))

        enc_us = per_call_us(enc, number=5, repeats=repeats) / len(frames)
        dec_us = per_call_us(dec, number=10, repeats=repeats) / len(frames)
        err = np.mean(
            [
                np.abs(decode_image(b, (84, 84, 3)).astype(int) - img).mean()
                for b, img in zip(encoded, frames, strict=True)
            ]
        )
        emit(
            bench="codec_84x84x3",
            codec=codec,
            quality=quality if codec == "jpeg" else None,
            bytes_per_frame=int(np.mean([b.size for b in encoded])),
            encode_us_per_frame=round(enc_us, 1),
            decode_us_per_frame=round(dec_us, 1),
            decode_frames_per_s_1thread=round(1e6 / dec_us),
            mean_abs_error=round(err, 3),
        )


def bench_image_dataset(tmp: Path, repeats: int) -> None:
    """Cache build time at load, and image windows with and without the cache."""
    rng = np.random.default_rng(2)
    spec = DatasetSpec(
        observations={
            "state": FeatureSpec("vector", (4,)),
            "cam": FeatureSpec("image", (84, 84, 3), codec="jpeg", quality=90),
        },
        action=ActionSpec("continuous", dim=2),
        control_rate_hz=20.0,
    )
    root = tmp / "images"
    pool = [camera_frame(rng, 84) for _ in range(100)]
    with DatasetWriter(root, spec, fsync=False) as w:
        for _ in range(20):  # 20 x 250 = 5000 frames
            w.start_episode()
            for t in range(250):
                w.add_step(
                    {"state": rng.normal(size=4), "cam": pool[t % 100]},
                    rng.normal(size=2),
                    t * 0.05,
                )
            w.end_episode()
    # Warm-up (page cache, OpenCV and allocator first-use costs): time steady-state decoding.
    EpisodeDataset(root, cache_images=True)
    for threads in (1, os.cpu_count() or 1):
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            ds = EpisodeDataset(root, cache_images=True, num_threads=threads)
            times.append(time.perf_counter() - t0)
        dt = statistics.median(times)
        emit(
            bench="load_image_dataset_cached",
            frames=len(ds),
            threads=threads,
            seconds=round(dt, 3),
            frames_per_s=round(len(ds) / dt),
        )
    ds_nc = EpisodeDataset(root, cache_images=False)
    batch = 256
    for name, d, number in (("cached", ds, 200), ("uncached", ds_nc, 5)):
        for k in (1, 2):
            idx = rng.integers(0, len(d), batch)
            us = per_call_us(
                lambda d=d, k=k, idx=idx: d.window(idx, history=k, horizon=16),
                number=number,
                repeats=repeats,
            )
            emit(
                bench="window_image",
                images=name,
                batch=batch,
                history=k,
                horizon=16,
                frame="84x84x3 jpeg q90",
                median_us=round(us, 1),
                samples_per_s=round(batch / us * 1e6),
            )


def bench_writer(tmp: Path, repeats: int) -> None:
    """Steps/s of DatasetWriter: vector only, and 3 cameras of 96x96 JPEG q90."""
    rng = np.random.default_rng(3)
    cams = {
        f"cam{i}": FeatureSpec("image", (96, 96, 3), codec="jpeg", quality=90) for i in range(3)
    }
    cases = [
        ("vector_only", cartpole_spec(), 2000, {}),
        (
            "3_cameras_96x96_jpeg90",
            DatasetSpec(
                observations={"state": FeatureSpec("vector", (7,)), **cams},
                action=ActionSpec("continuous", dim=7),
                control_rate_hz=30.0,
            ),
            300,
            cams,
        ),
    ]
    frames = [camera_frame(rng, 96) for _ in range(30)]
    for name, spec, steps, cam_specs in cases:
        for fsync in (True, False):
            rates = []
            for r in range(max(3, repeats // 2)):
                root = tmp / f"w_{name}_{fsync}_{r}"
                dim = spec.observations["state"].shape[0]
                obs_pool = [
                    {
                        "state": rng.normal(size=dim).astype(np.float32),
                        **{k: frames[(i + j) % 30] for j, k in enumerate(cam_specs)},
                    }
                    for i in range(30)
                ]
                t0 = time.perf_counter()
                with DatasetWriter(root, spec, flush_every=50, fsync=fsync) as w:
                    for e in range(steps // 100):  # episodes of 100 steps
                        w.start_episode()
                        for t in range(100):
                            action = (
                                int(t % 2)
                                if spec.action.kind == "discrete"
                                else np.zeros(spec.action.dim, np.float32)
                            )
                            w.add_step(obs_pool[t % 30], action, e * 10 + t * 0.02)
                        w.end_episode()
                rates.append(steps / (time.perf_counter() - t0))
            emit(
                bench="writer",
                case=name,
                fsync=fsync,
                flush_every=50,
                episode_steps=100,
                steps_per_s=round(statistics.median(rates)),
            )


def main() -> None:
    """Run every benchmark and print JSON lines."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    emit(
        bench="environment",
        python=platform.python_version(),
        numpy=np.__version__,
        opencv=cv2.__version__,
        cpus=os.cpu_count(),
        loadavg_1m=os.getloadavg()[0],
    )
    with tempfile.TemporaryDirectory(prefix="bench_data_") as d:
        tmp = Path(d)
        bench_windows(tmp, args.repeats)
        bench_codecs(args.repeats)
        bench_image_dataset(tmp, args.repeats)
        bench_writer(tmp, args.repeats)
    emit(bench="done", loadavg_1m=os.getloadavg()[0])


if __name__ == "__main__":
    main()
