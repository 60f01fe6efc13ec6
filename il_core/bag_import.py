"""rosbag2 (MCAP or sqlite3) -> dataset, through the recorder's own conversions and ticks.

``il-core import-bag BAG [BAG ...] --mapping FILE --out DIR`` turns bags recorded with
``ros2 bag record`` into episodes, with the ``rosbags`` library (pure Python: no ROS install).
It replays the recorder node (:mod:`il_ros.recorder_node`) offline, with the same pieces:

- every message goes through the same decoder (:mod:`il_core.messages`) into the same
  :class:`~il_core.alignment.TickAligner`, with the bag's log time (the time ``ros2 bag
  record`` received it) as the receive time; header stamps are kept, so ages and receive
  delays mean what they mean live;
- the aligner is sampled on control ticks at the mapping's rate (``t0 + k / rate`` from the
  episode's start) and each complete tick becomes a step through
  :func:`il_core.recording.demonstration_step`, with the same extras and the same gap
  accounting; each episode's metadata holds the aligner's report (``recording``: ticks,
  gaps, stale and missing counts, measured stream rates) as the recorder writes it.

A tick sees exactly the messages logged before it. With ``trigger`` (the recorder's
parameter of the same name) a step is recorded at each message of one stream instead, after
it is cached: a bag and a live recording of the same run then take the same messages at
each step, except where a message reached the two recording processes on either side of a
tick. A live timer has its own phase, so with timer ticks the import agrees with a live
recording in its number of steps (within one tick per episode), not step for step.

Episodes: one bag is one episode by default; ``split_on_episode_topic`` follows the episode
commands of the recorder's control topic (``start``, ``stop``, ``success``, ``failure``,
``discard`` on ``/il_ros/episode_control``, as the live recorder obeys them); ``split_gap_s``
starts a new episode where every mapped stream is silent for longer. A teleop deadman
(``/il_ros/deadman``, ``std_msgs/Bool``) in the bag labels steps as the recorder does.

Every bag is checked before anything is written: a bag that cannot be opened, lacks a mapped
topic or holds it with another type raises :class:`BagImportError` naming the bag, the topic
and what was expected.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from rosbags.highlevel import AnyReader, AnyReaderError
from rosbags.typesys import Stores, get_typestore

from il_core.alignment import StreamConfig, TickAligner
from il_core.config import ConfigError
from il_core.data import DatasetWriter
from il_core.mapping import RobotMapping, load_mapping
from il_core.messages import ConversionError, decode_command, make_observation_decoder
from il_core.recording import ACTION_STREAM, demonstration_step, recording_extras

#: The recorder's episode-control topic (``il_ros.common.EPISODE_CONTROL_TOPIC``).
EPISODE_CONTROL_TOPIC = "/il_ros/episode_control"
#: The teleop deadman topic the recorder listens to by default.
DEADMAN_TOPIC = "/il_ros/deadman"
_STRING = "std_msgs/msg/String"
_BOOL = "std_msgs/msg/Bool"
#: What a decoder raises on a bad message (counted as malformed, never fatal).
_DECODE_ERRORS = (ConversionError, ValueError, TypeError, IndexError, AttributeError, KeyError)


class BagImportError(ConfigError):
    """A bag cannot be imported with this mapping; the message names the bag and topic."""


@dataclass(frozen=True)
class _Stream:
    name: str
    topic: str
    type: str
    what: str
    max_age_s: float
    decode: Callable[[Any], tuple[Any, float | None]]


def _streams(mapping: RobotMapping, action_max_age_s: float) -> list[_Stream]:
    """The recorder's streams: observations in mapping order, then the command."""
    out = [
        _Stream(
            s.key,
            s.topic,
            s.type,
            f"observation {s.key!r}",
            s.max_age_s,
            make_observation_decoder(s),
        )
        for s in mapping.observations
    ]
    sink = mapping.action
    out.append(
        _Stream(
            ACTION_STREAM,
            sink.topic,
            sink.type,
            "the command",
            action_max_age_s,
            lambda m: decode_command(sink, m),
        )
    )
    return out


