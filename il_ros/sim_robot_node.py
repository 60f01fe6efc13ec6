"""Simulated robot: a gymnasium env stepped at the control rate, behind real ROS topics.

The node stands in for a robot's drivers. A wall-clock timer at the mapping's
``control_rate_hz`` steps the env with the newest command and publishes every mapped
observation key of the env's ``Dict`` observation (header stamps = the node clock now), so
recorders, policies and teleops see what they would see on hardware: separate topics,
transport delays and unsynchronised publishers.

The first episode starts ``start_delay_s`` after a command publisher appears
(``wait_for_commander``), so that teleops and recorders have discovered each other.

Topics and services (names relative to the node, default node name ``sim_robot``):

- subscribes the mapping's command topic (``COMMAND_QOS``): the newest command is applied
  while it is fresher than ``command_timeout_s``; a stale or missing command, or a malformed
  one (NaN, wrong size; counted and logged, never fatal), applies the robot's own safety
  stop: a zero action, or for ``safe_stop: hold`` commands the current joint positions.
- publishes each mapped observation on its topic (``publisher_sensor_qos``); cameras every
  ``publish_camera_every`` ticks. Between episodes the last observation keeps being
  published (a robot does not vanish between episodes) and commands are ignored.
- ``~/status`` (``std_msgs/String``, JSON, ``STATUS_QOS``): ``{"event": "reset", "episode":
  i, "seed": s, "stamp": t}`` when an episode starts and ``{"event": "done", "episode": i,
  "success": b, "return": r, "length": n, "terminated": b, "truncated": b, "reason": ...,
  "stamp": t}`` when it ends. Episode ``i`` is seeded with ``seed + i``.
- ``/diagnostics`` (``diagnostic_msgs/DiagnosticArray``) every ``diagnostics_period_s``:
  achieved rate, episodes, bad and stale command counts.
- ``~/reset`` (``std_srvs/Trigger``): end the running episode (reported ``done`` with
  reason ``reset_service``) and start the next one now, also past ``max_episodes``.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rclpy.node import Node
from rclpy.publisher import Publisher
from std_msgs.msg import String
from std_srvs.srv import Trigger

from il_core.config import ConfigError
from il_core.envs import GymAdapter, UnknownEnvError, episode_success, make_env
from il_ros.common import (
    COMMAND_QOS,
    STATUS_QOS,
    declare,
    diagnostic_array,
    load_node_mapping,
    publisher_sensor_qos,
    spin_node,
    stamp_now,
)
from il_ros.conversions import ConversionError, decode_command, encode_observation, message_class

DEFAULT_MAPPING = "config/point_reach_mapping.yaml"


def parse_env_kwargs(text: str) -> dict[str, Any]:
    """The ``env_kwargs`` parameter (a JSON object) as a dict; ConfigError if it is not one."""
    try:
        kwargs = json.loads(text) if text.strip() else {}
    except json.JSONDecodeError as e:
        raise ConfigError(f"env_kwargs: not a JSON object: {e}") from None
    if not isinstance(kwargs, dict):
        raise ConfigError(f"env_kwargs: expected a JSON object, got {text!r}")
    return kwargs


class SimRobotNode(Node):
    """Steps a gymnasium env at the control rate and exposes it as a ROS robot."""

    IDLE, RUNNING, BETWEEN = "idle", "running", "between"

    def __init__(self, node_name: str = "sim_robot", **kwargs: Any) -> None:
        """Declare parameters, make the env, check it against the mapping, start the timer.

        Raises:
            ConfigError: the mapping or env kwargs are invalid, or the env's observation and
                action do not fit the mapping.
        """
        super().__init__(node_name, **kwargs)
        p = self._declare_parameters()
        self.mapping_path, self.mapping = load_node_mapping(p["mapping_file"])
        self.env = make_env(p["env_id"], **parse_env_kwargs(p["env_kwargs"]))
        self.adapter = GymAdapter(self.env, control_rate_hz=self.mapping.control_rate_hz)
        self._check_env()
        self.params = p
        self.sink = self.mapping.action
        self.zero_action = np.zeros(self.sink.dim, np.float32)
        self.period = 1.0 / self.mapping.control_rate_hz

        self.obs_pubs: dict[str, Publisher] = {
            src.key: self.create_publisher(
                message_class(src.type), src.topic, publisher_sensor_qos()
            )
            for src in self.mapping.observations
        }
        self.status_pub = self.create_publisher(String, "~/status", STATUS_QOS)
        self.diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.create_subscription(
            message_class(self.sink.type), self.sink.topic, self._on_command, COMMAND_QOS
        )
        self.create_service(Trigger, "~/reset", self._on_reset_service)

        self.state = self.IDLE
        self.episode = -1  # index of the current/last episode
        self.episodes_done = 0
        self.obs: dict[str, np.ndarray] | None = None
        self.ep_return = 0.0
        self.ep_length = 0
        self.next_reset_at: float | None = None
        self.command: tuple[np.ndarray, float] | None = None  # (action, monotonic receipt)
        self.tick_count = 0
        self.bad_commands = 0
        self.last_bad_reason = ""
        self.stale_ticks = 0
        self._stale = True
        self._diag_ticks = 0
        self._diag_since = time.monotonic()
        self._diag_bad = 0

        self.create_timer(self.period, self._tick)
        if p["diagnostics_period_s"] > 0:
            self.create_timer(p["diagnostics_period_s"], self._publish_diagnostics)
        self.get_logger().info(
            f"{p['env_id']} at {self.mapping.control_rate_hz:g} Hz, mapping {self.mapping_path}, "
            f"command {self.sink.topic} ({self.sink.type}), observations "
            f"{[(s.key, s.topic) for s in self.mapping.observations]}"
        )

    def _declare_parameters(self) -> dict[str, Any]:
        d = declare
        return {
            "mapping_file": d(
                self,
                "mapping_file",
                DEFAULT_MAPPING,
                "Robot mapping YAML (topics <-> observation keys, command); relative paths are "
                "also looked up in the package share directory",
            ),
            "env_id": d(self, "env_id", "il_ros/PointReach-v0", "Gymnasium env id to simulate"),
            "env_kwargs": d(
                self, "env_kwargs", "{}", "JSON object of keyword arguments for the env"
            ),
            "seed": d(
                self,
                "seed",
                0,
                "Seed of episode 0; episode i uses seed + i",
                valid_range=(0, 2**31 - 1),
            ),
            "auto_reset": d(
                self, "auto_reset", True, "Start the next episode reset_delay_s after one ends"
            ),
            "reset_delay_s": d(
                self,
                "reset_delay_s",
                0.5,
                "Pause between episodes (s), so recorders can close one and open the next",
                valid_range=(0.0, 60.0),
            ),
            "command_timeout_s": d(
                self,
                "command_timeout_s",
                0.25,
                "A command older than this (s) is stale and a zero action is applied",
                valid_range=(0.001, 10.0),
            ),
            "max_episodes": d(
                self,
                "max_episodes",
                0,
                "Episodes to run with auto_reset (0 = unlimited); ~/reset still starts more",
                valid_range=(0, 1_000_000),
            ),
            "wait_for_commander": d(
                self,
                "wait_for_commander",
                True,
                "Start the first episode only once the command topic has a publisher",
            ),
            "start_delay_s": d(
                self,
                "start_delay_s",
                1.0,
                "Wait this long (s) after the commander appears before the first episode, so "
                "that DDS discovery between teleop and recorders has settled",
                valid_range=(0.0, 60.0),
            ),
            "publish_camera_every": d(
                self,
                "publish_camera_every",
                1,
                "Publish image observations every N control ticks (camera rate = rate / N)",
                valid_range=(1, 1000),
            ),
            "diagnostics_period_s": d(
                self,
                "diagnostics_period_s",
                1.0,
                "Period of /diagnostics messages (s); 0 disables them",
                valid_range=(0.0, 3600.0),
            ),
        }

    def _check_env(self) -> None:
        """Every mapped observation key must exist in the env; the action dims must agree."""
        spec = self.adapter.spec
        missing = [s.key for s in self.mapping.observations if s.key not in spec.observations]
        if missing:
            raise ConfigError(
                f"{self.mapping_path}: observation keys {missing} are not in the env's "
                f"observation {sorted(spec.observations)}"
            )
        for src in self.mapping.observations:
            want, have = src.to_feature(), spec.observations[src.key]
            if want.kind != have.kind or (want.kind == "vector" and want.shape != have.shape):
                raise ConfigError(
                    f"{self.mapping_path}: observation {src.key!r} is {want.kind} "
                    f"{want.shape} in the mapping but {have.kind} {have.shape} in the env"
                )
        if spec.action.kind != "continuous" or spec.action.dim != self.mapping.action.dim:
            raise ConfigError(
                f"{self.mapping_path}: the command has {self.mapping.action.dim} values but "
                f"the env action is {spec.action.kind} (dim {spec.action.dim})"
            )
        dt = getattr(self.env.unwrapped, "dt", None)
        if isinstance(dt, float) and abs(dt * self.mapping.control_rate_hz - 1.0) > 1e-6:
            self.get_logger().warning(
                f"the env simulates dt={dt:g} s per step but is stepped at "
                f"{self.mapping.control_rate_hz:g} Hz: simulated time runs at a different pace"
            )

    # Commands ------------------------------------------------------------------------------

    def _on_command(self, msg: Any) -> None:
        now = time.monotonic()
        try:
            action, _ = decode_command(self.sink, msg)
            if action.shape != (self.sink.dim,):
                raise ConversionError(f"command has {action.size} values, not {self.sink.dim}")
        except (ConversionError, ValueError, IndexError, AttributeError) as e:
            # A malformed command must never move (or crash) the robot: it counts as zero.
            self.bad_commands += 1
            self.last_bad_reason = str(e)
            self.command = (self._idle_action(), now)
            self.get_logger().warning(
                f"bad command on {self.sink.topic} ({self.bad_commands} so far): {e}",
                throttle_duration_sec=2.0,
            )
            return
        self.command = (action, now)

    def _current_action(self, now: float) -> np.ndarray:
        command = self.command
        if command is None or now - command[1] > self.params["command_timeout_s"]:
            self.stale_ticks += 1
            if not self._stale:
                self.get_logger().info(
                    f"no fresh command for {self.params['command_timeout_s']:g} s: stopping"
                )
            self._stale = True
            return self._idle_action()
        self._stale = False
        return command[0]

    def _idle_action(self) -> np.ndarray:
        """What the robot does without a valid command: its own safety stop.

        Zero for velocity-like commands; for ``safe_stop: hold`` (position-controlled joints)
        the current positions of ``hold_from``, since a zero position target would swing
        the arm to its zero configuration.
        """
        if self.sink.safe_stop == "hold" and self.obs is not None:
            return np.asarray(self.obs[self.sink.hold_from], np.float32)[: self.sink.dim]
        return self.zero_action

    # Episodes ------------------------------------------------------------------------------

    def _status(self, event: dict[str, Any]) -> None:
        event["stamp"] = stamp_now(self)
        self.status_pub.publish(String(data=json.dumps(event)))

    def _reset(self) -> dict[str, Any]:
        self.episode += 1
        seed = int(self.params["seed"]) + self.episode
        raw, _ = self.env.reset(seed=seed)
        self.obs = self.adapter.obs_to_dict(raw)
        self.ep_return, self.ep_length = 0.0, 0
        self.command = None  # a command computed for the previous episode means nothing now
        self._stale = True  # quiet until the first command of this episode arrives
        self.state = self.RUNNING
        self.next_reset_at = None
        event = {"event": "reset", "episode": self.episode, "seed": seed}
        self._status(event)
        self.get_logger().info(f"episode {self.episode} started (seed {seed})")
        self._publish_obs(force_images=True)
        return event

    def _finish(self, success: bool, terminated: bool, truncated: bool, reason: str) -> None:
        self.episodes_done += 1
        self.state = self.BETWEEN
        self._status(
            {
                "event": "done",
                "episode": self.episode,
                "success": bool(success),
                "return": float(self.ep_return),
                "length": int(self.ep_length),
                "terminated": bool(terminated),
                "truncated": bool(truncated),
                "reason": reason,
            }
        )
        self.get_logger().info(
            f"episode {self.episode} done: success={success} length={self.ep_length} "
            f"return={self.ep_return:.3f} ({reason})"
        )
        limit = int(self.params["max_episodes"])
        if self.params["auto_reset"] and (limit == 0 or self.episodes_done < limit):
            self.next_reset_at = time.monotonic() + float(self.params["reset_delay_s"])
        elif self.params["auto_reset"]:
            self.get_logger().info(f"max_episodes={limit} reached; ~/reset starts another")

    def _on_reset_service(self, request: Any, response: Any) -> Any:
        if self.state == self.RUNNING:
            self._finish(False, False, False, "reset_service")
        event = self._reset()
        response.success = True
        response.message = json.dumps(event)
        return response

    # The control loop ----------------------------------------------------------------------

    def _tick(self) -> None:
        now = time.monotonic()
        self.tick_count += 1
        self._diag_ticks += 1
        if self.state == self.IDLE:
            commander = self.count_publishers(self.sink.topic) > 0
            if self.next_reset_at is None and (commander or not self.params["wait_for_commander"]):
                self.next_reset_at = now + float(self.params["start_delay_s"])
            if self.next_reset_at is not None and now >= self.next_reset_at:
                self._reset()
            return
        if self.state == self.BETWEEN:
            if self.next_reset_at is not None and now >= self.next_reset_at:
                self._reset()
            else:
                self._publish_obs()
            return
        action = self._current_action(now)
        raw, reward, terminated, truncated, info = self.env.step(
            self.adapter.action_to_env(action)
        )
        self.obs = self.adapter.obs_to_dict(raw)
        self.ep_return += float(reward)
        self.ep_length += 1
        self._publish_obs()
        if terminated or truncated:
            success = episode_success(self.adapter.env_id, terminated, truncated, info)
            reason = "terminated" if terminated else "truncated"
            self._finish(bool(success), terminated, truncated, reason)

    def _publish_obs(self, force_images: bool = False) -> None:
        if self.obs is None:
            return
        stamp = stamp_now(self)
        camera_tick = force_images or self.tick_count % self.params["publish_camera_every"] == 0
        for src in self.mapping.observations:
            if src.is_image and not camera_tick:
                continue
            self.obs_pubs[src.key].publish(encode_observation(src, self.obs[src.key], stamp))

    def _publish_diagnostics(self) -> None:
        now = time.monotonic()
        elapsed = max(now - self._diag_since, 1e-9)
        rate = self._diag_ticks / elapsed
        new_bad = self.bad_commands - self._diag_bad
        self._diag_ticks, self._diag_since, self._diag_bad = 0, now, self.bad_commands
        level = DiagnosticStatus.WARN if new_bad else DiagnosticStatus.OK
        message = f"{new_bad} bad commands in the last period" if new_bad else self.state
        values = {
            "state": self.state,
            "episode": self.episode,
            "episodes_done": self.episodes_done,
            "achieved_rate_hz": round(rate, 3),
            "control_rate_hz": self.mapping.control_rate_hz,
            "bad_commands": self.bad_commands,
            "last_bad_command": self.last_bad_reason,
            "stale_command_ticks": self.stale_ticks,
        }
        level_int = level[0] if isinstance(level, bytes) else int(level)
        self.diag_pub.publish(diagnostic_array(self, "sim_robot", level_int, message, values))


def main(args: Sequence[str] | None = None) -> int:
    """Run the simulated robot (``ros2 run il_ros sim_robot``)."""
    return spin_node(
        SimRobotNode,
        args,
        startup_errors=(ConfigError, UnknownEnvError, OSError),
        name="sim_robot",
    )


if __name__ == "__main__":
    sys.exit(main())
