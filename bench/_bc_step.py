"""The baseline of "is training data-bound?": one step of the shipped image BC policy.

Shared by ``bench_video_storage.py`` and ``bench_large_dataset.py``.
"""

from __future__ import annotations

import statistics
import time

import numpy as np


def bc_step_seconds(ds, batch: int, repeats: int, seed: int = 0) -> dict[int, float]:
    """Median seconds of one training step of the default image ``bc`` policy.

    The step runs on one batch of ``window(idx, 1, 1)`` from ``ds`` (AdamW, lr 1e-3), on 1 and
    on 2 torch threads: on a loaded 2-core machine 2 threads can be the slower, so callers
    take the faster as the stricter baseline. Leaves torch on 1 thread.

    Returns:
        ``{threads: seconds per step}`` for 1 and 2 threads.
    """
    import torch

    from il_core.batch import to_torch
    from il_core.policies import make_policy

    policy = make_policy("bc", {}, ds.spec, ds.stats())
    opt = torch.optim.AdamW(policy.parameters(), lr=1e-3)
    rng = np.random.default_rng(seed)
    b = to_torch(ds.window(rng.integers(0, len(ds), batch), 1, 1), torch.device("cpu"))

    def step() -> None:
        loss, _ = policy(b)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    out = {}
    for threads in (1, 2):
        torch.set_num_threads(threads)
        for _ in range(3):
            step()
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            for _ in range(5):
                step()
            times.append((time.perf_counter() - t) / 5)
        out[threads] = statistics.median(times)
    torch.set_num_threads(1)
    return out
