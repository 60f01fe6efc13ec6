"""Recovery of episodes abandoned by crashed writers.

A writer holds an ``flock`` on ``.inprogress-*/.lock`` while it lives; the kernel drops it
when the process dies, however it dies. :func:`recover` takes the lock of every in-progress
directory it can (so two recovering processes never handle the same directory, and a live
writer's directory is never touched) and then commits or deletes it.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any, Literal

from il_core.data._fs import DirLock, host_tag, pid_alive
from il_core.data.errors import DatasetError
from il_core.data.format import (
    EPISODE_JSON,
    EPISODES,
    INPROGRESS_PREFIX,
    STAGING_PREFIX,
    START_JSON,
    TRASH_PREFIX,
    commit_episode_dir,
    consolidate_chunks,
    load_episode_dir,
    read_meta,
    remove_dir,
)
from il_core.spec import DatasetSpec

logger = logging.getLogger(__name__)

RecoverMode = Literal["keep", "discard"]


def recover(root: str | Path, mode: RecoverMode = "keep", *, fsync: bool = True) -> list[str]:
    """Handle the in-progress episodes of dead writers in a dataset.

    For every ``episodes/.inprogress-*`` directory whose lock is free (its writer died):

    - ``mode="keep"``: if the writer had finished writing the final files (it died between
      ``episode.json`` and the directory rename), the episode is committed as it is (it is
      complete, so ``recovered`` stays false). Otherwise the flushed chunks are consolidated
      into an episode flagged ``recovered: true`` with ``success: null``, keeping the
      longest valid prefix of chunks; steps after the last flush are lost. A directory with
      no flushed step is deleted.
    - ``mode="discard"``: the directory is deleted.

    Leftover ``.trash-*`` directories (an interrupted delete) and this host's ``.staging-*``
    directories of dead processes are removed as well. Directories of live writers are
    never touched.

    Args:
        root: Dataset directory.
        mode: ``"keep"`` or ``"discard"``.
        fsync: Whether to fsync what recovery writes (disable only for tests/benchmarks).

    Returns:
        One human-readable line per action taken (empty if there was nothing to do).

    Raises:
        DatasetError: if ``root`` is not a dataset or ``mode`` is invalid.
    """
    if mode not in ("keep", "discard"):
        raise DatasetError(f"recover mode must be 'keep' or 'discard', got {mode!r}")
    root = Path(root)
    spec = read_meta(root)
    episodes_dir = root / EPISODES
    if not episodes_dir.is_dir():
        return []
    done: list[str] = []
    for name in sorted(os.listdir(episodes_dir)):
        path = episodes_dir / name
        if name.startswith(TRASH_PREFIX):
            shutil.rmtree(path, ignore_errors=True)
            done.append(f"removed leftover {name}")
        elif name.startswith(STAGING_PREFIX) and _staging_abandoned(name):
            shutil.rmtree(path, ignore_errors=True)
            done.append(f"removed abandoned {name}")
        elif name.startswith(INPROGRESS_PREFIX):
            lock = DirLock.try_acquire(path)
            if lock is None:
                continue  # a live writer, or another process recovered it meanwhile
            try:
                done.append(_recover_one(path, episodes_dir, spec, mode, fsync))
            finally:
                lock.release()
    for line in done:
        logger.info("recover %s: %s", root, line)
    return done


def _staging_abandoned(name: str) -> bool:
    # Staging dirs exist for microseconds before their lock is taken, so the lock cannot tell
    # a dead creator from a live one: the creator's pid can, on the creator's host.
    parts = name[len(STAGING_PREFIX) :].split("-")
    if len(parts) != 3 or not parts[1].isdigit():
        return False
    return parts[0] == host_tag() and not pid_alive(int(parts[1]))


def _read_start_metadata(path: Path) -> dict[str, Any]:
    try:
        start = json.loads((path / START_JSON).read_bytes())
        meta = start["metadata"]
        if isinstance(meta, dict):
            return meta
    except (OSError, ValueError, KeyError, TypeError):
        pass
    logger.warning("%s: %s missing or unreadable; recovered without metadata", path, START_JSON)
    return {}


def _recover_one(
    path: Path, episodes_dir: Path, spec: DatasetSpec, mode: RecoverMode, fsync: bool
) -> str:
    if mode == "discard":
        remove_dir(path, episodes_dir)
        return f"discarded {path.name}"
    final_error = None
    if (path / EPISODE_JSON).exists():
        try:
            load_episode_dir(path, spec)
        except DatasetError as e:
            # Cannot happen with our write order (data fsync'ed before episode.json), short
            # of disk damage; fall back to the chunks if they are still there.
            final_error = e
            logger.warning("%s: final files invalid (%s); trying the chunks", path, e)
        else:
            number, dst = commit_episode_dir(path, episodes_dir, fsync=fsync)
            return f"committed {path.name} as {dst.name} (complete, writer died before rename)"
    info = consolidate_chunks(
        path,
        spec,
        success=None,
        recovered=True,
        metadata=_read_start_metadata(path),
        truncate=True,
        fsync=fsync,
    )
    if info is None:
        if final_error is not None:
            # Never delete what may be the only copy of a finished episode: leave it to a
            # human.
            return f"left {path.name} untouched: {final_error}"
        remove_dir(path, episodes_dir)
        return f"discarded {path.name} (no flushed steps)"
    number, dst = commit_episode_dir(path, episodes_dir, fsync=fsync)
    return f"recovered {path.name} as {dst.name} ({info['length']} flushed steps)"