def _open(path: Path) -> Any:
    """An opened ``rosbags`` AnyReader of one rosbag2 (directory, ``.mcap`` or ``.db3``)."""
    if not path.exists():
        raise BagImportError(f"bag {path}: no such file or directory")
    try:
        # Bags from Humble's sqlite3 plugin carry no message definitions: read them with
        # Humble's; MCAP bags and newer ones bring their own.
        reader = AnyReader([path], default_typestore=get_typestore(Stores.ROS2_HUMBLE))
        reader.open()
    except Exception as e:  # rosbags raises several unrelated types for unreadable bags
        raise BagImportError(
            f"bag {path}: cannot be read as a rosbag2 (MCAP or sqlite3): {e}"
        ) from None
    return reader


def check_bag(path: str | Path, mapping: RobotMapping) -> dict[str, Any]:
    """Check that a bag holds every mapped topic with the mapped type.

    Returns:
        ``{"bag", "topics": {topic: {"type", "messages"}}, "duration_s"}``.

    Raises:
        BagImportError: the bag cannot be read, or lacks a mapped topic, or holds one with
            another type (the message lists what the bag has).
    """
    path = Path(path)
    reader = _open(path)
    try:
        return _check(reader, path, mapping)
    finally:
        reader.close()


def _check(reader: Any, path: Path, mapping: RobotMapping) -> dict[str, Any]:
    have: dict[str, dict[str, Any]] = {}
    for c in reader.connections:
        entry = have.setdefault(c.topic, {"type": c.msgtype, "messages": 0})
        entry["messages"] += c.msgcount
        if entry["type"] != c.msgtype:
            entry["type"] = f"{entry['type']} and {c.msgtype}"
    problems = []
    for s in _streams(mapping, 1.0):
        got = have.get(s.topic)
        if got is None:
            problems.append(f"no topic {s.topic} ({s.what}, expected {s.type})")
        elif got["type"] != s.type:
            problems.append(f"topic {s.topic} ({s.what}) is {got['type']}, expected {s.type}")
        elif got["messages"] == 0:
            problems.append(f"topic {s.topic} ({s.what}) has no messages")
    if problems:
        listing = ", ".join(f"{t} ({v['type']})" for t, v in sorted(have.items())) or "nothing"
        raise BagImportError(f"bag {path}: " + "; ".join(problems) + f". The bag has: {listing}")
    return {
        "bag": str(path),
        "topics": have,
        "duration_s": reader.duration * 1e-9,
    }


