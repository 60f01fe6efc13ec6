"""Filesystem primitives for crash safety: atomic writes, fsync, directory locks.

Everything that becomes visible in a dataset becomes visible through one atomic operation
(``os.replace``, ``os.link`` or ``os.rename`` of a directory), after its content was written
and, unless disabled, fsync'ed. A SIGKILL therefore never exposes a half-written file under
its final name; fsync additionally covers power loss on a local POSIX filesystem.
"""

from __future__ import annotations

import errno
import fcntl
import io
import json
import os
import socket
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np


def fsync_dir(path: Path) -> None:
    """Persist a directory's entries (creations, renames) to disk."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def host_tag() -> str:
    """This machine's host name, without the ``-`` that separates name parts."""
    return socket.gethostname().replace("-", "_").replace("/", "_") or "host"


def unique_suffix() -> str:
    """``<host>-<pid>-<uuid>``: unique across processes and machines sharing a directory."""
    return f"{host_tag()}-{os.getpid()}-{uuid.uuid4().hex[:12]}"


def _write_tmp(path: Path, data: bytes | Callable[[BinaryIO], None], fsync: bool) -> Path:
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:12]}")
    try:
        with open(tmp, "wb") as f:
            if callable(data):
                data(f)
            else:
                f.write(data)
            if fsync:
                f.flush()
                os.fsync(f.fileno())
    except BaseException:
        # A full disk must not leave partial temporaries behind (they never match a final
        # name, so they are harmless, but they waste space).
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def atomic_write_bytes(
    path: Path, data: bytes | Callable[[BinaryIO], None], *, fsync: bool = True
) -> None:
    """Write to ``path`` via a temporary file and ``os.replace`` (last writer wins).

    Args:
        path: Final path.
        data: The bytes, or a function that writes the content to a binary file object
            (to stream large content without holding it in memory).
        fsync: fsync the file before it gets its final name.
    """
    tmp = _write_tmp(path, data, fsync)
    try:
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def create_exclusive_bytes(path: Path, data: bytes, *, fsync: bool = True) -> bool:
    """Write ``data`` to ``path`` atomically unless ``path`` exists (first creator wins).

    ``os.link`` of a complete temporary file fails with ``EEXIST`` instead of replacing, so
    two processes creating the same file cannot clobber each other, and a reader never sees
    a partial file.

    Returns:
        True if this call created the file, False if it already existed.
    """
    tmp = _write_tmp(path, data, fsync)
    try:
        os.link(tmp, path)
        return True
    except FileExistsError:
        return False
    finally:
        tmp.unlink(missing_ok=True)


def dumps_json(obj: Any) -> bytes:
    """Deterministic, human-readable JSON (NaN and infinity rejected: they are not JSON)."""
    return (json.dumps(obj, indent=1, sort_keys=True, allow_nan=False) + "\n").encode()


def npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    """Serialise arrays as an uncompressed ``.npz`` (fast to write and to read)."""
    buf = io.BytesIO()
    # ``allow_pickle`` is numpy's default, spelt out so that no column can be taken for it.
    np.savez(buf, allow_pickle=True, **arrays)
    return buf.getvalue()


class DirLock:
    """An exclusive ``flock`` on ``<dir>/.lock``, held while an episode is being written.

    The kernel releases the lock when the holder dies (SIGKILL included), which is how
    recovery tells an abandoned in-progress directory from a live one. Locks are per open
    file description, so two ``DirLock`` objects conflict even inside one process.
    """

    NAME = ".lock"

    def __init__(self, fd: int, directory: Path):
        self._fd: int | None = fd
        self.directory = directory

    @classmethod
    def create(cls, directory: Path) -> DirLock:
        """Create and lock the lock file of a new directory (blocking is never needed)."""
        fd = os.open(directory / cls.NAME, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BaseException:
            os.close(fd)
            raise
        return cls(fd, directory)

    @classmethod
    def try_acquire(cls, directory: Path) -> DirLock | None:
        """Lock an existing directory's lock file without waiting.

        Returns None if the lock is held by a live process, or if the directory or its lock
        file vanished or was replaced meanwhile (another process recovered it first). The
        lock file is never created here: a missing one means the directory is not ours.
        """
        path = directory / cls.NAME
        try:
            fd = os.open(path, os.O_RDWR)
        except (FileNotFoundError, NotADirectoryError):
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            os.close(fd)
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                return None
            raise
        # The path may have been renamed away or re-created between open() and flock():
        # only a lock on the inode that the path still names is meaningful.
        try:
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if not same:
            os.close(fd)
            return None
        return cls(fd, directory)

    @property
    def held(self) -> bool:
        """Whether this object still holds the lock."""
        return self._fd is not None

    def release(self) -> None:
        """Release the lock (idempotent). Closing the descriptor drops the flock."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def pid_alive(pid: int) -> bool:
    """Whether a process with this id exists on this machine."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
