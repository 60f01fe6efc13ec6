"""Crash-safe episode datasets: record, recover, and read training windows.

:class:`DatasetWriter` records episodes step by step, :func:`recover` salvages the episodes
of crashed writers, :class:`EpisodeDataset` gives random-access training windows.

See ``docs/architecture.md`` and :mod:`il_core.data.format` for the on-disk layout.
"""

from il_core.data.episode import Episode, EpisodeInfo
from il_core.data.errors import DatasetError
from il_core.data.reader import EpisodeDataset
from il_core.data.recovery import recover
from il_core.data.writer import DatasetWriter

__all__ = [
    "DatasetError",
    "DatasetWriter",
    "Episode",
    "EpisodeDataset",
    "EpisodeInfo",
    "recover",
]
