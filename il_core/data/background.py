"""A :class:`DatasetWriter` driven from one background thread, so disk I/O never stalls a loop.

A recording loop (a ROS timer at the control rate) must not wait on the disk. A flush or
an episode commit fsyncs files and directories, and on a busy or virtualised disk a single
fsync can take seconds: measured on the CI machine, committing a 30-step episode sometimes
took 1.5 s, and every tick of the recording timer waited behind it. :class:`BackgroundWriter`
takes the same calls as :class:`DatasetWriter`, queues them, and runs them in order on a
worker thread; the caller only copies its arrays into the queue.

Crash safety is that of the wrapped writer, except for the steps still queued: a SIGKILL
loses what was queued but not yet written, as it loses what was added but not yet flushed.
The queue is bounded; when the disk falls that far behind, new steps are dropped and
counted (:attr:`BackgroundWriter.dropped_steps`) instead of growing memory without limit.

Results come back through callbacks that run on the worker thread: ``on_saved(info)`` when
an episode is committed, ``on_discarded(reason)`` when it is dropped (on request, or because
no step of it was accepted), ``on_error(exc)`` when a step is rejected or a write fails.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from il_core.data.episode import EpisodeInfo
from il_core.data.errors import DatasetError
from il_core.data.writer import DatasetWriter
from il_core.spec import SpecError

_STOP = object()


@dataclass
class WriterCallbacks:
    """Where a :class:`BackgroundWriter` reports; each runs on the worker thread.

    Attributes:
        on_saved: An episode was committed, with its info and the ``why`` given to
            :meth:`BackgroundWriter.end_episode`.
        on_discarded: An episode was dropped, with a reason (``"requested"`` or
            ``"no recorded step"``) and the number of steps it held.
        on_error: A step was rejected (:class:`DatasetError`/:class:`SpecError`, the
            episode goes on) or a write failed (any other exception).
    """

    on_saved: Callable[[EpisodeInfo, str], None] | None = None
    on_discarded: Callable[[str, int], None] | None = None
    on_error: Callable[[BaseException], None] | None = None


class BackgroundWriter:
    """Runs a :class:`DatasetWriter`'s calls in order on one worker thread.

    Args:
        writer: The writer to drive; only the worker thread touches it after this.
        callbacks: Where results and errors go.
        max_queue: Most steps waiting; a step beyond it is dropped and counted. The
            default holds about 30 s at 100 Hz.

    Example:
        >>> bg = BackgroundWriter(DatasetWriter(root, spec))        # doctest: +SKIP
        >>> bg.start_episode({"operator": "ana"})                   # doctest: +SKIP
        >>> bg.add_step(obs, action, t, extras)                     # doctest: +SKIP
        >>> bg.end_episode(success=True)                            # doctest: +SKIP
        >>> bg.close()  # waits for everything queued to be written # doctest: +SKIP
    """

    def __init__(
        self,
        writer: DatasetWriter,
        callbacks: WriterCallbacks | None = None,
        max_queue: int = 3000,
    ) -> None:
        self.writer = writer
        self.callbacks = callbacks or WriterCallbacks()
        # Unbounded queue, bounded step count: only steps are ever dropped, and episode
        # control (start, end, discard) never blocks the caller, even behind a stalled disk.
        self._queue: queue.Queue[Any] = queue.Queue()
        self._max_steps = max_queue
        self._waiting_steps = 0  # queued and not yet taken by the worker
        self._lock = threading.Lock()
        self._open = False
        self._queued_steps = 0
        self.dropped_steps = 0
        self.rejected_steps = 0
        self.write_errors = 0
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="il_core-writer", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ caller side

    @property
    def episode_open(self) -> bool:
        """Whether an episode has been started and not yet ended or discarded (caller view)."""
        return self._open

    @property
    def steps_in_episode(self) -> int:
        """Steps queued for the open episode (accepted or still to be validated)."""
        return self._queued_steps

    @property
    def backlog(self) -> int:
        """Calls queued and not yet written."""
        return self._queue.qsize()

    def start_episode(self, metadata: dict[str, Any] | None = None) -> None:
        """Queue the start of an episode.

        Raises:
            DatasetError: an episode is already open, or the writer is closed.
        """
        with self._lock:
            self._check_open()
            if self._open:
                raise DatasetError(
                    "an episode is already in progress; end or discard it first",
                    path=self.writer.root,
                )
            self._open, self._queued_steps = True, 0
            self._queue.put(("start", (dict(metadata or {}),)))

    def add_step(
        self,
        obs: Mapping[str, np.ndarray],
        action: Any,
        timestamp: float,
        extras: Mapping[str, np.ndarray] | None = None,
    ) -> bool:
        """Queue one step (copied, so the caller may reuse its buffers).

        Returns:
            False if no episode is open or the queue is full (the step is dropped and
            counted in :attr:`dropped_steps`), else True. Validation happens on the worker;
            a rejected step is reported through ``on_error`` and :attr:`rejected_steps`.
        """
        item = (
            "step",
            (
                {k: np.array(v, copy=True) for k, v in obs.items()},
                np.array(action, copy=True),
                timestamp,
                None if extras is None else {k: np.array(v, copy=True) for k, v in extras.items()},
            ),
        )
        with self._lock:
            if not self._open or self._closed:
                return False
            if self._waiting_steps >= self._max_steps:
                self.dropped_steps += 1
                return False
            self._waiting_steps += 1
            self._queue.put(item)
            self._queued_steps += 1
            return True

    def end_episode(
        self,
        success: bool | None = None,
        metadata: dict[str, Any] | None = None,
        why: str = "stopped",
    ) -> bool:
        """Queue the commit of the open episode; ``on_saved`` reports it when written.

        An episode in which no step was accepted is discarded instead (``on_discarded``
        with reason ``"no recorded step"``).

        Returns:
            False if no episode is open.
        """
        with self._lock:
            if not self._open or self._closed:
                return False
            self._open = False
            self._queue.put(("end", (success, dict(metadata or {}), why)))
            return True

    def discard_episode(self) -> bool:
        """Queue dropping the open episode. Returns False if none is open."""
        with self._lock:
            if not self._open or self._closed:
                return False
            self._open = False
            self._queue.put(("discard", ()))
            return True

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every call queued so far has been carried out.

        Returns:
            False if ``timeout`` seconds passed first.
        """
        done = threading.Event()
        self._queue.put(("barrier", (done,)))
        return done.wait(timeout)

    def close(self, timeout: float | None = None) -> None:
        """Commit an open episode (unlabelled), write everything queued, stop the worker.

        Idempotent. ``timeout`` bounds the wait for the worker; what it has not written by
        then is left to the crash recovery of the next writer on this dataset.
        """
        with self._lock:
            if self._closed:
                return
            if self._open:
                self._queue.put(("end", (None, {}, "writer closed")))
            self._closed = True
            self._open = False
            self._queue.put(_STOP)
        self._thread.join(timeout)

    def _check_open(self) -> None:
        if self._closed:
            raise DatasetError("the writer is closed", path=self.writer.root)

    # ------------------------------------------------------------------ worker side

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                self._call(self.writer.close)
                return
            op, args = item
            if op == "step":
                with self._lock:
                    self._waiting_steps -= 1
                try:
                    if self.writer.episode_in_progress:
                        self.writer.add_step(*args)
                except (DatasetError, SpecError) as e:
                    self.rejected_steps += 1
                    self._report(e)
                except Exception as e:  # a failing disk: report, keep serving
                    self.write_errors += 1
                    self._report(e)
            elif op == "start":
                self._call(self.writer.start_episode, *args)
            elif op == "end":
                self._end(*args)
            elif op == "discard":
                steps = self.writer.num_steps_in_episode
                if self._call(self.writer.discard_episode) and self.callbacks.on_discarded:
                    self._callback(self.callbacks.on_discarded, "requested", steps)
            elif op == "barrier":
                args[0].set()

    def _end(self, success: bool | None, metadata: dict[str, Any], why: str) -> None:
        if not self.writer.episode_in_progress:
            return  # its start failed, already reported
        if self.writer.num_steps_in_episode == 0:
            if self._call(self.writer.discard_episode) and self.callbacks.on_discarded:
                self._callback(self.callbacks.on_discarded, "no recorded step", 0)
            return
        try:
            info = self.writer.end_episode(success=success, metadata=metadata)
        except Exception as e:
            self.write_errors += 1
            self._report(e)
            return
        if self.callbacks.on_saved:
            self._callback(self.callbacks.on_saved, info, why)

    def _call(self, fn: Callable[..., Any], *args: Any) -> bool:
        try:
            fn(*args)
            return True
        except Exception as e:
            self.write_errors += 1
            self._report(e)
            return False

    def _report(self, e: BaseException) -> None:
        if self.callbacks.on_error:
            self._callback(self.callbacks.on_error, e)

    @staticmethod
    def _callback(fn: Callable[..., None], *args: Any) -> None:
        try:
            fn(*args)
        except Exception:  # a broken callback must not kill the writer thread
            import traceback

            traceback.print_exc()
