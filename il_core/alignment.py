"""Causal time alignment of message streams to control ticks, and loop-rate diagnostics.

The recorder and the inference node receive each stream (an observation key, or the command
stream ``"action"``) as messages with a header stamp and a receive time, and sample all
streams on a timer. This module holds the pure logic of that sampling, without ROS:

- :class:`StreamCache` keeps the last few samples of one stream, ordered by stamp, and counts
  what arrived: received, late (out of order), malformed, gaps and an estimate of the messages
  dropped in those gaps.
- :class:`TickAligner` picks, for a tick at time ``t``, the newest sample of every stream with
  ``stamp <= t`` (causal: never a sample from the future of the tick, which a lagging tick
  would otherwise pick up) and declares the tick complete only if every stream has one no
  older than its ``max_age_s``. Incomplete ticks name the missing and stale streams, so the
  caller can log why, and are counted as gaps.
- :class:`RateMeter` measures the rate the tick loop really achieved (declared rate is not
  measured rate), its jitter and its missed ticks, over a bounded window.

``TickAligner.summary()`` is the JSON-compatible timing report the recorder writes into each
episode's metadata; ``reset_counters()`` starts a new episode's counts.

Times are float seconds on one clock (ROS time as seconds on a robot, simulated or synthetic
time in tests). Ages are ``tick time - stamp``; receive delays are ``receive time - stamp``,
so a negative receive delay reveals a publisher whose clock runs ahead of ours.
"""

from __future__ import annotations

import math
import threading
from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

#: An interval longer than this many expected periods is a gap (stream) or a missed tick (loop).
GAP_FACTOR = 1.5


def _finite(x: Any) -> bool:
    """True for a finite real number (Python or numpy scalar)."""
    try:
        return math.isfinite(x)
    except TypeError:
        return False


def _json_float(x: float | None) -> float | None:
    """A float for JSON, or None for undefined values (NaN and infinity are not JSON)."""
    if x is None or not math.isfinite(x):
        return None
    return float(x)


class _Window:
    """Fixed-size ring of the last ``size`` floats; O(1) per append, arrays on demand."""

    __slots__ = ("_data", "_next", "size")

    def __init__(self, size: int) -> None:
        self.size = size
        self._data: list[float] = []
        self._next = 0

    def append(self, x: float) -> None:
        if len(self._data) < self.size:
            self._data.append(x)
        else:
            self._data[self._next] = x
            self._next = (self._next + 1) % self.size

    def clear(self) -> None:
        self._data.clear()
        self._next = 0

    def __len__(self) -> int:
        return len(self._data)

    def array(self) -> np.ndarray:
        """The held values, shape ``(n,)``, in no particular order."""
        return np.asarray(self._data, dtype=np.float64)

    def median(self) -> float | None:
        return float(np.median(self.array())) if self._data else None


@dataclass(frozen=True)
class StreamConfig:
    """Timing expectations for one stream.

    Attributes:
        name: Stream name: an observation key, or ``"action"`` for the command stream.
        max_age_s: A tick is complete only if this stream's sample is at most this old
            (``tick time - stamp``). Choose it above one period plus the transport latency.
        expected_rate_hz: The publisher's nominal rate. When given, an interval between
            consecutive stamps longer than 1.5 periods counts as a gap, and
            ``round(interval / period) - 1`` messages as dropped.
    """

    name: str = field(metadata={"help": "observation key, or 'action'"})
    max_age_s: float = field(metadata={"help": "maximum sample age at a tick, seconds, > 0"})
    expected_rate_hz: float | None = field(
        default=None, metadata={"help": "publisher's nominal rate in Hz (enables gap counts)"}
    )

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"stream name must be a non-empty string, got {self.name!r}")
        if not _finite(self.max_age_s) or self.max_age_s <= 0:
            raise ValueError(f"stream {self.name!r}: max_age_s must be > 0, got {self.max_age_s}")
        if self.expected_rate_hz is not None and (
            not _finite(self.expected_rate_hz) or self.expected_rate_hz <= 0
        ):
            raise ValueError(
                f"stream {self.name!r}: expected_rate_hz must be > 0 or None, "
                f"got {self.expected_rate_hz}"
            )


@dataclass(frozen=True, slots=True)
class Sample:
    """One received message, converted.

    Attributes:
        value: The converted value (any shape); held by reference, not copied.
        stamp: Header stamp in seconds, or the receive time for a message without a header.
        received: Receive time in seconds.
        has_header: False when ``stamp`` was taken from the receive time.
    """

    value: np.ndarray
    stamp: float
    received: float
    has_header: bool = True


