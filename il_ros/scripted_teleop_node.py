"""Scripted teleop: the sim's privileged expert as the "human" of CI and the demo.

It sees the robot only through the mapped observation topics (like a policy would), and at
the control rate, when every stream is fresh (its ``max_age_s`` in the mapping, by receive
time), calls the expert on the raw env observation and publishes the command. A stale
stream means no command: the robot's own command timeout stops it, and a recorder sees the
gap honestly.

With ``episode_control`` it also drives recorders through
:data:`~il_ros.common.EPISODE_CONTROL_TOPIC`, following the sim's ``status`` events: a
``reset`` event publishes ``start``; the matching ``done`` event publishes ``success`` or
``failure``, which label and end the episode, so a recorder records exactly the sim's
episodes. Status
events older than this node (the latched history of ``STATUS_QOS``) only reset the expert;
an episode already running when the node starts is driven but not announced.

DDS discovery between two new processes can take a few seconds (a missed initial
announcement waits for the next periodic one), and ``start`` is a volatile message: a
recorder not yet matched would miss it. So with ``min_control_subscribers`` > 0 the node
creates its command publisher only once that many recorders are matched on the episode
control topic (or ``control_wait_timeout_s`` has passed), and the simulated robot
(``wait_for_commander``) starts its first episode only when that publisher appears.

``action_noise_std`` adds seeded Gaussian noise (reseeded per episode from ``seed`` and the
episode's seed) to make demonstrations more diverse; noisy actions are clamped to the
mapping's bounds.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from rclpy.node import Node
from std_msgs.msg import String

from il_core.config import ConfigError
from il_core.envs import GymAdapter, UnknownEnvError, make_env
from il_core.mapping import CommandSink
from il_ros.common import (
    COMMAND_QOS,
    CONTROL_QOS,
    EPISODE_CONTROL_TOPIC,
    STATUS_QOS,
    declare,
    load_node_mapping,
    publish_and_flush,
    sensor_qos,
    spin_node,
    stamp_now,
)
from il_ros.conversions import (
    ConversionError,
    encode_command,
    make_observation_decoder,
    message_class,
)
from il_ros.sim_robot_node import DEFAULT_MAPPING, parse_env_kwargs
from sim.experts import ExpertError, load_expert


def clamp_to_sink(action: np.ndarray, sink: CommandSink) -> np.ndarray:
    """Clamp a ``(D,)`` action to the command's bounds (``null`` bounds are unbounded)."""
    return sink.to_action_spec().clip(np.asarray(action, np.float32))


