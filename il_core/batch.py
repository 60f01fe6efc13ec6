"""Batch helpers: numpy window batches (see il_core.constants) to torch tensors."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch


def _tensor(value: np.ndarray | torch.Tensor, device: torch.device, pin: bool) -> torch.Tensor:
    t = value if isinstance(value, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(value))
    if device.type == "cpu":
        return t.to(device)
    if pin and not t.is_pinned():
        t = t.pin_memory()
    # From pinned memory the copy is asynchronous; from pageable memory non_blocking is a no-op.
    return t.to(device, non_blocking=t.is_pinned())


def to_torch(
    batch: dict[str, Any], device: torch.device, *, pin_memory: bool = False
) -> dict[str, Any]:
    """Numpy (or CPU tensor) window batch to tensors on ``device``.

    Zero-copy on CPU for contiguous arrays. For a CUDA ``device``, tensors already in pinned
    memory (a ``DataLoader`` with ``pin_memory``) and, with ``pin_memory``, the others after
    pinning them, are copied with ``non_blocking=True``: the copy overlaps the host work that
    follows until the first kernel that reads them (stream-ordered, so always safe).
    Nested dicts (``OBS``, ``EXTRAS``) are converted key by key; other values are dropped.
    """
    out: dict[str, Any] = {}
    for key, value in batch.items():
        if isinstance(value, dict):
            out[key] = {k: _tensor(v, device, pin_memory) for k, v in value.items()}
        elif isinstance(value, (np.ndarray, torch.Tensor)):
            out[key] = _tensor(value, device, pin_memory)
    return out


def numpy_to_tensors(batch: Any) -> Any:
    """Nested dict of numpy arrays -> same structure of CPU tensors (shared memory, no copy).

    The ``collate_fn`` of the training ``DataLoader``: a worker hands over tensors, which
    travel through shared memory and can be pinned.
    """
    if isinstance(batch, dict):
        return {k: numpy_to_tensors(v) for k, v in batch.items()}
    if isinstance(batch, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(batch))
    return batch