class _Replay:
    """The recorder's state over one bag: aligner, ticks, open episode, deadman."""

    def __init__(
        self,
        writer: DatasetWriter,
        mapping: RobotMapping,
        streams: list[_Stream],
        rate_hz: float,
        source: dict[str, Any],
        tick_times: np.ndarray | None,
        trigger: str | None = None,
    ) -> None:
        self.writer, self.mapping, self.source = writer, mapping, source
        self.trigger = trigger
        self.names = [s.name for s in streams]
        self.aligner = TickAligner(
            [StreamConfig(s.name, s.max_age_s) for s in streams], rate_hz=rate_hz
        )
        self.period = 1.0 / rate_hz
        self.tick_times = tick_times
        self.deadman: bool | None = None
        self.open = False
        self.next_tick = 0.0
        self.first_tick, self.tick_index = 0.0, 0
        self.steps = 0
        self.saved: list[dict[str, Any]] = []
        self.discarded = 0
        self.ignored_commands: list[str] = []

    def start(self, t: float) -> bool:
        if self.open:
            return False
        self.writer.start_episode({"mapping": self.mapping.to_dict(), "source": self.source})
        self.aligner.reset_counters()
        self.open, self.steps = True, 0
        if self.tick_times is None:
            self.first_tick, self.tick_index, self.next_tick = t, 0, t
        return True

    def ticks_before(self, t: float, inclusive: bool = False) -> None:
        """Run every control tick before ``t`` (at or before with ``inclusive``).

        Given tick times that fall while no episode is open are skipped, as the live
        recorder's ticks are. With a trigger stream, ticks come from its messages only.
        """
        if self.trigger is not None:
            return
        if self.tick_times is not None:
            times = self.tick_times
            lo = np.searchsorted(times, self.next_tick, side="left")
            hi = np.searchsorted(times, t, side="right" if inclusive else "left")
            for tick_t in times[lo:hi] if self.open else ():
                self.tick(float(tick_t))
            if hi > lo:
                self.next_tick = float(np.nextafter(times[hi - 1], np.inf))
            return
        if not self.open:
            return
        while self.next_tick < t or (inclusive and self.next_tick == t):
            self.tick(self.next_tick)
            # From the start, not accumulated: hours of ticks do not drift.
            self.tick_index += 1
            self.next_tick = self.first_tick + self.tick_index * self.period

    def tick(self, t: float) -> None:
        """One control tick at ``t``: a step if every stream is fresh."""
        step = demonstration_step(self.aligner.sample(t), self.names, self.deadman)
        if step is not None:
            self.writer.add_step(step.obs, step.action, step.timestamp, step.extras)
            self.steps += 1

    def end(self, success: bool | None, why: str) -> bool:
        if not self.open:
            return False
        self.open = False
        if self.steps == 0:
            self.writer.discard_episode()
            self.discarded += 1
            return True
        info = self.writer.end_episode(
            success, {"recording": self.aligner.summary(), "ended": why}
        )
        self.saved.append({"episode": info.path.name, "steps": info.length, "success": success})
        return True

    def discard(self) -> bool:
        if not self.open:
            return False
        self.open = False
        self.writer.discard_episode()
        self.discarded += 1
        return True


def _deserialize(reader: Any, raw: bytes, msgtype: str) -> Any:
    """One message from its CDR bytes, tolerating bytes after its end.

    rosbags refuses a message followed by more than 3 unexplained bytes; Fast CDR 2 (the
    rclpy serialiser of Jazzy and newer) can leave alignment padding there, e.g. after a
    ``JointState`` whose ``effort`` is empty. Every field has been read by then, so the
    message is decoded without that check; a message that really is cut short still fails.
    """
    try:
        return reader.deserialize(raw, msgtype)
    except AnyReaderError as e:
        if "size mismatch" not in str(e):
            raise
    store = reader.typestore
    msgdef = store.get_msgdef(msgtype)
    decode = msgdef.deserialize_cdr_le if raw[1] else msgdef.deserialize_cdr_be
    return decode(raw[4:], 0, msgdef.cls, store)[0]


def _messages(reader: Any, topics: set[str]) -> Iterator[tuple[str, float, Any]]:
    """``(topic, log time s, message)`` of the given topics, in log-time order."""
    conns = [c for c in reader.connections if c.topic in topics]
    for conn, t_ns, raw in reader.messages(connections=conns):
        yield conn.topic, t_ns * 1e-9, (conn, raw)


