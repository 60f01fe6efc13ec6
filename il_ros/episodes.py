"""Episode control and writing, shared by the recorder and the DAgger node.

An :class:`EpisodeSession` owns a crash-safe ``il_core.data.DatasetWriter`` and exposes the
episode control every recording node offers: services ``~/start``, ``~/stop``,
``~/discard``, ``~/mark_success``, ``~/mark_failure`` (``std_srvs/Trigger``) and the
episode-control topic (std_msgs/String ``start``, ``stop``, ``discard``, ``success``,
``failure``; ``success``/``failure`` label the open episode and end it, so one button press
does both). It reports every start, save and discard on ``~/status`` (JSON strings).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import Any

import numpy as np
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.node import Node
from std_msgs.msg import String
from std_srvs.srv import Trigger

from il_core.data import DatasetError, DatasetWriter
from il_core.mapping import RobotMapping
from il_core.spec import SpecError
from il_ros.common import CONTROL_QOS, EPISODE_CONTROL_TOPIC, STATUS_QOS, stamp_now

# Per-step extras of every dataset recorded on ROS, by the recorder and the DAgger node
# alike, so that rounds aggregate into one training set (same spec) and DAgger statistics
# can be computed over all of it.
#: Age of each stream's sample at the tick (observation keys in mapping order, then the
#: command), seconds.
EXTRA_AGE = "obs_age"
#: Receive time minus header stamp of each of those samples, seconds.
EXTRA_DELAY = "receive_delay"
#: 1 where the expert drove the robot in a DAgger session (always 0 for teleop demos).
EXTRA_INTERVENTION = "is_intervention"
#: 1 where the step's action is an expert label (teleop demos: always).
EXTRA_HAS_LABEL = "has_expert_label"
#: The command actually executed (policy or expert).
EXTRA_EXECUTED = "executed_action"


def recording_extras(mapping: RobotMapping) -> dict[str, int]:
    """``{extra name: dim}`` declared by every recording node for ``mapping``."""
    n = len(mapping.observations) + 1
    return {
        EXTRA_AGE: n,
        EXTRA_DELAY: n,
        EXTRA_INTERVENTION: 1,
        EXTRA_HAS_LABEL: 1,
        EXTRA_EXECUTED: mapping.action.dim,
    }


class EpisodeSession:
    """Episode state machine + writer of one recording node.

    Args:
        node: The owning node (services, topics and logs are created on it).
        writer: The dataset writer (the node's dataset).
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
        self.node, self.writer = node, writer
        self._summary, self._on_start = summary, on_start
        self._start_metadata = start_metadata or {}
        self.lock = threading.Lock()  # the writer is used from timer and service threads
        self.recording = False
        self.started_at = 0.0
        self.episodes_saved = 0
        self.rejected_steps = 0
        self.status_pub = node.create_publisher(String, "~/status", STATUS_QOS)
        group = MutuallyExclusiveCallbackGroup()
        node.create_subscription(
            String, EPISODE_CONTROL_TOPIC, self._on_control, CONTROL_QOS, callback_group=group
        )
        for name, fn in self._commands(services=True).items():
            node.create_service(Trigger, f"~/{name}", self._trigger(fn), callback_group=group)

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
        self.status_pub.publish(String(data=json.dumps(event, default=str)))

    def start(self) -> tuple[bool, str]:
        """Open a new episode (an open one is kept, not restarted)."""
        with self.lock:
            if self.recording:
                return False, "an episode is already being recorded"
            self.writer.start_episode(dict(self._start_metadata))
            if self._on_start is not None:
                self._on_start()
            self.recording = True
            self.started_at = stamp_now(self.node)
        self.status({"event": "started"})
        return True, "started"

    def stop(self, success: bool | None = None) -> tuple[bool, str]:
        """End the open episode, optionally labelled, and commit it atomically."""
        with self.lock:
            if not self.recording:
                return False, "no episode is being recorded"
            return self.end_locked(success, "stopped")

    def end_locked(self, success: bool | None, why: str) -> tuple[bool, str]:
        """Commit the open episode; the caller holds :attr:`lock`."""
        self.recording = False
        summary = self._summary()
        brief = {k: summary.get(k) for k in ("ticks", "complete_ticks", "gap_ticks")}
        if self.writer.num_steps_in_episode == 0:
            self.writer.discard_episode()
            self.status({"event": "discarded", "reason": "no recorded step", **brief})
            return False, "episode had no recorded step; discarded"
        info = self.writer.end_episode(success=success, metadata={"recording": summary})
        self.episodes_saved += 1
        self.status(
            {
                "event": "saved",
                "episode": info.path.name,
                "length": info.length,
                "success": success,
                "why": why,
                "measured_rate_hz": info.measured_rate_hz,
                **brief,
            }
        )
        self.node.get_logger().info(
            f"saved {info.path.name}: {info.length} steps, "
            f"{info.measured_rate_hz or 0:.1f} Hz measured, success={success}, "
            f"gap ticks {brief['gap_ticks']}"
        )
        return True, f"saved {info.path.name} ({info.length} steps)"

    def discard(self) -> tuple[bool, str]:
        """Drop the open episode."""
        with self.lock:
            if not self.recording:
                return False, "no episode is being recorded"
            self.recording = False
            self.writer.discard_episode()
        self.status({"event": "discarded", "reason": "requested"})
        return True, "discarded"

    def add_step_locked(
        self,
        obs: dict[str, np.ndarray],
        action: np.ndarray,
        t: float,
        extras: dict[str, np.ndarray],
    ) -> bool:
        """Append one step (caller holds :attr:`lock`); a rejected step is logged, not fatal."""
        try:
            self.writer.add_step(obs, action, t, extras=extras)
            return True
        except (DatasetError, SpecError) as e:
            self.rejected_steps += 1
            self.node.get_logger().error(
                f"step rejected, not recorded: {e}", throttle_duration_sec=2.0
            )
            return False

    def close(self) -> None:
        """Commit an open episode unlabelled (Ctrl-C, shutdown) and close the writer."""
        with self.lock:
            if self.recording:
                self.end_locked(None, "node shutdown")
            self.writer.close()

    def _on_control(self, msg: String) -> None:
        cmd = msg.data.strip().lower()
        commands = self._commands()
        if cmd not in commands:
            self.node.get_logger().warning(
                f"unknown episode command {msg.data!r}; expected one of {sorted(commands)}"
            )
            return
        ok, text = commands[cmd]()
        if ok:
            self.node.get_logger().info(f"episode control {cmd!r}: {text}")

    @staticmethod
    def _trigger(fn: Callable[[], tuple[bool, str]]) -> Any:
        def handler(request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
            response.success, response.message = fn()
            return response

        return handler
