"""Value types describing committed episodes: :class:`EpisodeInfo` and :class:`Episode`."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from il_core.data.errors import DatasetError


@dataclass(frozen=True)
class EpisodeInfo:
    """Summary of one committed episode (the content of its ``episode.json``).

    Attributes:
        index: For :class:`~il_core.data.EpisodeDataset`, the global episode index across
            all loaded roots; for :class:`~il_core.data.DatasetWriter`, the number in the
            episode directory name.
        path: The episode directory.
        length: Number of steps ``T`` (>= 1).
        duration_s: ``t_last - t_first`` in seconds (0 for one step).
        measured_rate_hz: ``(T - 1) / duration_s``; None for a one-step episode.
        dt_median_s: Median step interval; None for a one-step episode.
        dt_max_s: Largest step interval (shows gaps); None for a one-step episode.
        success: User label, or None if unknown.
        recovered: True if the episode was salvaged from a crashed writer's flushed chunks
            (it may be truncated and has no success label).
        start_time: Timestamp of the first step.
        metadata: Free-form JSON-compatible metadata given at start and end of the episode.
    """

    index: int
    path: Path
    length: int
    duration_s: float
    measured_rate_hz: float | None
    dt_median_s: float | None
    dt_max_s: float | None
    success: bool | None
    recovered: bool
    start_time: float
    metadata: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, index: int, path: Path, info: dict[str, Any]) -> EpisodeInfo:
        """Build from a validated ``episode.json`` dict."""

        def _opt(v: Any) -> float | None:
            return None if v is None else float(v)

        return cls(
            index=int(index),
            path=Path(path),
            length=int(info["length"]),
            duration_s=float(info["duration_s"]),
            measured_rate_hz=_opt(info["measured_rate_hz"]),
            dt_median_s=_opt(info["dt_median_s"]),
            dt_max_s=_opt(info["dt_max_s"]),
            success=info["success"],
            recovered=bool(info["recovered"]),
            start_time=float(info["start_time"]),
            metadata=dict(info["metadata"]),
        )


@dataclass(frozen=True)
class Episode:
    """One whole episode, decoded.

    Attributes:
        info: Its :class:`EpisodeInfo`.
        observations: ``{key: (T, D) float32}`` for vectors, ``{key: (T, H, W, C) uint8}``
            (RGB) for cameras.
        actions: ``(T, D)`` float32 (continuous) or ``(T,)`` int64 (discrete).
        timestamps: ``(T,)`` float64.
        extras: ``{key: (T, D) float32}``.
    """

    info: EpisodeInfo
    observations: dict[str, np.ndarray]
    actions: np.ndarray
    timestamps: np.ndarray
    extras: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = self.info.length
        columns = {"timestamps": self.timestamps, "actions": self.actions}
        columns.update({f"observations[{k!r}]": v for k, v in self.observations.items()})
        columns.update({f"extras[{k!r}]": v for k, v in self.extras.items()})
        for name, arr in columns.items():
            if arr.ndim < 1 or arr.shape[0] != n:
                raise DatasetError(
                    f"{name} has shape {arr.shape}, expected leading length {n}",
                    path=self.info.path,
                )

    def __len__(self) -> int:
        return self.info.length