def import_bags(
    bags: Sequence[str | Path],
    mapping: RobotMapping | str | Path,
    out: str | Path,
    *,
    split_on_episode_topic: bool = False,
    split_gap_s: float | None = None,
    rate_hz: float | None = None,
    action_max_age_s: float = 0.25,
    episode_topic: str = EPISODE_CONTROL_TOPIC,
    deadman_topic: str = DEADMAN_TOPIC,
    flush_every: int = 200,
    tick_times: Sequence[float] | np.ndarray | None = None,
    trigger: str | None = None,
) -> dict[str, Any]:
    """Import rosbag2 recordings into a dataset (created, or appended if its spec matches).

    Args:
        bags: Bag directories (with ``metadata.yaml``) or single ``.mcap``/``.db3`` files.
        mapping: The robot mapping (object or YAML path) naming topics, keys and the command.
        out: Dataset directory.
        split_on_episode_topic: Episodes follow the recorder's episode commands in the bag
            (messages before the first ``start`` are not recorded); otherwise each bag (or
            each gap-separated part) is one episode.
        split_gap_s: Start a new episode where every mapped stream is silent for longer
            than this (seconds).
        rate_hz: Tick rate (default: the mapping's ``control_rate_hz``), as the recorder's
            ``record_rate_hz``.
        action_max_age_s: A tick is recorded only if the command is at most this old (the
            recorder's parameter of the same name).
        episode_topic: The episode-control topic (``std_msgs/String``).
        deadman_topic: A teleop's deadman (``std_msgs/Bool``); used when the bag has it.
        flush_every: Steps between flushes (the writer's crash-safety granularity).
        tick_times: Explicit tick times (seconds, increasing, on the log-time clock) instead
            of ticks at ``rate_hz``.
        trigger: An observation key: one tick at each of its messages (at its log time,
            after it is cached) instead of ticks at ``rate_hz``, as the recorder's ``trigger``
            parameter does.

    Returns:
        JSON-compatible report: ``out``, ``episodes``, ``steps``, and per bag its episodes,
        messages read, malformed messages per stream and discarded (empty) episodes.

    Raises:
        BagImportError: a bag is unreadable, lacks a mapped topic or has it with another
            type (checked for every bag before anything is written).
        ConfigError: bad arguments or mapping.
    """
    if not bags:
        raise ConfigError("import-bag: give at least one bag")
    if not isinstance(mapping, RobotMapping):
        mapping = load_mapping(mapping)
    rate = float(rate_hz or mapping.control_rate_hz)
    if not rate > 0:
        raise ConfigError(f"--rate must be > 0, got {rate_hz}")
    if split_gap_s is not None and not split_gap_s > 0:
        raise ConfigError(f"--split-gap must be > 0 seconds, got {split_gap_s}")
    if not action_max_age_s > 0:
        raise ConfigError(f"--action-max-age must be > 0 seconds, got {action_max_age_s}")
    keys = [o.key for o in mapping.observations]
    if trigger is not None and trigger not in keys:
        raise ConfigError(f"--trigger {trigger!r} is not an observation key; use one of {keys}")
    if trigger is not None and tick_times is not None:
        raise ConfigError("give tick_times or a trigger, not both")
    times = None
    if tick_times is not None:
        times = np.asarray(tick_times, np.float64)
        if times.ndim != 1 or (times.size > 1 and np.any(np.diff(times) <= 0)):
            raise ConfigError("tick_times must be a 1-D increasing sequence of seconds")
    paths = [Path(b) for b in bags]
    checks = [check_bag(p, mapping) for p in paths]  # every bag, before anything is written
    if split_on_episode_topic:
        for p, c in zip(paths, checks, strict=True):
            got = c["topics"].get(episode_topic, {}).get("type")
            if got != _STRING:
                raise BagImportError(
                    f"bag {p}: --split-on-episode-topic needs {episode_topic} "
                    f"({_STRING}), the bag has {got or 'no such topic'}"
                )
    streams = _streams(mapping, action_max_age_s)
    spec = mapping.to_spec(extras=recording_extras(len(mapping.observations), mapping.action.dim))
    writer = DatasetWriter(Path(out), spec, flush_every=flush_every)
    report: dict[str, Any] = {"out": str(writer.root), "bags": []}
    try:
        for path, check in zip(paths, checks, strict=True):
            report["bags"].append(
                _import_one(
                    path,
                    check,
                    writer,
                    mapping,
                    streams,
                    rate,
                    split_on_episode_topic,
                    split_gap_s,
                    episode_topic,
                    deadman_topic,
                    times,
                    trigger,
                )
            )
    finally:
        if writer.episode_in_progress:
            writer.discard_episode()
        writer.close()
    report["episodes"] = sum(len(b["episodes"]) for b in report["bags"])
    report["steps"] = sum(e["steps"] for b in report["bags"] for e in b["episodes"])
    return report


