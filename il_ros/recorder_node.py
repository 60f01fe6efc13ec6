"""Recorder node: samples every mapped stream at the record rate into a crash-safe dataset.

A thin adapter: messages are converted to numpy (``il_ros.conversions``), aligned causally by
``il_core.alignment.TickAligner`` (latest message at or before the tick, per-stream maximum
age; a tick is recorded only if every stream, the command included, is fresh, otherwise it is
counted as a gap), and written by ``il_core.data.DatasetWriter``, whose per-episode atomic
commit means killing this node loses no completed episode.

The action recorded is the command actually sent on the mapping's command topic (whoever sent
it: teleop, the inference node or the DAgger mux). Each step also records, as extras, every
stream's age at the tick and its receive delay (receive time minus header stamp); each
episode's metadata reports its measured rate, gaps and per-stream drops, which are also
published on ``/diagnostics``.

Episode control: services ``~/start``, ``~/stop``, ``~/discard``, ``~/mark_success``,
``~/mark_failure`` (``std_srvs/Trigger``) and the episode-control topic (std_msgs/String:
``start``, ``stop``, ``discard``, ``success``, ``failure``). ``success``/``failure`` label the
open episode and end it, so one button press does both.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.node import Node

from il_core.alignment import StreamConfig, TickAligner
from il_core.data import DatasetWriter
from il_ros.common import (
    declare,
    diagnostic_array,
    load_node_mapping,
    sensor_qos,
    spin_node,
    stamp_now,
    stream_callback,
)
from il_ros.conversions import decode_command, make_observation_decoder, message_class
from il_ros.episodes import (
    EXTRA_AGE,
    EXTRA_DELAY,
    EXTRA_EXECUTED,
    EXTRA_HAS_LABEL,
    EXTRA_INTERVENTION,
    EpisodeSession,
    recording_extras,
)

ACTION_STREAM = "action"


_ZERO = np.zeros(1, np.float32)
_ONE = np.ones(1, np.float32)


class RecorderNode(Node):
    """Records demonstrations; see the module docstring."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__("recorder", **kwargs)
        mapping_file = declare(
            self, "mapping_file", "", "robot mapping YAML (topics <-> keys)", read_only=True
        )
        out = declare(
            self,
            "output_dir",
            "il_ros_data",
            "dataset directory (created or appended)",
            read_only=True,
        )
        rate = declare(
            self,
            "record_rate_hz",
            0.0,
            "record rate; 0 uses the mapping's control_rate_hz",
            valid_range=(0.0, 1000.0),
        )
        flush_every = declare(
            self,
            "flush_every",
            30,
            "steps between flushes to disk (a crash loses at most this many steps)",
            valid_range=(1, 100000),
        )
        self.action_max_age = declare(
            self,
            "action_max_age_s",
            0.25,
            "a tick is recorded only if the last command is at most this old",
            valid_range=(0.001, 60.0),
        )
        reliable = declare(
            self,
            "reliable_sensors",
            False,
            "subscribe observation topics RELIABLE instead of BEST_EFFORT",
        )
        on_incomplete = declare(
            self,
            "on_incomplete",
            "keep",
            "episodes left by a crash: keep (recover flushed steps) or discard",
            read_only=True,
        )
        self.max_episode_s = declare(
            self,
            "max_episode_s",
            0.0,
            "end an episode after this long (0 = no limit)",
            valid_range=(0.0, 86400.0),
        )
        diag_period = declare(
            self,
            "diagnostics_period_s",
            1.0,
            "diagnostics publish period",
            valid_range=(0.05, 60.0),
        )
        auto_start = declare(self, "auto_start", False, "start an episode immediately")
        if not mapping_file:
            raise ValueError("parameter 'mapping_file' is required (a robot mapping YAML)")
        if on_incomplete not in ("keep", "discard"):
            raise ValueError(
                f"parameter 'on_incomplete' must be keep or discard, got {on_incomplete!r}"
            )
        self.mapping = load_node_mapping(mapping_file)[1]
        self.rate_hz = rate or self.mapping.control_rate_hz
        spec = self.mapping.to_spec(extras=recording_extras(self.mapping))
        self.writer = DatasetWriter(
            Path(out), spec, flush_every=flush_every, on_incomplete=on_incomplete
        )
        if self.writer.recovered:
            self.get_logger().warning(f"recovered after a crash: {self.writer.recovered}")
        streams = [StreamConfig(o.key, o.max_age_s, None) for o in self.mapping.observations]
        streams.append(StreamConfig(ACTION_STREAM, self.action_max_age, None))
        self.aligner = TickAligner(streams, rate_hz=self.rate_hz)
        self.stream_names = [s.name for s in streams]
        self.session = EpisodeSession(
            self,
            self.writer,
            self.aligner.summary,
            on_start=self.aligner.reset_counters,
            start_metadata={"mapping": self.mapping.to_dict()},
        )
        self.malformed = 0

        def count() -> None:
            self.malformed += 1

        sensors = ReentrantCallbackGroup()
        qos = sensor_qos(reliable)
        for src in self.mapping.observations:
            self.create_subscription(
                message_class(src.type),
                src.topic,
                stream_callback(self, self.aligner, src.key, make_observation_decoder(src), count),
                qos,
                callback_group=sensors,
            )
        sink = self.mapping.action
        self.create_subscription(
            message_class(sink.type),
            sink.topic,
            stream_callback(
                self, self.aligner, ACTION_STREAM, lambda m: decode_command(sink, m), count
            ),
            sensor_qos(True, depth=10),
            callback_group=sensors,
        )
        self.diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.create_timer(
            1.0 / self.rate_hz, self._tick, callback_group=MutuallyExclusiveCallbackGroup()
        )
        self.create_timer(diag_period, self._publish_diagnostics)
        self.get_logger().info(
            f"recording {self.stream_names} at {self.rate_hz:g} Hz into {self.writer.root}"
        )
        self.session.status({"event": "ready", "recovered": self.writer.recovered})
        if auto_start:
            self.session.start()

    def _tick(self) -> None:
        now = stamp_now(self)
        tick = self.aligner.sample(now)
        session = self.session
        with session.lock:
            if not session.recording:
                return
            if not tick.complete:
                self.get_logger().debug(f"gap: {tick.describe()}")
                return
            obs = {k: tick.values[k] for k in self.stream_names if k != ACTION_STREAM}
            ages = np.array([tick.ages[k] for k in self.stream_names], np.float32)
            delays = np.array([tick.receive_delays[k] for k in self.stream_names], np.float32)
            action = tick.values[ACTION_STREAM]
            session.add_step_locked(
                obs,
                action,
                now,
                {
                    EXTRA_AGE: ages,
                    EXTRA_DELAY: delays,
                    EXTRA_INTERVENTION: _ZERO,
                    EXTRA_HAS_LABEL: _ONE,
                    EXTRA_EXECUTED: action,
                },
            )
            if self.max_episode_s and now - session.started_at >= self.max_episode_s:
                session.end_locked(None, "max_episode_s reached")

    def _publish_diagnostics(self) -> None:
        summary = self.aligner.summary()
        ticks = summary.get("ticks") or 0
        complete = summary.get("complete_ticks") or 0
        recording = self.session.recording
        level = DiagnosticStatus.OK
        message = "recording" if recording else "idle"
        if recording and ticks and complete / ticks < 0.9:
            level, message = DiagnosticStatus.WARN, "recording with gaps"
        writer = self.session.writer_report()
        if writer["dropped_steps_disk_behind"]:
            level, message = DiagnosticStatus.WARN, "disk too slow: steps dropped"
        if writer["write_errors"]:
            level, message = DiagnosticStatus.ERROR, "dataset writes failed"
        self.diag_pub.publish(
            diagnostic_array(
                self,
                "il_ros recorder",
                level,
                message,
                {
                    "recording": str(recording),
                    "episodes_saved": self.session.episodes_saved,
                    "steps_in_episode": self.session.steps_in_episode,
                    "malformed_messages": self.malformed,
                    **writer,
                    "alignment": summary,
                },
            )
        )


def main(args: list[str] | None = None) -> int:
    """``ros2 run il_ros recorder --ros-args --params-file config/recorder.yaml``."""
    return spin_node(RecorderNode, args, on_exit=lambda n: n.session.close())


if __name__ == "__main__":
    raise SystemExit(main())