class StreamCache:
    """Ring buffer of the most recent samples of one stream, kept in stamp order, plus counts.

    Out-of-order samples (stamp older than the newest held) are counted as ``late`` and
    inserted at their place in stamp order, so a tick lying between their stamp and the
    newest stamp still finds them; one older than every held sample of a full buffer is
    counted as late and dropped (it would be evicted first anyway). Gap and drop estimates
    look only at in-order samples (a late sample never fills a gap already counted).

    Not thread-safe on its own; :class:`TickAligner` serialises access.

    Args:
        config: The stream's timing expectations.
        capacity: How many samples to keep (the oldest is evicted first).

    Attributes:
        received: Samples offered to :meth:`put` with finite times (stored or not).
        late: Samples whose stamp was older than the newest already held.
        malformed: Messages the caller could not convert (:meth:`count_malformed`), plus
            samples with a non-finite stamp or receive time.
        unstamped: Samples without a header stamp (stamped with their receive time).
        gaps: In-order intervals longer than 1.5 expected periods (needs ``expected_rate_hz``).
        dropped: Estimated messages lost in those gaps, sum of ``round(interval/period) - 1``.
        used: Distinct samples that went into at least one complete tick.
    """

    def __init__(self, config: StreamConfig, capacity: int = 16) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.config = config
        self.capacity = capacity
        self._period = 1.0 / config.expected_rate_hz if config.expected_rate_hz else None
        self._stamps: list[float] = []
        self._samples: list[Sample] = []
        # Parallel to _samples: whether the sample went into a complete tick since the last
        # counter reset, so "used" counts distinct samples and not ticks.
        self._used: list[bool] = []
        self._newest = -math.inf
        self.reset_counters()

    def reset_counters(self) -> None:
        """Zero the counts (episode start); held samples stay available to the next tick."""
        self.received = 0
        self.late = 0
        self.malformed = 0
        self.unstamped = 0
        self.gaps = 0
        self.dropped = 0
        self.used = 0
        self._first_stamp: float | None = None
        self._in_order = 0
        self._used = [False] * len(self._samples)

    def __len__(self) -> int:
        return len(self._samples)

    def count_malformed(self) -> None:
        """Count a message the caller could not convert (wrong size, encoding, NaN...)."""
        self.malformed += 1

    def put(self, value: np.ndarray, stamp: float | None, received: float) -> bool:
        """Store a sample.

        Args:
            value: Converted message value; kept by reference, so do not mutate it later.
            stamp: Header stamp in seconds, or None for a message without a header, in which
                case the receive time is used as the stamp.
            received: Receive time in seconds.

        Returns:
            True if the sample was stored; False if it was counted as malformed (non-finite
            time) or dropped as too old for the buffer.
        """
        has_header = stamp is not None
        if stamp is None:
            stamp = received
        if not (_finite(stamp) and _finite(received)):
            self.malformed += 1
            return False
        stamp = float(stamp)
        self.received += 1
        if not has_header:
            self.unstamped += 1
        sample = Sample(value, stamp, float(received), has_header)
        if stamp < self._newest:
            self.late += 1
            if len(self._stamps) == self.capacity and stamp < self._stamps[0]:
                return False
            i = bisect_right(self._stamps, stamp)
            self._stamps.insert(i, stamp)
            self._samples.insert(i, sample)
            self._used.insert(i, False)
        else:
            if self._period is not None and self._newest > -math.inf:
                interval = stamp - self._newest
                if interval > GAP_FACTOR * self._period:
                    self.gaps += 1
                    self.dropped += round(interval / self._period) - 1
            if self._first_stamp is None:
                self._first_stamp = stamp
            self._in_order += 1
            self._newest = stamp
            self._stamps.append(stamp)
            self._samples.append(sample)
            self._used.append(False)
        if len(self._stamps) > self.capacity:
            del self._stamps[0], self._samples[0], self._used[0]
        return True

    def _index_at(self, t: float) -> int:
        """Index of the newest sample with ``stamp <= t``, or -1 if there is none."""
        stamps = self._stamps
        if stamps and stamps[-1] <= t:  # the usual case: the newest sample is not in the future
            return len(stamps) - 1
        return bisect_right(stamps, t) - 1

    def latest_at(self, t: float) -> Sample | None:
        """The newest sample with ``stamp <= t`` (causal), or None if there is none."""
        i = self._index_at(t)
        return self._samples[i] if i >= 0 else None

    def _mark_used(self, i: int) -> None:
        if not self._used[i]:
            self._used[i] = True
            self.used += 1

    def measured_rate_hz(self) -> float | None:
        """Rate of in-order stamps since the last counter reset, or None with fewer than 2."""
        if self._first_stamp is None or self._in_order < 2 or self._newest <= self._first_stamp:
            return None
        return (self._in_order - 1) / (self._newest - self._first_stamp)


