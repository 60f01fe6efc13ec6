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

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rclpy.node import Node
from std_msgs.msg import Bool

from il_core.config import ConfigError
from il_core.data import DatasetError, DatasetWriter
from il_core.recording import ACTION_STREAM, demonstration_step
from il_ros.common import (
    LATCHED_QOS,
    declare,
    diagnostic_array,
    load_node_mapping,
    sensor_qos,
    spin_node,
    stamp_now,
)
from il_ros.conversions import decode_command
from il_ros.episodes import EpisodeSession, mapping_extras
from il_ros.inputs import ExtraStream, ObservationInputs, declare_input_parameters
from il_ros.wiring import Endpoint, TopicWatch


class RecorderNode(Node):
    """Records demonstrations; see the module docstring."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__("recorder", **kwargs)
        shared = declare_input_parameters(self, lifecycle=False)
        mapping_file = shared["mapping_file"]
        reliable, diag_period = shared["reliable_sensors"], shared["diagnostics_period_s"]
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
        auto_start = declare(self, "auto_start", False, "start an episode immediately")
        deadman_topic = declare(
            self,
            "deadman_topic",
            "/il_ros/deadman",
            "std_msgs/Bool deadman of a human teleop (latched): steps recorded while it is "
            "released get has_expert_label 0 (their action is the teleop's idle output, not a "
            "demonstration); empty or never published: every step is a label",
            read_only=True,
        )
        self.trigger = trigger = declare(
            self,
            "trigger",
            "",
            "observation key whose arrival records a step (one step per message of that "
            "stream, e.g. per camera frame or joint state); empty: a timer at record_rate_hz",
            read_only=True,
        )
        if not mapping_file:
            raise ConfigError(
                "parameter 'mapping_file' is required: the robot mapping YAML (topics <-> "
                "observation keys, command topic), e.g. mapping_file:=/path/to/my_robot.yaml"
            )
        if on_incomplete not in ("keep", "discard"):
            raise ConfigError(
                f"parameter 'on_incomplete' must be keep or discard, got {on_incomplete!r}"
            )
        self.mapping = load_node_mapping(mapping_file)[1]
        keys = [o.key for o in self.mapping.observations]
        if trigger and trigger not in keys:
            raise ConfigError(
                f"parameter 'trigger' {trigger!r} is not an observation key of "
                f"{mapping_file}; use one of {keys} or empty for a timer"
            )
        self.rate_hz = rate or self.mapping.control_rate_hz
        spec = self.mapping.to_spec(extras=mapping_extras(self.mapping))
        self.writer = DatasetWriter(
            Path(out), spec, flush_every=flush_every, on_incomplete=on_incomplete
        )
        if self.writer.recovered:
            self.get_logger().warning(f"recovered after a crash: {self.writer.recovered}")
        sink = self.mapping.action
        self.watch = TopicWatch(self)
        self.inputs = ObservationInputs(
            self,
            self.mapping,
            self.watch,
            rate_hz=self.rate_hz,
            reliable=reliable,
            extra=[
                ExtraStream(
                    ACTION_STREAM,
                    sink.topic,
                    sink.type,
                    lambda m: decode_command(sink, m),
                    self.action_max_age,
                    sensor_qos(True, depth=10),
                    "command",
                )
            ],
            on_message=self._on_trigger_message if trigger else None,
        )
        self.aligner = self.inputs.aligner
        self.stream_names = list(self.inputs.names)
        # None until a deadman message arrives: no deadman in use (a scripted expert).
        self.deadman: bool | None = None
        if deadman_topic:
            sub = self.create_subscription(Bool, deadman_topic, self._on_deadman, LATCHED_QOS)
            self.watch.add(
                Endpoint(sub.topic_name, "std_msgs/msg/Bool", "subscribe", "deadman", False)
            )
        self.session = EpisodeSession(
            self,
            self.writer,
            self.aligner.summary,
            on_start=self.aligner.reset_counters,
            start_metadata={"mapping": self.mapping.to_dict()},
        )
        self.diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        if not trigger:
            self.create_timer(1.0 / self.rate_hz, self._tick)
        self.create_timer(diag_period, self._publish_diagnostics)
        when = f"on each {trigger!r} message" if trigger else f"at {self.rate_hz:g} Hz"
        self.get_logger().info(f"recording {self.stream_names} {when} into {self.writer.root}")
        self.session.status({"event": "ready", "recovered": self.writer.recovered})
        if auto_start:
            self.session.start()

    def _on_trigger_message(self, key: str) -> None:
        if key == self.trigger:
            self._tick()

    def _tick(self) -> None:
        now = stamp_now(self)
        tick = self.aligner.sample(now)
        session = self.session
        if not session.recording:
            return
        step = demonstration_step(tick, self.stream_names, self.deadman)
        if step is None:
            self.get_logger().debug(f"gap: {tick.describe()}")
            return
        session.add_step(step.obs, step.action, now, step.extras)
        if self.max_episode_s and now - session.started_at >= self.max_episode_s:
            session.end(None, "max_episode_s reached")

    def _on_deadman(self, msg: Bool) -> None:
        self.deadman = bool(msg.data)

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
        level, message = self.watch.escalate(level, message)
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
                    "malformed_messages": self.inputs.malformed,
                    "deadman": "none" if self.deadman is None else str(self.deadman),
                    "wiring": self.watch.problems,
                    **writer,
                    "alignment": summary,
                },
            )
        )


def main(args: list[str] | None = None) -> int:
    """``ros2 run il_ros recorder --ros-args --params-file config/recorder.yaml``."""
    return spin_node(
        RecorderNode,
        args,
        on_exit=lambda n: n.session.close(),
        startup_errors=(ConfigError, DatasetError, OSError),
        name="recorder",
    )


if __name__ == "__main__":
    raise SystemExit(main())