def _import_one(
    path: Path,
    check: dict[str, Any],
    writer: DatasetWriter,
    mapping: RobotMapping,
    streams: list[_Stream],
    rate: float,
    split_on_episode_topic: bool,
    split_gap_s: float | None,
    episode_topic: str,
    deadman_topic: str,
    tick_times: np.ndarray | None,
    trigger: str | None,
) -> dict[str, Any]:
    by_topic: dict[str, list[_Stream]] = {}
    for s in streams:
        by_topic.setdefault(s.topic, []).append(s)
    topics = set(by_topic)
    use_deadman = check["topics"].get(deadman_topic, {}).get("type") == _BOOL
    if use_deadman:
        topics.add(deadman_topic)
    if split_on_episode_topic:
        topics.add(episode_topic)
    replay = _Replay(writer, mapping, streams, rate, {"bag": str(path)}, tick_times, trigger)
    malformed = dict.fromkeys((s.name for s in streams), 0)
    messages = 0
    last_stream_t: float | None = None
    reader = _open(path)
    try:
        for topic, t, (conn, raw) in _messages(reader, topics):
            messages += 1
            if topic == episode_topic and split_on_episode_topic:
                replay.ticks_before(t)
                _episode_command(replay, _deserialize(reader, raw, conn.msgtype).data, t)
                continue
            if topic == deadman_topic and use_deadman:
                replay.ticks_before(t)
                replay.deadman = bool(_deserialize(reader, raw, conn.msgtype).data)
                continue
            if split_gap_s is not None and last_stream_t is not None:
                if t - last_stream_t > split_gap_s and replay.open:
                    replay.ticks_before(last_stream_t, inclusive=True)
                    replay.end(None, f"streams silent for {t - last_stream_t:.3f} s")
            last_stream_t = t
            if not split_on_episode_topic and not replay.open:
                replay.start(t)
            replay.ticks_before(t)
            try:
                msg = _deserialize(reader, raw, conn.msgtype)
            except (AnyReaderError, *_DECODE_ERRORS):
                msg = None  # undecodable bytes: malformed for every stream of the topic
            for s in by_topic[topic]:
                try:
                    if msg is None:
                        raise ConversionError("undecodable CDR")
                    value, stamp = s.decode(msg)
                except _DECODE_ERRORS:
                    malformed[s.name] += 1
                    replay.aligner.count_malformed(s.name)
                    continue
                replay.aligner.put(s.name, value, stamp, t)
                if s.name == replay.trigger and replay.open:
                    replay.tick(t)
        if replay.open:
            # What the live recorder does at shutdown: commit the open episode unlabelled.
            if last_stream_t is not None:
                replay.ticks_before(last_stream_t, inclusive=True)
            replay.end(None, "end of bag")
    finally:
        reader.close()
    return {
        "bag": str(path),
        "messages": messages,
        "episodes": replay.saved,
        "discarded_episodes": replay.discarded,
        "malformed": {k: v for k, v in malformed.items() if v},
        "ignored_episode_commands": replay.ignored_commands,
    }


def _episode_command(replay: _Replay, text: str, t: float) -> None:
    """Apply one episode command as :class:`il_ros.episodes.EpisodeSession` does."""
    cmd = str(text).strip().lower()
    if cmd == "start":
        ok = replay.start(t)
    elif cmd == "stop":
        ok = replay.end(None, "stopped")
    elif cmd in ("success", "failure"):
        ok = replay.end(cmd == "success", "stopped")
    elif cmd == "discard":
        ok = replay.discard()
    else:
        ok = False
    if not ok:
        replay.ignored_commands.append(f"{cmd}@{t:.3f}")
