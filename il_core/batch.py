"""Batch helpers: numpy window batches (see il_core.constants) to torch tensors."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch


def to_torch(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    """Numpy window batch to tensors on ``device`` (zero-copy on CPU for contiguous arrays).

    Nested dicts (``OBS``, ``EXTRAS``) are converted key by key; non-array values are dropped.
    """
    out: dict[str, Any] = {}
    for key, value in batch.items():
        if isinstance(value, dict):
            out[key] = {
                k: torch.from_numpy(np.ascontiguousarray(v)).to(device) for k, v in value.items()
            }
        elif isinstance(value, np.ndarray):
            out[key] = torch.from_numpy(np.ascontiguousarray(value)).to(device)
    return out