@dataclass(frozen=True)
class RateStats:
    """What a :class:`RateMeter` measured. Times in seconds; None where undefined.

    Attributes:
        ticks: Ticks seen since the last reset.
        nominal_rate_hz: The declared rate, if any.
        rate_mean_hz: Intervals / their total duration, over all ticks since the reset.
        rate_median_hz: 1 / median interval over the window.
        period_median_s: Median interval over the window.
        jitter_std_s: Standard deviation of the intervals over the window.
        jitter_p99_s: 99th percentile of ``|interval - nominal period|`` over the window (the
            median interval stands in for the nominal period when none was given).
        max_interval_s: Longest interval in the window.
        long_intervals: Intervals longer than 1.5 nominal periods since the reset.
        missed_ticks: Ticks estimated missing in those, sum of ``round(dt / period) - 1``.
        nonpositive_intervals: Ticks whose time did not advance (clock jump, duplicate);
            their intervals are left out of every figure.
        window: How many intervals the windowed figures use.
    """

    ticks: int
    nominal_rate_hz: float | None
    rate_mean_hz: float | None
    rate_median_hz: float | None
    period_median_s: float | None
    jitter_std_s: float | None
    jitter_p99_s: float | None
    max_interval_s: float | None
    long_intervals: int | None
    missed_ticks: int | None
    nonpositive_intervals: int
    window: int

    def as_dict(self) -> dict[str, Any]:
        """JSON-compatible dict (None for undefined figures)."""
        out: dict[str, Any] = {}
        for k, v in self.__dict__.items():
            out[k] = _json_float(v) if isinstance(v, float) else v
        return out


class RateMeter:
    """Achieved rate, jitter and missed ticks of a periodic loop, from its tick times.

    :meth:`tick` is O(1); the windowed figures (median, jitter) are computed in
    :meth:`stats` over the last ``window`` intervals, the mean rate and missed-tick counts over
    everything since :meth:`reset`.

    Args:
        nominal_rate_hz: The declared rate. Without it, jitter is measured against the median
            interval and missed ticks are not counted.
        window: Number of recent intervals kept.
    """

    def __init__(self, nominal_rate_hz: float | None = None, window: int = 1000) -> None:
        if nominal_rate_hz is not None and (not _finite(nominal_rate_hz) or nominal_rate_hz <= 0):
            raise ValueError(f"nominal_rate_hz must be > 0 or None, got {nominal_rate_hz}")
        if window < 1:
            raise ValueError(f"window must be >= 1, got {window}")
        self.nominal_rate_hz = nominal_rate_hz
        self._period = 1.0 / nominal_rate_hz if nominal_rate_hz else None
        self._intervals = _Window(window)
        self.reset()

    def reset(self) -> None:
        """Forget all ticks (episode start, or after the loop was paused)."""
        self.ticks = 0
        self.long_intervals = 0
        self.missed_ticks = 0
        self.nonpositive_intervals = 0
        self._last: float | None = None
        self._n_intervals = 0
        self._sum_intervals = 0.0
        self._intervals.clear()

    def tick(self, t: float) -> None:
        """Record a tick at time ``t`` (seconds)."""
        self.ticks += 1
        last, self._last = self._last, t
        if last is None:
            return
        dt = t - last
        if not dt > 0:
            self.nonpositive_intervals += 1
            return
        self._n_intervals += 1
        self._sum_intervals += dt
        self._intervals.append(dt)
        if self._period is not None and dt > GAP_FACTOR * self._period:
            self.long_intervals += 1
            self.missed_ticks += round(dt / self._period) - 1

    def stats(self) -> RateStats:
        """The figures so far (O(window))."""
        dts = self._intervals.array()
        n = dts.size
        period_median = float(np.median(dts)) if n else None
        ref = self._period if self._period is not None else period_median
        return RateStats(
            ticks=self.ticks,
            nominal_rate_hz=self.nominal_rate_hz,
            rate_mean_hz=self._n_intervals / self._sum_intervals if self._n_intervals else None,
            rate_median_hz=1.0 / period_median if period_median else None,
            period_median_s=period_median,
            jitter_std_s=float(dts.std()) if n else None,
            jitter_p99_s=float(np.percentile(np.abs(dts - ref), 99)) if n else None,
            max_interval_s=float(dts.max()) if n else None,
            long_intervals=self.long_intervals if self._period is not None else None,
            missed_ticks=self.missed_ticks if self._period is not None else None,
            nonpositive_intervals=self.nonpositive_intervals,
            window=n,
        )