class ScriptedTeleopNode(Node):
    """Publishes the privileged expert's command for the observed robot state."""

    def __init__(self, node_name: str = "scripted_teleop", **kwargs: Any) -> None:
        """Declare parameters, load the mapping and expert, subscribe, start the timer.

        Raises:
            ConfigError: invalid mapping, or an env whose action is not continuous.
            ExpertError: the expert cannot be resolved for the env.
        """
        super().__init__(node_name, **kwargs)
        p = self._declare_parameters()
        self.params = p
        self.mapping_path, self.mapping = load_node_mapping(p["mapping_file"])
        self.sink = self.mapping.action
        self.env = make_env(p["env_id"], **parse_env_kwargs(p["env_kwargs"]))
        self.adapter = GymAdapter(self.env, control_rate_hz=self.mapping.control_rate_hz)
        if self.adapter.spec.action.kind != "continuous":
            raise ConfigError(f"{p['env_id']}: a discrete action cannot drive {self.sink.type}")
        self.expert = load_expert(p["expert"], self.env)
        self.expert.reset(seed=int(p["seed"]))
        self.rng = np.random.default_rng(int(p["seed"]))
        self.start_stamp = stamp_now(self)

        self.latest: dict[str, tuple[np.ndarray, float]] = {}
        self.bad_messages = 0
        for src in self.mapping.observations:
            decode = make_observation_decoder(src)
            self.create_subscription(
                message_class(src.type),
                src.topic,
                lambda msg, src=src, decode=decode: self._on_observation(src.key, decode, msg),
                sensor_qos(),
            )
        self.command_topic = p["command_topic"] or self.sink.topic
        self.control_pub = self.create_publisher(String, EPISODE_CONTROL_TOPIC, CONTROL_QOS)
        # Created once enough recorders listen (see _ready): the simulated robot starts its
        # first episode when a command publisher appears, so no episode start is missed.
        self.cmd_pub: Any = None
        self.created_at = time.monotonic()
        self.create_subscription(String, p["status_topic"], self._on_status, STATUS_QOS)
        # None: no episode announced (recorders idle); else the episode index that was.
        self.open_episode: int | None = None
        # After a "done" event and until the next "reset" the sim ignores commands: send none.
        self.paused = False
        self.commands_sent = 0
        self.stale_ticks = 0
        rate = p["rate_hz"] or self.mapping.control_rate_hz
        self.create_timer(1.0 / rate, self._tick)
        self.get_logger().info(
            f"expert {p['expert']!r} for {p['env_id']} at {rate:g} Hz -> {self.command_topic}"
            f"; episode_control={p['episode_control']}, noise std {p['action_noise_std']:g}"
        )

    def _declare_parameters(self) -> dict[str, Any]:
        d = declare
        return {
            "mapping_file": d(
                self, "mapping_file", DEFAULT_MAPPING, "Robot mapping YAML (topics, command)"
            ),
            "env_id": d(
                self,
                "env_id",
                "il_ros/PointReach-v0",
                "Gymnasium env id whose privileged expert acts (spaces only; never stepped)",
            ),
            "env_kwargs": d(self, "env_kwargs", "{}", "JSON keyword arguments for the env"),
            "expert": d(
                self,
                "expert",
                "auto",
                "Expert name (sim.experts.EXPERTS), 'auto' (the env's default) or "
                "'module:callable'",
            ),
            "command_topic": d(
                self,
                "command_topic",
                "",
                "Topic of the published command; empty = the mapping's command topic",
            ),
            "status_topic": d(
                self,
                "status_topic",
                "/sim_robot/status",
                "Status events (JSON) of the simulated robot: episode resets and ends",
            ),
            "episode_control": d(
                self,
                "episode_control",
                False,
                "Publish start / success|failure / stop on the episode control topic, "
                "following the sim's status events",
            ),
            "min_control_subscribers": d(
                self,
                "min_control_subscribers",
                0,
                "With episode_control: start commanding (which starts the sim's first episode) "
                "only once this many recorders subscribe to the episode control topic",
                valid_range=(0, 100),
            ),
            "control_wait_timeout_s": d(
                self,
                "control_wait_timeout_s",
                10.0,
                "Give up waiting for min_control_subscribers after this long (s) and command "
                "anyway, with a warning; 0 = wait forever",
                valid_range=(0.0, 3600.0),
            ),
            "action_noise_std": d(
                self,
                "action_noise_std",
                0.0,
                "Std of Gaussian noise added to the expert's action (action units)",
                valid_range=(0.0, 10.0),
            ),
            "seed": d(
                self,
                "seed",
                0,
                "Seed of the action noise (mixed with each episode's seed)",
                valid_range=(0, 2**31 - 1),
            ),
            "rate_hz": d(
                self,
                "rate_hz",
                0.0,
                "Command rate (Hz); 0 = the mapping's control_rate_hz",
                valid_range=(0.0, 1000.0),
            ),
        }

    # Inputs --------------------------------------------------------------------------------

    def _on_observation(self, key: str, decode: Any, msg: Any) -> None:
        try:
            value, _ = decode(msg)
        except ConversionError as e:
            self.bad_messages += 1
            self.get_logger().warning(
                f"bad {key} message ({self.bad_messages} so far): {e}", throttle_duration_sec=2.0
            )
            return
        self.latest[key] = (value, time.monotonic())

    def _on_status(self, msg: String) -> None:
        try:
            event = json.loads(msg.data)
            kind, episode = event["event"], int(event["episode"])
        except (ValueError, KeyError, TypeError) as e:
            self.get_logger().warning(f"unreadable status {msg.data!r}: {e}")
            return
        # Latched history from before this node started: not ours to announce.
        current = float(event.get("stamp", self.start_stamp)) >= self.start_stamp
        if kind == "reset":
            seed = event.get("seed")
            self.expert.reset(seed=seed)
            self.rng = np.random.default_rng([int(self.params["seed"]), int(seed or 0)])
            self.paused = False
            self.latest.clear()  # observations of the previous episode are not this one's
            if current and self.params["episode_control"] and not self._ready():
                # The sim's commander may be another node (the DAgger mux): an episode can
                # start before the recorders listen. Announcing it would lose its "start" at a
                # recorder that then refuses the label; it is simply not recorded.
                self.get_logger().info(
                    f"episode {episode} started before the recorders listened: not recorded"
                )
            elif current and self.params["episode_control"]:
                if self.open_episode is not None:
                    self._control("stop")  # the sim skipped a done event; close the old one
                if self.control_pub.get_subscription_count() == 0:
                    self.get_logger().warning(
                        f"episode {episode} starts but nothing subscribes {EPISODE_CONTROL_TOPIC}"
                        " yet: a recorder would miss it",
                        throttle_duration_sec=10.0,
                    )
                self._control("start")
                self.open_episode = episode
        elif kind == "done":
            self.paused = True
            if self.open_episode == episode and self.params["episode_control"]:
                # success/failure label the episode and end it: no "stop" after them.
                self._control("success" if event.get("success") else "failure")
                self.open_episode = None

    def _control(self, command: str) -> None:
        self.control_pub.publish(String(data=command))
        self.get_logger().info(f"episode control: {command}")

    # Output --------------------------------------------------------------------------------

    def _fresh_observation(self) -> dict[str, np.ndarray] | None:
        now = time.monotonic()
        obs = {}
        for src in self.mapping.observations:
            entry = self.latest.get(src.key)
            if entry is None or now - entry[1] > src.max_age_s:
                return None
            obs[src.key] = entry[0]
        return obs

    def _raw_observation(self, obs: dict[str, np.ndarray]) -> Any:
        space = self.env.observation_space
        if isinstance(space, gym.spaces.Dict):
            # Only the mapped keys: a privileged expert reads state, not the camera.
            return {
                k: np.asarray(v, dtype=space[k].dtype).reshape(space[k].shape)
                for k, v in obs.items()
                if k in space.spaces
            }
        return self.adapter.obs_to_raw(obs)

    def _ready(self) -> bool:
        """Create the command publisher once ``min_control_subscribers`` listen."""
        if self.cmd_pub is not None:
            return True
        want = int(self.params["min_control_subscribers"]) if self.params["episode_control"] else 0
        have = self.control_pub.get_subscription_count()
        if have < want:
            waited = time.monotonic() - self.created_at
            limit = float(self.params["control_wait_timeout_s"])
            if limit == 0.0 or waited < limit:
                self.get_logger().info(
                    f"waiting for {want} subscriber(s) of {EPISODE_CONTROL_TOPIC} (have {have}) "
                    "before commanding",
                    throttle_duration_sec=5.0,
                )
                return False
            self.get_logger().warning(
                f"only {have} of {want} subscriber(s) of {EPISODE_CONTROL_TOPIC} after "
                f"{waited:.1f} s: commanding anyway"
            )
        self.cmd_pub = self.create_publisher(
            message_class(self.sink.type), self.command_topic, COMMAND_QOS
        )
        return True

    def _tick(self) -> None:
        if not self._ready() or self.paused:
            return
        obs = self._fresh_observation()
        if obs is None:
            self.stale_ticks += 1
            return
        action = self.adapter.action_from_env(self.expert(self._raw_observation(obs)))
        std = float(self.params["action_noise_std"])
        if std > 0:
            action = action + self.rng.normal(0.0, std, action.shape).astype(np.float32)
        action = clamp_to_sink(action, self.sink)
        self.cmd_pub.publish(encode_command(self.sink, action, stamp_now(self)))
        self.commands_sent += 1

    def safe_stop(self) -> None:
        """Publish a zero command (velocity-like commands only; ``hold`` sinks get none)."""
        if self.sink.safe_stop == "zero" and self.cmd_pub is not None:
            zero = np.zeros(self.sink.dim, np.float32)
            publish_and_flush(self.cmd_pub, encode_command(self.sink, zero, stamp_now(self)))
        if self.open_episode is not None and self.params["episode_control"]:
            self._control("stop")


def main(args: Sequence[str] | None = None) -> int:
    """Run the scripted teleop (``ros2 run il_ros scripted_teleop``)."""
    return spin_node(
        ScriptedTeleopNode,
        args,
        on_exit=lambda node: node.safe_stop(),
        startup_errors=(ConfigError, UnknownEnvError, ExpertError, OSError),
        name="scripted_teleop",
    )


if __name__ == "__main__":
    sys.exit(main())
