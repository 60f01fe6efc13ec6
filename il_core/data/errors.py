"""The single exception type of the dataset layer."""

from __future__ import annotations

from pathlib import Path


class DatasetError(ValueError):
    """A dataset, episode, file or step is malformed, or an operation on it is invalid.

    The message names, where known, the dataset directory, the episode directory, the file
    and the key, so that a user can find the bad data without a debugger. The same parts are
    kept as attributes for programmatic use.

    Attributes:
        path: The most specific path involved (file, else episode dir, else dataset dir).
        key: The array or observation key involved, if any.
    """

    def __init__(self, message: str, *, path: str | Path | None = None, key: str | None = None):
        parts = []
        if path is not None:
            parts.append(str(path))
        if key is not None:
            parts.append(f"key {key!r}")
        prefix = ", ".join(parts)
        super().__init__(f"{prefix}: {message}" if prefix else message)
        self.path = None if path is None else Path(path)
        self.key = key