@dataclass(frozen=True)
class AlignedTick:
    """The streams' samples chosen for one tick.

    Attributes:
        time: The tick time (seconds).
        complete: Every stream has a sample with ``stamp <= time`` no older than its max age.
        values: ``{name: value}`` for every stream when complete; empty otherwise.
        stamps: ``{name: stamp}`` of the chosen sample, for every stream that has one.
        ages: ``{name: time - stamp}`` for every stream; ``inf`` when it has no sample.
        receive_delays: ``{name: received - stamp}`` for every stream that has a sample.
        missing: Streams with no sample at or before ``time``, in configuration order.
        stale: Streams whose chosen sample is older than their max age.
    """

    time: float
    complete: bool
    values: dict[str, np.ndarray]
    stamps: dict[str, float]
    ages: dict[str, float]
    receive_delays: dict[str, float]
    missing: tuple[str, ...] = ()
    stale: tuple[str, ...] = ()

    def describe(self) -> str:
        """Why the tick is incomplete, for a log line ("" when complete)."""
        parts = []
        if self.missing:
            parts.append("no sample from " + ", ".join(self.missing))
        if self.stale:
            parts.append(
                "stale " + ", ".join(f"{n} ({self.ages[n] * 1e3:.1f} ms old)" for n in self.stale)
            )
        return "; ".join(parts)


class _StreamTicks:
    """Per-stream tick counts kept by :class:`TickAligner`."""

    __slots__ = ("ages", "cache", "delays", "max_age", "max_age_seen", "missing", "name", "stale")

    def __init__(self, cache: StreamCache, window: int) -> None:
        self.cache = cache
        self.name = cache.config.name
        self.max_age = cache.config.max_age_s
        self.ages = _Window(window)
        self.delays = _Window(window)
        self.reset()

    def reset(self) -> None:
        self.missing = 0
        self.stale = 0
        self.max_age_seen = -math.inf
        self.ages.clear()
        self.delays.clear()


