"""Episode control and writing, shared by the recorder and the DAgger node.

An :class:`EpisodeSession` owns a crash-safe ``il_core.data.DatasetWriter`` (driven from a
background thread, so disk stalls never reach the control loop) and exposes the
episode control every recording node offers: services ``~/start``, ``~/stop``,
``~/discard``, ``~/mark_success``, ``~/mark_failure`` (``std_srvs/Trigger``) and the
episode-control topic (std_msgs/String ``start``, ``stop``, ``discard``, ``success``,
``failure``; ``success``/``failure`` label the open episode and end it, so one button press
does both). It reports every start, save and discard on ``~/status`` (JSON strings).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import numpy as np
from rclpy.node import Node
from std_msgs.msg import String
from std_srvs.srv import Trigger

from il_core.data import DatasetError, DatasetWriter, EpisodeInfo
from il_core.data.background import BackgroundWriter, WriterCallbacks
from il_core.mapping import RobotMapping
from il_core.recording import recording_extras
from il_core.spec import SpecError
from il_ros.common import (
    CONTROL_QOS,
    EPISODE_CONTROL_TOPIC,
    STATUS_QOS,
    destroy_entities,
    stamp_now,
)


def mapping_extras(mapping: RobotMapping) -> dict[str, int]:
    """The per-step extras (:mod:`il_core.recording`) of a recording with ``mapping``."""
    return recording_extras(len(mapping.observations), mapping.action.dim)


class EpisodeSession:
    """Episode state machine + writer of one recording node.

    Writing happens on a background thread (:class:`il_core.data.BackgroundWriter`): the
    node's timer only queues steps, so a slow fsync (seconds, on a busy disk) never delays
    a recording tick or an episode command. Saves and discards are reported on ``~/status``
    and in the log when they have reached the disk.

    Args:
        node: The owning node (services, topics and logs are created on it).
        writer: The dataset writer (the node's dataset); only the writer thread uses it.
        summary: Returns the JSON-compatible report stored in each episode's metadata.
        on_start: Called when an episode starts (reset the node's counters).
        start_metadata: Stored in each episode's metadata at start.
    """

    def __init__(
        self,
        node: Node,
        writer: DatasetWriter,
        summary: Callable[[], dict[str, Any]],
        on_start: Callable[[], None] | None = None,
        start_metadata: dict[str, Any] | None = None,
    ) -> None:
        self.node = node
        self._summary, self._on_start = summary, on_start
        self._start_metadata = start_metadata or {}
        self.started_at = 0.0
        self.episodes_saved = 0
        self.writer = BackgroundWriter(
            writer,
            WriterCallbacks(
                on_saved=self._saved, on_discarded=self._discarded, on_error=self._error
            ),
        )
        self.status_pub: Any = node.create_publisher(String, "~/status", STATUS_QOS)
        # Episode commands, the node's ticks and its services are callbacks of the node's
        # default (mutually exclusive) group: they never run at once, with any executor
        # (il_ros.common.EXECUTORS), so the episode state needs no lock. Only the writer
        # thread's reports below run elsewhere, and they touch no episode state.
        control = node.create_subscription(
            String, EPISODE_CONTROL_TOPIC, self._on_control, CONTROL_QOS
        )
        # Everything made on the node but ~/status, destroyed by close(): a lifecycle node
        # that is cleaned up and configured again must not end with two of each service.
        self._entities: list[Any] = [control] + [
            node.create_service(Trigger, f"~/{name}", self._trigger(fn))
            for name, fn in self._commands(services=True).items()
        ]

    @property
    def recording(self) -> bool:
        """Whether an episode is open."""
        return self.writer.episode_open

    @property
    def rejected_steps(self) -> int:
        """Steps the writer refused (bad shape, NaN, ...), all episodes."""
        return self.writer.rejected_steps

    @property
    def steps_in_episode(self) -> int:
        """Steps queued for the open episode."""
        return self.writer.steps_in_episode

    def writer_report(self) -> dict[str, int]:
        """Counters of the background writer, for diagnostics."""
        w = self.writer
        return {
            "write_backlog": w.backlog,
            "dropped_steps_disk_behind": w.dropped_steps,
            "rejected_steps": w.rejected_steps,
            "write_errors": w.write_errors,
        }

    def _commands(self, services: bool = False) -> dict[str, Callable[[], tuple[bool, str]]]:
        success, failure = ("mark_success", "mark_failure") if services else ("success", "failure")
        return {
            "start": self.start,
            "stop": self.stop,
            "discard": self.discard,
            success: lambda: self.stop(True),
            failure: lambda: self.stop(False),
        }

    def status(self, event: dict[str, Any]) -> None:
        """Publish a JSON status event on ``~/status``."""
        pub = self.status_pub
        if pub is not None:  # None once closed
            pub.publish(String(data=json.dumps(event, default=str)))

    def start(self) -> tuple[bool, str]:
        """Open a new episode (an open one is kept, not restarted)."""
        if self.recording:
            return False, "an episode is already being recorded"
        self.writer.start_episode(dict(self._start_metadata))
        if self._on_start is not None:
            self._on_start()
        self.started_at = stamp_now(self.node)
        self.status({"event": "started"})
        return True, "started"

    def stop(self, success: bool | None = None) -> tuple[bool, str]:
        """End the open episode, optionally labelled; it is committed in the background."""
        if not self.recording:
            return False, "no episode is being recorded"
        return self.end(success, "stopped")

    def end(self, success: bool | None, why: str) -> tuple[bool, str]:
        """Queue the commit of the open episode (there must be one).

        The summary is taken now, at the end of the episode; ``saved`` (or ``discarded``,
        if no step was recorded) follows on ``~/status`` once the files are on disk.
        """
        steps = self.writer.steps_in_episode
        self.writer.end_episode(success, {"recording": self._summary()}, why)
        return True, f"ending the episode ({steps} steps queued)"

    def discard(self) -> tuple[bool, str]:
        """Drop the open episode."""
        if not self.writer.discard_episode():
            return False, "no episode is being recorded"
        return True, "discarding"

    def add_step(
        self,
        obs: dict[str, np.ndarray],
        action: np.ndarray,
        t: float,
        extras: dict[str, np.ndarray],
    ) -> bool:
        """Queue one step of the open episode; False if it was dropped."""
        return self.writer.add_step(obs, action, t, extras)

    def close(self, timeout: float = 30.0) -> None:
        """Commit an open episode unlabelled and destroy the session's ROS entities.

        On Ctrl-C, shutdown and lifecycle cleanup: the open episode is committed, everything
        queued is written, then the services, subscription and publisher are destroyed.

        Idempotent: a second call (shutdown after cleanup) does nothing.
        """
        if self.status_pub is None:
            return
        if self.recording:
            self.end(None, "node shutdown")
        # The writer thread reports on ~/status until it has drained: close it first.
        self.writer.close(timeout)
        pub, self.status_pub = self.status_pub, None
        destroy_entities(self.node, [*self._entities, pub])
        self._entities.clear()

    # ------------------------------------------------------------- writer thread reports

    def _saved(self, info: EpisodeInfo, why: str) -> None:
        self.episodes_saved += 1
        rec = info.metadata.get("recording", {}) if info.metadata else {}
        brief = {k: rec.get(k) for k in ("ticks", "complete_ticks", "gap_ticks")}
        self.status(
            {
                "event": "saved",
                "episode": info.path.name,
                "length": info.length,
                "success": info.success,
                "why": why,
                "measured_rate_hz": info.measured_rate_hz,
                **brief,
            }
        )
        self.node.get_logger().info(
            f"saved {info.path.name}: {info.length} steps, "
            f"{info.measured_rate_hz or 0:.1f} Hz measured, success={info.success}, "
            f"gap ticks {brief['gap_ticks']}"
        )

    def _discarded(self, reason: str, steps: int) -> None:
        self.status({"event": "discarded", "reason": reason, "steps": steps})
        self.node.get_logger().info(f"discarded an episode of {steps} steps: {reason}")

    def _error(self, e: BaseException) -> None:
        rejected = isinstance(e, (DatasetError, SpecError))
        what = "step rejected, not recorded" if rejected else "dataset write failed"
        self.node.get_logger().error(f"{what}: {e}", throttle_duration_sec=2.0)
        if not rejected:
            self.status({"event": "error", "error": str(e)})

    def _on_control(self, msg: String) -> None:
        cmd = msg.data.strip().lower()
        commands = self._commands()
        if cmd not in commands:
            self.node.get_logger().warning(
                f"unknown episode command {msg.data!r}; expected one of {sorted(commands)}"
            )
            return
        ok, text = commands[cmd]()
        # A refused label is a warning: "success" with no open episode loses what the
        # operator meant, and is what they need to see when an episode seems to vanish. A
        # refused stop or discard loses nothing (a second press, a script that also stops).
        # One call per severity, since rclpy refuses a call site whose severity changes.
        log = self.node.get_logger()
        if ok:
            log.info(f"episode control {cmd!r}: {text}")
        elif cmd in ("success", "failure"):
            log.warning(f"episode control {cmd!r} refused: {text}")
        else:
            log.info(f"episode control {cmd!r} ignored: {text}")

    @staticmethod
    def _trigger(fn: Callable[[], tuple[bool, str]]) -> Any:
        def handler(request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
            response.success, response.message = fn()
            return response

        return handler