class TickAligner:
    """Samples every stream at tick times, causally, and says whether each tick is usable.

    Sensor callbacks call :meth:`put` (and :meth:`count_malformed` when a message cannot be
    converted); the timer calls :meth:`sample`. All methods take one lock, so callbacks in
    different callback groups of a multi-threaded executor may call them concurrently.

    Args:
        streams: One config per stream, names unique.
        rate_hz: The tick loop's nominal rate, for the rate report (jitter, missed ticks).
        capacity: Samples kept per stream.
        window: Recent ticks kept for the median age, receive delay and rate figures.

    Attributes:
        ticks: Ticks sampled since the last counter reset.
        complete_ticks: Of those, ticks where every stream was fresh.
        rate: The :class:`RateMeter` fed with every tick time.
    """

    def __init__(
        self,
        streams: Sequence[StreamConfig],
        rate_hz: float | None = None,
        capacity: int = 16,
        window: int = 1000,
    ) -> None:
        if not streams:
            raise ValueError("TickAligner needs at least one stream")
        names = [s.name for s in streams]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"duplicate stream names: {dupes}")
        self._lock = threading.Lock()
        self._streams = [_StreamTicks(StreamCache(s, capacity), window) for s in streams]
        self._by_name = {s.name: s for s in self._streams}
        self.rate = RateMeter(rate_hz, window)
        self.ticks = 0
        self.complete_ticks = 0

    @property
    def names(self) -> tuple[str, ...]:
        """Stream names in configuration order."""
        return tuple(self._by_name)

    @property
    def gap_ticks(self) -> int:
        """Ticks that were not complete (counted as gaps) since the last counter reset."""
        return self.ticks - self.complete_ticks

    def cache(self, name: str) -> StreamCache:
        """The :class:`StreamCache` of stream ``name`` (for its counters)."""
        return self._stream(name).cache

    def _stream(self, name: str) -> _StreamTicks:
        try:
            return self._by_name[name]
        except KeyError:
            raise KeyError(f"unknown stream {name!r}; streams are {list(self._by_name)}") from None

    def put(self, name: str, value: np.ndarray, stamp: float | None, received: float) -> bool:
        """Store a sample of stream ``name``; see :meth:`StreamCache.put`.

        Raises:
            KeyError: for a stream name not configured.
        """
        s = self._stream(name)
        with self._lock:
            return s.cache.put(value, stamp, received)

    def count_malformed(self, name: str) -> None:
        """Count a message of stream ``name`` that could not be converted."""
        s = self._stream(name)
        with self._lock:
            s.cache.count_malformed()

    def sample(self, t: float) -> AlignedTick:
        """Choose every stream's sample for a tick at time ``t`` and count the outcome.

        Args:
            t: Tick time in seconds.

        Returns:
            The tick; ``values`` is filled only when it is complete.
        """
        if not _finite(t):
            raise ValueError(f"tick time must be finite, got {t}")
        inf = math.inf
        stamps: dict[str, float] = {}
        ages: dict[str, float] = {}
        delays: dict[str, float] = {}
        missing: list[str] = []
        stale: list[str] = []
        with self._lock:
            self.rate.tick(t)
            self.ticks += 1
            chosen = []
            for s in self._streams:
                cache = s.cache
                i = cache._index_at(t)
                name = s.name
                if i < 0:
                    ages[name] = inf
                    s.missing += 1
                    missing.append(name)
                    continue
                sample = cache._samples[i]
                age = t - sample.stamp
                delay = sample.received - sample.stamp
                stamps[name] = sample.stamp
                ages[name] = age
                delays[name] = delay
                s.ages.append(age)
                s.delays.append(delay)
                if age > s.max_age_seen:
                    s.max_age_seen = age
                if age > s.max_age:
                    s.stale += 1
                    stale.append(name)
                chosen.append((s, i, sample))
            complete = not missing and not stale
            values: dict[str, np.ndarray] = {}
            if complete:
                self.complete_ticks += 1
                for s, i, sample in chosen:
                    s.cache._mark_used(i)
                    values[s.name] = sample.value
        return AlignedTick(t, complete, values, stamps, ages, delays, tuple(missing), tuple(stale))

    def reset_counters(self) -> None:
        """Zero every count and the rate meter (episode start); held samples are kept."""
        with self._lock:
            self.ticks = 0
            self.complete_ticks = 0
            self.rate.reset()
            for s in self._streams:
                s.reset()
                s.cache.reset_counters()

    def summary(self) -> dict[str, Any]:
        """JSON-compatible timing report since the last counter reset (episode metadata).

        Returns:
            ``{"ticks", "complete_ticks", "gap_ticks", "complete_fraction", "rate": {...},
            "streams": {name: {...}}}`` where each stream reports ``received``, ``late``,
            ``malformed``, ``unstamped``, ``gaps``, ``dropped_estimate``, ``used``,
            ``missing_ticks``, ``stale_ticks``, ``max_age_s``, ``expected_rate_hz``,
            ``measured_rate_hz``, ``age_median_s`` and ``receive_delay_median_s`` (over the
            last ``window`` ticks) and ``age_max_s``. Undefined figures are None.
        """
        with self._lock:
            streams = {}
            for s in self._streams:
                c = s.cache
                streams[s.name] = {
                    "received": c.received,
                    "late": c.late,
                    "malformed": c.malformed,
                    "unstamped": c.unstamped,
                    "gaps": c.gaps,
                    "dropped_estimate": c.dropped,
                    "used": c.used,
                    "missing_ticks": s.missing,
                    "stale_ticks": s.stale,
                    "max_age_s": c.config.max_age_s,
                    "expected_rate_hz": c.config.expected_rate_hz,
                    "measured_rate_hz": _json_float(c.measured_rate_hz()),
                    "age_median_s": _json_float(s.ages.median()),
                    "age_max_s": _json_float(s.max_age_seen),
                    "receive_delay_median_s": _json_float(s.delays.median()),
                }
            return {
                "ticks": self.ticks,
                "complete_ticks": self.complete_ticks,
                "gap_ticks": self.gap_ticks,
                "complete_fraction": self.complete_ticks / self.ticks if self.ticks else None,
                "rate": self.rate.stats().as_dict(),
                "streams": streams,
            }
